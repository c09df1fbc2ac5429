"""Mutation fuzzing of the grammar with a plain seeded loop (``random.Random``).

Well-formed answers are mutated (characters inserted, deleted or replaced; tokens duplicated,
dropped, swapped, respelt; the text cut short) and parsed as text and as token ids. Strict
parsing may raise ``MaskWordsError`` and nothing else; lenient parsing never raises; both agree.

CI runs ``MASKTOK_FUZZ_EXAMPLES`` inputs per test (default 2,000). The release check runs
100,000 (``docs/fuzzing.md``)::

    MASKTOK_FUZZ_EXAMPLES=100000 python -m pytest tests/test_words_fuzz.py -q
"""

from __future__ import annotations

import os
import random

import pytest

from masktok.words import (HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, MaskVocabulary, MaskWordsError,
                           StreamingMaskParser, format_mask_words, parse_mask_token_ids,
                           parse_mask_words)

EXAMPLES = int(os.environ.get("MASKTOK_FUZZ_EXAMPLES", "2000"))
SEED = 20240607
NOISE = ["<", ">", "|", "_", "mt", "<|mt_", "|>", " ", "\n", "0", "9", "start", "end", "<|mt_start|>",
         "<|mt_end|>", "<|mt_9999|>", "<|mt_-3|>", "é", "\x00"]


def answer(rng: random.Random, vocab: MaskVocabulary) -> str:
    parts = []
    for _ in range(rng.randint(0, 4)):
        parts.append(rng.choice(["The ", "cat", " and ", "dog ", ". ", "\n", ""]))
        length = rng.randint(vocab.min_codes, vocab.max_codes)
        parts.append(format_mask_words([rng.randrange(vocab.codebook_size) for _ in range(length)], vocab))
    return "".join(parts)


def mutate(rng: random.Random, text: str, vocab: MaskVocabulary) -> str:
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        i = rng.randint(0, len(text))
        if kind == 0:
            text = text[:i] + rng.choice(NOISE) + text[i:]
        elif kind == 1 and text:
            j = min(len(text), i + rng.randint(1, 12))
            text = text[:i] + text[j:]
        elif kind == 2 and text:
            text = text[:i] + chr(rng.randrange(32, 0x3000)) + text[i + 1:]
        elif kind == 3:
            text = text[:i]
        else:  # token-level edits
            tokens = text.split("|>")
            if len(tokens) > 2:
                a, b = rng.randrange(len(tokens) - 1), rng.randrange(len(tokens) - 1)
                if kind == 4:
                    tokens.insert(a, tokens[b])
                elif kind == 5:
                    tokens[a], tokens[b] = tokens[b], tokens[a]
                else:
                    number = rng.choice([rng.randrange(vocab.num_code_tokens * 2), 9999])
                    tokens[a] = f"<|mt_{number:0{rng.choice([0, 3, 4, 5])}d}"
                text = "|>".join(tokens)
    return text


@pytest.mark.parametrize("vocab", [SAMTOK_VOCABULARY, HIMTOK_VOCABULARY], ids=["samtok", "himtok"])
def test_mutated_text_never_crashes(vocab):
    rng = random.Random(SEED)
    statuses = set()
    for _ in range(EXAMPLES):
        text = mutate(rng, answer(rng, vocab), vocab)
        spans = parse_mask_words(text, vocab, lenient=True)
        statuses.update(s.status.value for s in spans)
        assert all(0 <= s.start < s.end <= len(text) for s in spans)
        try:
            strict = parse_mask_words(text, vocab)
        except MaskWordsError:
            assert any(not s.ok for s in spans)
        else:
            assert strict == spans
        if rng.random() < 0.1:  # streamed in random chunks: the same report
            parser, streamed, i = StreamingMaskParser(vocab, lenient=True), [], 0
            while i < len(text):
                step = rng.randint(1, 9)
                streamed += parser.feed(text[i:i + step])
                i += step
            assert streamed + parser.close() == spans
    if EXAMPLES >= 1000:  # the mutations reach the malformed cases, not just ok spans
        assert {"ok", "unterminated", "missing_start", "out_of_range", "malformed_token"} <= statuses


@pytest.mark.parametrize("vocab", [SAMTOK_VOCABULARY, HIMTOK_VOCABULARY], ids=["samtok", "himtok"])
def test_random_id_sequences_never_crash(vocab):
    rng = random.Random(SEED + 1)
    ids = {token: 100 + i for i, token in enumerate(vocab.tokens())}
    start, end = ids[vocab.start_token], ids[vocab.end_token]
    top = 100 + len(ids)
    for _ in range(EXAMPLES):
        sequence = []
        for _ in range(rng.randint(0, 40)):
            roll = rng.random()
            sequence.append(start if roll < 0.12 else end if roll < 0.22 else
                            rng.randrange(0, 100) if roll < 0.35 else rng.randrange(102, top))
        spans = parse_mask_token_ids(sequence, vocab, ids, lenient=True)
        assert all(0 <= s.start < s.end <= len(sequence) for s in spans)
        assert all(s.decodable == bool(s.codes) for s in spans)
        try:
            strict = parse_mask_token_ids(sequence, vocab, ids)
        except MaskWordsError:
            assert any(not s.ok for s in spans)
        else:
            assert strict == spans
