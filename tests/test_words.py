"""The mask-word grammar: vocabularies, formatting, the short form, parsing text and ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from masktok.words import (HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, MaskSpan, MaskVocabulary,
                           MaskWordsError, SpanStatus, extract_codes, format_mask_words,
                           format_short, get_vocabulary, himtok_vocabulary, parse_mask_token_ids,
                           parse_mask_words, parse_short, replace_mask_spans, resolve_token_ids,
                           samtok_vocabulary)

S, H = SAMTOK_VOCABULARY, HIMTOK_VOCABULARY
START, END = "<|mt_start|>", "<|mt_end|>"


def sam(*numbers: int, start: bool = True, end: bool = True) -> str:
    body = "".join(f"<|mt_{n:04d}|>" for n in numbers)
    return (START if start else "") + body + (END if end else "")


# ---- vocabularies ---------------------------------------------------------------------------
def test_official_vocabularies():
    assert (S.name, S.codebook_size, S.num_levels, S.max_codes) == ("samtok", 256, 2, 2)
    assert (H.name, H.codebook_size, H.num_levels, H.max_codes) == ("himtok", 1024, 1, 32)
    tokens = S.tokens()
    assert len(tokens) == 514 and tokens[:2] == [START, END]
    assert tokens[2] == "<|mt_0000|>" and tokens[-1] == "<|mt_0511|>" and len(set(tokens)) == 514
    assert S.code_token(0, 11) == "<|mt_0011|>" and S.code_token(1, 91) == "<|mt_0347|>"
    htokens = H.tokens()
    assert len(htokens) == 1026 and htokens[2] == "<|mt_0|>" and htokens[-1] == "<|mt_1023|>"
    assert H.code_token(17, 903) == "<|mt_903|>" and H.code_token(0, 7) == "<|mt_7|>"
    assert get_vocabulary("samtok") is S and get_vocabulary("himtok") is H
    assert samtok_vocabulary() == S and himtok_vocabulary() == H


def test_configurable_sizes_offset_levels_by_the_codebook_size():
    v = samtok_vocabulary(codebook_size=512, depth=3)
    assert v.level_offset == 512 and len(v.tokens()) == 2 + 1536
    assert v.code_token(2, 5) == "<|mt_1029|>" and v.split_number(1029) == (2, 5)
    wide = samtok_vocabulary(codebook_size=4096, depth=4)  # numbers up to 16383: 5 digits
    assert wide.code_token(0, 3) == "<|mt_00003|>" and wide.code_token(3, 4095) == "<|mt_16383|>"
    small = himtok_vocabulary(codebook_size=16, max_codes=4)
    assert small.tokens()[-1] == "<|mt_15|>" and small.code_token(3, 15) == "<|mt_15|>"


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="", codebook_size=4, num_levels=1, max_codes=1), "name"),
    (dict(name="samtok", codebook_size=0, num_levels=2, max_codes=2), "codebook_size"),
    (dict(name="samtok", codebook_size=256, num_levels=2, max_codes=3), "max_codes"),
    (dict(name="himtok", codebook_size=256, num_levels=1, max_codes=3, min_codes=4), "exceeds"),
    (dict(name="himtok", codebook_size=256, num_levels=1, max_codes=3, pad_digits=-1), "pad_digits"),
    (dict(name="himtok", codebook_size=8, num_levels=1, max_codes=2, start_token="mt_start"), "start_token"),
    (dict(name="himtok", codebook_size=8, num_levels=1, max_codes=2, end_token="<|mt_7|>"), "code token"),
    (dict(name="himtok", codebook_size=8, num_levels=1, max_codes=2, end_token=START), "differ"),
])
def test_bad_vocabularies_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskVocabulary(**kwargs)


def test_a_vocabulary_is_its_fields_not_its_name():
    """A third family's vocabulary (any name) spells and parses by its fields alone."""
    toy = MaskVocabulary("toy", codebook_size=20, num_levels=1, max_codes=3, min_codes=2, pad_digits=3)
    word = format_mask_words((4, 19), toy)
    assert word == "<|mt_start|><|mt_004|><|mt_019|><|mt_end|>"
    assert [s.codes for s in parse_mask_words(f"a {word} b", toy)] == [(4, 19)]
    assert toy.prefixes_are_words and not S.prefixes_are_words
    with pytest.raises(ValueError, match="2 to 3 codes"):
        format_mask_words((4,), toy)
    assert MaskVocabulary.from_dict(toy.to_dict()) == toy
    assert MaskVocabulary.from_dict(S.to_dict()) == S and S.min_codes == 2 and S.digits == 4
    with pytest.raises(ValueError, match="unknown fields"):
        MaskVocabulary.from_dict({**toy.to_dict(), "spelling": "x"})


