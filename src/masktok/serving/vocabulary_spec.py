"""Which mask vocabulary a served model speaks, as a short spec string or read off its tokenizer.

A spec names the family and its shape: ``samtok:256x2`` (codebook size × levels) or
``himtok:1024x32`` (codebook size × most codes per word). The server process learns it from the
environment variable :data:`VOCABULARY_ENV` (``masktok serve`` sets it); without one, the
vocabulary is read off the tokenizer's tokens, assuming the official shape of the family found
(SAMTok: 2 levels; HiMTok: 32 codes per word).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from masktok.words import MaskVocabulary, himtok_vocabulary, samtok_vocabulary
from masktok.words.vocabulary import (CODE_TOKEN_PREFIX, CODE_TOKEN_SUFFIX, OFFICIAL_VOCABULARIES,
                                      resized_vocabulary)

VOCABULARY_ENV = "MASKTOK_MASK_VOCABULARY"
SPEC_PATTERN = re.compile(r"(" + "|".join(map(re.escape, OFFICIAL_VOCABULARIES)) + r"):([0-9]+)x([0-9]+)")
OFFICIAL_SAMTOK_LEVELS = 2
OFFICIAL_HIMTOK_MAX_CODES = 32
_CODE_TOKEN = re.compile(re.escape(CODE_TOKEN_PREFIX) + r"([0-9]+)" + re.escape(CODE_TOKEN_SUFFIX))


def vocabulary_spec(vocab: MaskVocabulary) -> str:
    """``vocab`` as a spec: ``samtok:256x2`` / ``himtok:1024x32`` (name: codebook size × most codes
    per word, which is the number of levels for a vocabulary with one code per level)."""
    return f"{vocab.name}:{vocab.codebook_size}x{vocab.max_codes}"


def parse_vocabulary_spec(spec: str) -> MaskVocabulary:
    """A spec (``samtok:256x2``, ``himtok:1024x32``) → its vocabulary; ValueError when malformed."""
    match = SPEC_PATTERN.fullmatch(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"mask vocabulary spec: expected 'samtok:<codebook>x<levels>' or "
                         f"'himtok:<codebook>x<max codes>', got {spec!r}")
    name, size, second = match.group(1), int(match.group(2)), int(match.group(3))
    try:
        return resized_vocabulary(OFFICIAL_VOCABULARIES[name], codebook_size=size, max_codes=second)
    except ValueError as err:
        raise ValueError(f"mask vocabulary spec {spec!r}: {err}") from None


def infer_vocabulary(tokens: Mapping[str, int] | set[str]) -> MaskVocabulary:
    """The mask vocabulary whose tokens ``tokens`` (a tokenizer's ``get_vocab()``) hold.

    SAMTok spells codes with 4+ zero-padded digits (``<|mt_0000|>``), HiMTok without padding
    (``<|mt_0|>``); the number of code tokens gives the codebook size, the family's official
    shape the rest.

    Raises:
        ValueError: no mask tokens, or a set that is neither family's in full.
    """
    numbers = [match.group(1) for token in tokens if (match := _CODE_TOKEN.fullmatch(token))]
    if not numbers:
        raise ValueError("tokenizer: holds no mask code tokens '<|mt_…|>'; add the mask "
                         "vocabulary first (`masktok vlm add-vocab`)")
    padded = any(len(n) > 1 and n.startswith("0") for n in numbers)
    if padded:
        if len(numbers) % OFFICIAL_SAMTOK_LEVELS:
            raise ValueError(f"tokenizer: {len(numbers)} SAMTok code tokens do not split into "
                             f"{OFFICIAL_SAMTOK_LEVELS} levels; give the vocabulary explicitly "
                             f"({VOCABULARY_ENV}=samtok:<codebook>x<levels>)")
        vocab = samtok_vocabulary(codebook_size=len(numbers) // OFFICIAL_SAMTOK_LEVELS,
                                  depth=OFFICIAL_SAMTOK_LEVELS)
    else:
        vocab = himtok_vocabulary(codebook_size=len(numbers), max_codes=OFFICIAL_HIMTOK_MAX_CODES)
    missing = [t for t in vocab.tokens() if t not in tokens]
    if missing:
        raise ValueError(f"tokenizer: {len(missing)} tokens of the inferred vocabulary "
                         f"{vocabulary_spec(vocab)} are missing (first: {missing[:3]}); give the "
                         f"vocabulary explicitly ({VOCABULARY_ENV}=…)")
    return vocab
