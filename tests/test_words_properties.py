"""Property-based tests of the grammar (hypothesis, fixed seed, bounded example counts).

* format → parse is the identity for every valid code sequence (both families, several sizes),
  from text and from token ids, whole and streamed;
* random and mutated strings / id sequences never raise anything but ``MaskWordsError`` in
  strict mode, never raise in lenient mode, and the lenient report keeps its invariants.

Example counts: ``MASKTOK_FUZZ_EXAMPLES`` (default 500 here: hypothesis' generated inputs cost more
than the mutation loop's) for the fuzz properties, a tenth of it (at least 200) for the round
trips. The release run uses 100,000 (see ``docs/fuzzing.md``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masktok.words import (HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, MaskVocabulary, MaskWordsError,
                           StreamingMaskParser, format_mask_words, format_short,
                           himtok_vocabulary, parse_mask_token_ids, parse_mask_words, parse_short,
                           samtok_vocabulary)

FUZZ_EXAMPLES = int(os.environ.get("MASKTOK_FUZZ_EXAMPLES", "500"))
settings.register_profile(
    "masktok-words", derandomize=True, database=None, deadline=None, print_blob=True,
    max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ = settings.get_profile("masktok-words")
ROUND_TRIP = settings(FUZZ, max_examples=max(200, FUZZ_EXAMPLES // 10))

VOCABULARIES = [SAMTOK_VOCABULARY, HIMTOK_VOCABULARY, samtok_vocabulary(codebook_size=16, depth=3),
                samtok_vocabulary(codebook_size=4096, depth=4), himtok_vocabulary(codebook_size=7, max_codes=5),
                samtok_vocabulary(codebook_size=1, depth=1)]


@st.composite
def vocab_and_codes(draw) -> tuple[MaskVocabulary, tuple[int, ...]]:
    vocab = draw(st.sampled_from(VOCABULARIES))
    length = draw(st.integers(vocab.min_codes, vocab.max_codes))
    codes = draw(st.lists(st.integers(0, vocab.codebook_size - 1), min_size=length, max_size=length))
    return vocab, tuple(codes)


@ROUND_TRIP
@given(vocab_and_codes(), st.lists(vocab_and_codes(), max_size=3), st.text(max_size=12))
def test_format_then_parse_is_identity(first, more, filler):
    vocab, codes = first
    words = [codes] + [c for v, c in more if v == vocab]
    filler = filler.replace("<", "(")  # filler text must not open tokens of its own
    text = filler + filler.join(format_mask_words(c, vocab) for c in words) + filler
    spans = parse_mask_words(text, vocab)
    assert [s.codes for s in spans] == words and all(s.ok and s.repairs == () for s in spans)
    assert [text[s.start:s.end] for s in spans] == [format_mask_words(c, vocab) for c in words]
    assert parse_short(format_short(codes, vocab), vocab) == codes
    ids = {token: 3 * i + 7 for i, token in enumerate(vocab.tokens())}
    sequence = [0]
    for c in words:
        sequence += [ids[vocab.start_token]] + [ids[vocab.code_token(p, x)] for p, x in enumerate(c)]
        sequence += [ids[vocab.end_token], 1]
    id_spans = parse_mask_token_ids(sequence, vocab, ids)
    assert [s.codes for s in id_spans] == words and all(s.ok for s in id_spans)


@ROUND_TRIP
@given(vocab_and_codes(), st.data())
def test_streamed_round_trip_in_any_chunks(item, data):
    vocab, codes = item
    text = "see " + format_mask_words(codes, vocab) + " here"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    parser = StreamingMaskParser(vocab)
    spans = []
    for i, j in zip([0] + cuts, cuts + [len(text)]):
        spans += parser.feed(text[i:j])
    assert spans + parser.close() == parse_mask_words(text, vocab)
    assert [s.codes for s in spans] == [codes]


# ---- fuzz ---------------------------------------------------------------------------------
FRAGMENTS = ["<|mt_start|>", "<|mt_end|>", "<|mt_0011|>", "<|mt_0347|>", "<|mt_0000|>", "<|mt_0511|>",
             "<|mt_0256|>", "<|mt_9999|>", "<|mt_0512|>", "<|mt_011|>", "<|mt_7|>", "<|mt_1023|>",
             "<|mt_1024|>", "<|mt_00011|>", "<|mt_", "<|mt_start", "|>", "<", ">", "<|", "mt_", " ",
             "\n", "\t", "text", "<11-347>", "<|mt_-1|>", "<|mt_１|>", "<|MT_START|>"]

fuzz_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map("".join)


def check_report(spans, length: int, vocab: MaskVocabulary) -> None:
    """Invariants of a lenient parse of an input of ``length`` characters / tokens."""
    cursor = 0
    for span in spans:
        assert cursor <= span.start < span.end <= length
        cursor = span.end
        assert span.ok == (span.problems == ()) and (span.ok or span.status == span.problems[0])
        assert span.decodable == bool(span.codes)
        assert len(span.codes) <= vocab.max_codes
        assert all(0 <= c < vocab.codebook_size for c in span.codes)
        if span.ok:
            assert vocab.min_codes <= len(span.codes)
        elif span.decodable:  # a recovery is always reported
            assert any(not r.startswith("ignored whitespace") for r in span.repairs)


def check_strict_agrees(parse, lenient_spans) -> None:
    try:
        strict = parse(False)
    except MaskWordsError as error:
        assert any(not s.ok for s in lenient_spans) and error.span is not None
        assert error.span.status == next(s for s in lenient_spans if not s.ok).status
    else:
        assert strict == lenient_spans and all(s.ok for s in strict)


@FUZZ
@given(fuzz_text, st.sampled_from(VOCABULARIES[:3]), st.lists(st.integers(0, 400), max_size=6))
def test_fuzz_text_strict_raises_only_mask_words_error(text, vocab, cuts):
    lenient = parse_mask_words(text, vocab, lenient=True)
    check_report(lenient, len(text), vocab)
    check_strict_agrees(lambda mode: parse_mask_words(text, vocab, lenient=mode), lenient)
    parser, streamed = StreamingMaskParser(vocab, lenient=True), []
    points = sorted({min(c, len(text)) for c in cuts})
    for i, j in zip([0] + points, points + [len(text)]):
        streamed += parser.feed(text[i:j])
    assert streamed + parser.close() == lenient


@FUZZ
@given(st.lists(st.integers(0, 1040), max_size=50), st.sampled_from(VOCABULARIES[:3]), st.integers(1, 8))
def test_fuzz_ids_strict_raises_only_mask_words_error(sequence, vocab, chunk):
    ids = {token: i for i, token in enumerate(vocab.tokens())}  # ids ≥ len(tokens) are text
    lenient = parse_mask_token_ids(sequence, vocab, ids, lenient=True)
    check_report(lenient, len(sequence), vocab)
    check_strict_agrees(lambda mode: parse_mask_token_ids(sequence, vocab, ids, lenient=mode), lenient)
    parser, streamed = StreamingMaskParser(vocab, token_ids=ids, lenient=True), []
    for i in range(0, len(sequence), chunk):
        streamed += parser.feed(sequence[i:i + chunk])
    assert streamed + parser.close() == lenient