def test_code_token_validates_position_and_code():
    with pytest.raises(ValueError, match="position"):
        S.code_token(2, 0)
    with pytest.raises(ValueError, match="code"):
        S.code_token(1, 256)
    with pytest.raises(ValueError, match="code"):
        H.code_token(0, -1)
    with pytest.raises(ValueError, match="outside"):
        S.split_number(512)


# ---- format and the short form -------------------------------------------------------------
def test_format_both_vocabularies_and_array_inputs():
    assert format_mask_words((11, 91), S) == START + "<|mt_0011|><|mt_0347|>" + END
    assert format_mask_words(np.array([0, 255]), S) == START + "<|mt_0000|><|mt_0511|>" + END
    assert format_mask_words(torch.tensor([3, 4]), S) == START + "<|mt_0003|><|mt_0260|>" + END
    assert format_mask_words([17, 903, 0], H) == START + "<|mt_17|><|mt_903|><|mt_0|>" + END


@pytest.mark.parametrize("codes, vocab, match", [
    ((11,), S, "exactly 2"), ((1, 2, 3), S, "exactly 2"), ((), H, "1 to 32"),
    (tuple(range(33)), H, "1 to 32"), ((1, 256), S, r"codes\[1\] = 256"), ((-1, 0), S, "outside"),
    ((1.5, 2), S, "int"), ((True, 2), S, "bool"), ("12", S, "sequence"), ((1024,), H, "outside"),
])
def test_format_rejects_bad_codes(codes, vocab, match):
    with pytest.raises(ValueError, match=match):
        format_mask_words(codes, vocab)


def test_short_form_uses_token_numbers():
    assert format_short((11, 91)) == "<11-347>"
    assert parse_short("<11-347>") == (11, 91)
    assert format_short((17, 903, 5), H) == "<17-903-5>" and parse_short("<17-903-5>", H) == (17, 903, 5)
    for bad, match in [("<11-91>", "level-0"), ("<300-347>", "level-1"), ("<11>", "exactly 2"),
                       ("11-347", "expected"), ("<11-9999>", "outside"), ("<1-2-3>", "at most 2")]:
        with pytest.raises(ValueError, match=match):
            parse_short(bad)


# ---- parsing text ---------------------------------------------------------------------------
def test_parse_ok_spans_with_offsets():
    a, b = format_mask_words((11, 91), S), format_mask_words((0, 255), S)
    text = f"The cat {a} and the dog {b}."
    spans = parse_mask_words(text, S)
    assert [s.codes for s in spans] == [(11, 91), (0, 255)]
    assert [text[s.start:s.end] for s in spans] == [a, b]
    assert all(s.ok and s.decodable and s.status == "ok" and s.repairs == () for s in spans)
    assert extract_codes(text, S) == [(11, 91), (0, 255)]
    assert parse_mask_words("no masks here <b>bold</b> <|mt_x|>", S) == []


