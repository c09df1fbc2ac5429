"""The incremental parser, and linear-time parsing on long and adversarial inputs."""

from __future__ import annotations

import random

import pytest

from masktok.words import (HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, MaskWordsError,
                           StreamingMaskParser, format_mask_words, parse_mask_token_ids,
                           parse_mask_words)

S, H = SAMTOK_VOCABULARY, HIMTOK_VOCABULARY


def feed_all(parser: StreamingMaskParser, chunks) -> list:
    spans = []
    for chunk in chunks:
        spans += parser.feed(chunk)
    return spans + parser.close()


def test_each_mask_is_emitted_when_its_end_token_completes():
    a, b = format_mask_words((11, 91), S), format_mask_words((5, 6), S)
    text = f"The cat {a} sits by the dog {b}."
    end_of_a, end_of_b = text.index(a) + len(a), text.index(b) + len(b)
    parser = StreamingMaskParser(S)
    emitted = {}
    for i, char in enumerate(text):  # one character at a time: every token is split
        for span in parser.feed(char):
            emitted[i + 1] = span
    assert parser.close() == []
    assert sorted(emitted) == [end_of_a, end_of_b]
    assert [emitted[k].codes for k in sorted(emitted)] == [(11, 91), (5, 6)]
    assert list(emitted.values()) == parse_mask_words(text, S)


def test_emission_does_not_wait_for_more_text():
    parser = StreamingMaskParser(H)
    assert parser.feed("answer: <|mt_start|><|mt_3|><|mt_1") == []
    assert parser.feed("0|><|mt_e") == []
    (span,) = parser.feed("nd|>")
    assert span.codes == (3, 10) and span.ok
    assert (span.start, span.end) == (8, 8 + len("<|mt_start|><|mt_3|><|mt_10|><|mt_end|>"))
    assert parser.close() == []


def test_streaming_ids_in_chunks():
    ids = {t: 500 + i for i, t in enumerate(S.tokens())}
    seq = [1, ids["<|mt_start|>"], ids["<|mt_0001|>"], ids["<|mt_0300|>"], ids["<|mt_end|>"], 2,
           ids["<|mt_start|>"], ids["<|mt_0004|>"]]
    parser = StreamingMaskParser(S, token_ids=ids, lenient=True)
    got = [parser.feed(seq[:3]), parser.feed(seq[3:5]), parser.feed(seq[5:])]
    assert got[0] == [] and [s.codes for s in got[1]] == [(1, 44)] and got[2] == []
    (tail,) = parser.close()
    assert tail.status == "unterminated" and tail.codes == (4,) and (tail.start, tail.end) == (6, 8)
    assert got[1] + [tail] == parse_mask_token_ids(seq, S, ids, lenient=True)


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_gives_the_batch_result(seed):
    rng = random.Random(seed)
    pieces = ["<|mt_start|>", "<|mt_end|>", "<|mt_0011|>", "<|mt_0347|>", "<|mt_9999|>", "<|mt_",
              "<", "|>", " ", "\n", "word", "<|mt_011|>", "<|mt_start", "<11-347>"]
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 12))))
    chunks = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
    assert feed_all(StreamingMaskParser(S, lenient=True), chunks) == parse_mask_words(text, S, lenient=True)


def test_parser_misuse_is_refused():
    parser = StreamingMaskParser(S)
    with pytest.raises(ValueError, match="token_ids"):
        parser.feed([1, 2])
    parser = StreamingMaskParser(S)
    parser.feed("text")
    with pytest.raises(ValueError, match="reads text"):
        parser.feed([1])
    parser.close()
    with pytest.raises(ValueError, match="finished"):
        parser.feed("more")
    strict = StreamingMaskParser(S)
    with pytest.raises(MaskWordsError):
        strict.feed("<|mt_start|><|mt_0011|><|mt_end|>")
    with pytest.raises(ValueError, match="finished"):
        strict.feed("x")


# ---- hostile inputs ------------------------------------------------------------------------
# Speed (linear time) is measured in benchmarks/words_parse_speed.py, not asserted here.
@pytest.mark.parametrize("text", [
    "<|mt_" * 50_000, "<" * 200_000, "<|mt_" + "1" * 200_000, "<|mt_start|>" + " " * 200_000,
    "<|mt_start|>" + "<|mt_0001|>" * 30_000, ("<|mt_start|><|mt_0011|> " * 20_000),
])
def test_adversarial_inputs_parse_or_raise_the_documented_error(text):
    for lenient in (True, False):
        try:
            spans = parse_mask_words(text, S, lenient=lenient)
        except MaskWordsError:
            assert not lenient
        else:
            assert all(not s.ok for s in spans) or lenient


def test_character_by_character_streaming_matches_whole_text():
    text = ("x <|mt_start|><|mt_0011|><|mt_0347|><|mt_end|> " * 200) + "<|mt_" * 200
    spans = feed_all(StreamingMaskParser(S, lenient=True), text)
    assert [s.codes for s in spans] == [s.codes for s in parse_mask_words(text, S, lenient=True)]
    assert sum(s.ok for s in spans) == 200
