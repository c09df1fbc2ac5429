"""``masktok words``: parse (text or stdin → JSON), format, short; the shipped tokenizer's
vocabulary unless ``--tokenizer`` names another."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from masktok.cli import app
from masktok.cli.errors import BAD_INPUT_EXIT_CODE
from masktok.words import HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, format_mask_words

runner = CliRunner()
WORD = format_mask_words((11, 91), SAMTOK_VOCABULARY)


def test_words_group_is_listed():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "words" in result.output
    result = runner.invoke(app, ["words", "--help"])
    assert result.exit_code == 0 and all(c in result.output for c in ("parse", "format", "short"))


def test_parse_argument_and_stdin_give_json_spans():
    text = f"a cat {WORD} and <|mt_start|> <|mt_0001|> <|mt_0257|><|mt_end|>"
    by_argument = runner.invoke(app, ["words", "parse", text, "-t", "samtok"])
    by_stdin = runner.invoke(app, ["words", "parse", "-t", "samtok"], input=text)
    by_dash = runner.invoke(app, ["words", "parse", "-", "-t", "samtok"], input=text)
    assert by_argument.exit_code == by_stdin.exit_code == by_dash.exit_code == 0, by_argument.output
    spans = json.loads(by_argument.stdout)
    assert json.loads(by_stdin.stdout) == json.loads(by_dash.stdout) == spans
    assert [s["codes"] for s in spans] == [[11, 91], [1, 1]]
    assert spans[0]["words"] == WORD and spans[0]["start"] == text.index(WORD)
    assert spans[1]["status"] == "ok" and spans[1]["repairs"] == ["ignored whitespace between mask tokens"]


def test_parse_strict_fails_and_lenient_reports():
    bad = "x <|mt_start|><|mt_0011|><|mt_end|>"
    strict = runner.invoke(app, ["words", "parse", bad, "-t", "samtok"])
    assert strict.exit_code == BAD_INPUT_EXIT_CODE and "truncated" in strict.stderr
    lenient = runner.invoke(app, ["words", "parse", bad, "--lenient", "-t", "samtok"])
    (span,) = json.loads(lenient.stdout)
    assert span["status"] == "truncated" and span["codes"] == [11] and span["decodable"]
    assert any("levels only" in r for r in span["repairs"])


def test_parse_himtok_and_sizes():
    word = format_mask_words((5, 900), HIMTOK_VOCABULARY)
    (span,) = json.loads(runner.invoke(app, ["words", "parse", word, "--tokenizer", "himtok"]).stdout)
    assert span["codes"] == [5, 900]
    small = runner.invoke(app, ["words", "parse", word, "-t", "himtok", "--codebook-size", "600", "--lenient"])
    (span,) = json.loads(small.stdout)
    assert span["status"] == "out_of_range" and span["codes"] == [5]
    wrong = runner.invoke(app, ["words", "parse", word, "--tokenizer", "other"])
    assert wrong.exit_code == BAD_INPUT_EXIT_CODE and "default, samtok, himtok" in wrong.stderr


def test_the_default_vocabulary_is_the_shipped_tokenizers(tmp_path):
    import masktok

    shipped = masktok.load_default().vocabulary
    assert (shipped.name, shipped.codebook_size, shipped.max_codes) == ("himtok", 1024, 32)
    result = runner.invoke(app, ["words", "format", "17", "903"])
    assert result.exit_code == 0 and result.stdout.strip() == format_mask_words((17, 903), shipped)
    (span,) = json.loads(runner.invoke(app, ["words", "parse", result.stdout.strip()]).stdout)
    assert span["codes"] == [17, 903] and span["status"] == "ok"
    assert "'default'" in runner.invoke(app, ["words", "format", "--help"]).stdout
    # A tokenizer folder gives its own vocabulary.
    from masktok.tokenizers.samtok import SAMTok, tiny_test_config

    SAMTok.from_config(tiny_test_config(), seed=0).save_pretrained(tmp_path / "samtok")
    small = runner.invoke(app, ["words", "format", "-t", str(tmp_path / "samtok"), "3", "20"])
    assert small.exit_code == BAD_INPUT_EXIT_CODE and "outside [0, 16)" in small.stderr
    assert runner.invoke(app, ["words", "format", "-t", str(tmp_path / "samtok"), "3", "9"]).stdout.strip() \
        == "<|mt_start|><|mt_0003|><|mt_0025|><|mt_end|>"


def test_format_and_short():
    result = runner.invoke(app, ["words", "format", "11", "91", "-t", "samtok"])
    assert result.exit_code == 0 and result.stdout.strip() == WORD
    assert runner.invoke(app, ["words", "format", "11", "91", "--short", "-t", "samtok"]).stdout.strip() == "<11-347>"
    himtok = runner.invoke(app, ["words", "format", "-t", "himtok", "3", "2", "1"])
    assert himtok.stdout.strip() == "<|mt_start|><|mt_3|><|mt_2|><|mt_1|><|mt_end|>"
    bad = runner.invoke(app, ["words", "format", "11", "256", "-t", "samtok"])
    assert bad.exit_code == BAD_INPUT_EXIT_CODE and "outside [0, 256)" in bad.stderr
    text = f"cat {WORD}, dog {format_mask_words((0, 0), SAMTOK_VOCABULARY)}."
    result = runner.invoke(app, ["words", "short", text, "-t", "samtok"])
    assert result.exit_code == 0 and result.stdout.strip() == "cat <11-347>, dog <0-256>."
    assert runner.invoke(app, ["words", "short", "-t", "samtok"], input=text).stdout.strip() == "cat <11-347>, dog <0-256>."
    broken = runner.invoke(app, ["words", "short", "a <|mt_start|><|mt_0300|><|mt_end|>", "--lenient", "-t", "samtok"])
    assert broken.stdout.strip() == "a <bad_level_order>"