def test_himtok_words_of_any_length_up_to_32():
    for length in (1, 4, 16, 32):
        codes = tuple((7 * i + 3) % 1024 for i in range(length))
        (span,) = parse_mask_words("x" + format_mask_words(codes, H), H)
        assert span.ok and span.codes == codes and span.start == 1


# (text, vocab, status, lenient codes, repairs that must be mentioned)
MALFORMED = [
    (sam(11), S, "truncated", (11,), ["first 1 of 2 levels"]),
    (sam(11, 347, 3), S, "extra_tokens", (11, 91), ["dropped 1 extra"]),
    (sam(11, 347, 3, 400), S, "extra_tokens", (11, 91), ["dropped 2 extra"]),
    (sam(300, 11), S, "bad_level_order", (), []),
    (sam(11, 12), S, "bad_level_order", (11,), ["dropped 1 code token(s) from position 1", "first 1 of 2"]),
    (sam(11, 9999), S, "out_of_range", (11,), ["from position 1 on (out_of_range"]),
    (START + "<|mt_9999|><|mt_0300|>", S, "out_of_range", (), []),
    (START + "<|mt_011|><|mt_0347|>" + END, S, "malformed_token", (), []),
    (START + "<|mt_0011|><|mt_347|>" + END, S, "malformed_token", (11,), ["first 1 of 2"]),
    (START + END, S, "empty", (), []),
    (sam(11, 347, end=False), S, "unterminated", (11, 91), ["closed the unterminated span at end of input"]),
    (sam(11, end=False) + " and more", S, "unterminated", (11,),
     ["before text at character 24", "first 1 of 2"]),
    (sam(11, 347, start=False), S, "missing_start", (), []),
    (END, S, "missing_start", (), []),
    (START + "<|mt_0011|>" + END, H, "malformed_token", (), []),
    (START + "<|mt_1024|>" + END, H, "out_of_range", (), []),
    (START + "<|mt_5|>" * 34 + END, H, "extra_tokens", (5,) * 32, ["dropped 2 extra"]),
    (START + "<|mt_5|><|mt_05|><|mt_6|>" + END, H, "malformed_token", (5,), ["dropped 2 code token(s) from position 1"]),
]


@pytest.mark.parametrize("text, vocab, status, codes, repairs", MALFORMED)
def test_malformed_spans_strict_and_lenient(text, vocab, status, codes, repairs):
    with pytest.raises(MaskWordsError, match=status) as caught:
        parse_mask_words(text, vocab)
    assert isinstance(caught.value, ValueError) and caught.value.span.status == status
    (span,) = parse_mask_words(text, vocab, lenient=True)
    assert span.status == status and span.problems[0] == status and not span.ok
    assert span.codes == codes and span.decodable == bool(codes)
    for fragment in repairs:
        assert any(fragment in r for r in span.repairs), (fragment, span.repairs)
    if not codes:
        assert span.repairs == ()
    assert span.start == 0 and span.end == len(text.split(" ")[0])


def test_every_problem_is_listed():
    (span,) = parse_mask_words(START + "<|mt_9999|><|mt_0300|>", S, lenient=True)
    assert span.problems == (SpanStatus.OUT_OF_RANGE, SpanStatus.UNTERMINATED)
    (span,) = parse_mask_words(sam(11), S, lenient=True)
    assert span.problems == (SpanStatus.TRUNCATED,)


def test_reference_placeholder_trick_is_never_applied():
    """The reference pads a level-0-only word with <|mt_9999|> (and its remap then decodes level
    1 with code 0). Here the word stays a one-code prefix, reported, and <|mt_9999|> is an error."""
    (span,) = parse_mask_words(sam(11), S, lenient=True)
    assert span.codes == (11,) and span.status == "truncated"
    padded = START + "<|mt_0011|><|mt_9999|>" + END
    (span,) = parse_mask_words(padded, S, lenient=True)
    assert span.codes == (11,) and span.status == "out_of_range"
    with pytest.raises(MaskWordsError):
        parse_mask_words(padded, S)


def test_whitespace_between_tokens_is_tolerated_and_reported():
    text = f"A {START} <|mt_0011|>\n <|mt_0347|>\t{END} B"
    for lenient in (False, True):
        (span,) = parse_mask_words(text, S, lenient=lenient)
        assert span.ok and span.codes == (11, 91)
        assert span.repairs == ("ignored whitespace between mask tokens",)
        assert text[span.start:span.end].startswith(START) and text[span.start:span.end].endswith(END)
    # trailing whitespace after an unterminated span is not "between tokens"
    (span,) = parse_mask_words(sam(11, 347, end=False) + "   ", S, lenient=True)
    assert span.status == "unterminated" and not any("whitespace" in r for r in span.repairs)


def test_a_new_start_closes_the_open_span():
    text = sam(11, end=False) + sam(1, 256)
    with pytest.raises(MaskWordsError, match="unterminated"):
        parse_mask_words(text, S)
    first, second = parse_mask_words(text, S, lenient=True)
    assert first.status == "unterminated" and first.codes == (11,) and first.end == second.start
    assert any("new start token at character 23" in r for r in first.repairs)
    assert second.ok and second.codes == (1, 0)


def test_strict_parse_of_real_himtok_answers(test_data):
    rows = [json.loads(line) for line in
            (test_data / "refseg_examples" / "anns" / "seg_data_with_mask.jsonl").read_text().splitlines()]
    assert rows
    for row in rows:
        answer = next(turn["value"] for turn in row["conversations"] if turn["from"] == "gpt")
        (span,) = parse_mask_words(answer, H)
        assert span.ok and len(span.codes) == answer.count("<|mt_") - 2
        assert answer[span.start:span.end].startswith(START) and answer[span.end:] == "."
        # the same words are not SAMTok words: unpadded numbers are malformed there
        (wrong,) = parse_mask_words(answer, S, lenient=True)
        assert wrong.status == "malformed_token" and not wrong.decodable


# ---- parsing token ids ----------------------------------------------------------------------
def id_map(vocab: MaskVocabulary, base: int = 1000) -> dict[str, int]:
    return {token: base + i for i, token in enumerate(vocab.tokens())}


@pytest.mark.parametrize("as_type", [list, tuple, np.array, torch.tensor])
def test_parse_ids_mapping_and_array_types(as_type):
    ids = id_map(S)
    seq = [5, 6, ids[START], ids["<|mt_0011|>"], ids["<|mt_0347|>"], ids[END], 7,
           ids[START], ids["<|mt_0002|>"], ids[END]]
    spans = parse_mask_token_ids(as_type(seq), S, ids, lenient=True)
    assert [(s.start, s.end, s.codes, s.status.value) for s in spans] == [
        (2, 6, (11, 91), "ok"), (7, 10, (2,), "truncated")]
    with pytest.raises(MaskWordsError, match="tokens 7:10"):
        parse_mask_token_ids(seq, S, ids)


def test_ids_text_inside_a_span_interrupts_it():
    ids = id_map(H)
    seq = [ids[START], ids["<|mt_4|>"], 42, ids[END]]
    first, second = parse_mask_token_ids(seq, H, ids, lenient=True)
    assert first.status == "unterminated" and first.codes == (4,) and (first.start, first.end) == (0, 2)
    assert second.status == "missing_start" and (second.start, second.end) == (3, 4)


def test_bad_id_inputs():
    ids = id_map(S)
    with pytest.raises(ValueError, match="no id"):
        parse_mask_token_ids([1], S, {START: 1, END: 2})
    dup = dict(ids)
    dup[END] = dup[START]
    with pytest.raises(ValueError, match="share the id"):
        parse_mask_token_ids([1], S, dup)
    with pytest.raises(ValueError, match=r"ids\[1\]"):
        parse_mask_token_ids([1, 2.5], S, ids)
    with pytest.raises(ValueError, match="flat"):
        parse_mask_token_ids(torch.zeros(2, 3, dtype=torch.long), S, ids)
    with pytest.raises(ValueError, match="Mapping"):
        parse_mask_token_ids([1], S, object())


def tiny_hf_tokenizer(vocab: MaskVocabulary, skip: int = 0):
    """A word-level fast tokenizer that knows ``vocab``'s tokens except the last ``skip``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AddedToken, PreTrainedTokenizerFast

    words = ["[UNK]", "a", "cat", "dog", "the", "."]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokens = vocab.tokens()[:len(vocab.tokens()) - skip]
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in tokens])
    return tokenizer


@pytest.mark.parametrize("vocab, codes", [(S, [(11, 91), (0, 255)]), (H, [(17, 903, 0), (1,) * 32])])
def test_parse_ids_from_a_hugging_face_tokenizer(vocab, codes):
    tokenizer = tiny_hf_tokenizer(vocab)
    text = f"the cat {format_mask_words(codes[0], vocab)} a dog {format_mask_words(codes[1], vocab)} ."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    spans = parse_mask_token_ids(ids, vocab, tokenizer)
    assert [s.codes for s in spans] == codes and all(s.ok for s in spans)
    assert spans == parse_mask_token_ids(ids, vocab, tokenizer.get_vocab())
    # this detokenizer joins word-level pieces with spaces: the decoded text still parses, and
    # the text parser reports the whitespace it ignored
    decoded = tokenizer.decode(ids[spans[0].start:spans[0].end])
    assert decoded.replace(" ", "") == format_mask_words(codes[0], vocab) and " " in decoded
    (again,) = parse_mask_words(decoded, vocab)
    assert again.ok and again.codes == codes[0] and again.repairs == ("ignored whitespace between mask tokens",)
    assert resolve_token_ids(vocab, tokenizer)[vocab.end_token] == tokenizer.convert_tokens_to_ids(END)


def test_a_tokenizer_without_the_mask_tokens_is_rejected():
    with pytest.raises(ValueError, match="3 of the 514 samtok mask tokens have no id"):
        parse_mask_token_ids([1, 2], S, tiny_hf_tokenizer(S, skip=3))


# ---- helpers ------------------------------------------------------------------------------
def test_replace_mask_spans_styles():
    a, b = format_mask_words((11, 91), S), format_mask_words((3, 4), S)
    text = f"cat {a}, dog {b}."
    assert replace_mask_spans(text, S) == "cat [mask 0], dog [mask 1]."
    assert replace_mask_spans(text, S, "short") == "cat <11-347>, dog <3-260>."
    assert replace_mask_spans(text, S, lambda i, s: f"#{i}:{s.codes[0]}") == "cat #0:11, dog #1:3."
    bad = f"x {sam(11)} y {sam(300, 1)} z"
    with pytest.raises(MaskWordsError):
        replace_mask_spans(bad, S, "short")
    assert replace_mask_spans(bad, S, "short", lenient=True) == "x <11> y <bad_level_order> z"
    with pytest.raises(ValueError, match="fn_or_style"):
        replace_mask_spans(text, S, "long")
    with pytest.raises(ValueError, match="must be a str"):
        replace_mask_spans(text, S, lambda i, s: i)


def test_span_report_is_json_ready():
    (span,) = parse_mask_words(sam(11), S, lenient=True)
    data = json.loads(json.dumps(span.to_dict()))
    assert data["status"] == "truncated" and data["codes"] == [11] and data["decodable"] is True
    assert f"{span.status}" == "truncated" and str(span.status) == "truncated"
    assert isinstance(span, MaskSpan)


def test_non_text_input_is_rejected():
    with pytest.raises(ValueError, match="text"):
        parse_mask_words(b"<|mt_start|>", S)
    with pytest.raises(ValueError, match="MaskVocabulary"):
        parse_mask_words("x", "samtok")
