"""Writing codes as mask words, and the short form used in figures (``<11-347>``).

The short form lists the *token numbers* of one word joined by ``-``: the SAMTok word
``<|mt_start|><|mt_0011|><|mt_0347|><|mt_end|>`` (codes 11 and 91, level 1 offset by 256) is
``<11-347>``; a HiMTok word is ``<17-903-…>``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

from masktok.words.vocabulary import SAMTOK_VOCABULARY, MaskVocabulary

SHORT_FORM = re.compile(r"<([0-9]+(?:-[0-9]+)*)>")


def check_codes(codes: Any, vocab: MaskVocabulary, name: str = "codes") -> tuple[int, ...]:
    """``codes`` (a sequence, 1-D array or tensor of ints) as a tuple, checked against ``vocab``.

    A SAMTok word needs exactly one code per level; a HiMTok word 1…``max_codes`` codes. Every
    code must lie in [0, codebook_size). Anything else raises ValueError; nothing is clamped.
    """
    if hasattr(codes, "tolist") and not isinstance(codes, (list, tuple)):
        codes = codes.tolist()
    if isinstance(codes, (str, bytes)) or not isinstance(codes, Sequence):
        raise ValueError(f"{name}: expected a sequence of ints, got {type(codes).__name__}")
    values = []
    for position, code in enumerate(codes):
        if isinstance(code, bool):
            raise ValueError(f"{name}[{position}]: expected an int, got a bool")
        try:
            values.append(operator.index(code))
        except TypeError:
            raise ValueError(f"{name}[{position}]: expected an int, got {code!r}") from None
    if not vocab.min_codes <= len(values) <= vocab.max_codes:
        wanted = (f"exactly {vocab.min_codes}" if vocab.min_codes == vocab.max_codes
                  else f"{vocab.min_codes} to {vocab.max_codes}")
        raise ValueError(f"{name}: a {vocab.name} word holds {wanted} codes, got {len(values)}")
    for position, code in enumerate(values):
        if not 0 <= code < vocab.codebook_size:
            raise ValueError(f"{name}[{position}] = {code} is outside [0, {vocab.codebook_size}) "
                             f"for {vocab.name}")
    return tuple(values)


def format_mask_words(codes: Any, vocab: MaskVocabulary) -> str:
    """One mask's codes → its words, e.g. (11, 91) → ``<|mt_start|><|mt_0011|><|mt_0347|><|mt_end|>``.

    Args:
        codes: per-position codes, (L,) ints; SAMTok level-d codes are given in [0, codebook_size)
            and the formatter adds the level offset.
        vocab: the vocabulary to spell them in.
    """
    values = check_codes(codes, vocab)
    body = "".join(vocab.code_token(position, code) for position, code in enumerate(values))
    return f"{vocab.start_token}{body}{vocab.end_token}"


def format_short(codes: Any, vocab: MaskVocabulary = SAMTOK_VOCABULARY) -> str:
    """One mask's codes → the short form ``<11-347>`` (token numbers joined by ``-``)."""
    values = check_codes(codes, vocab)
    return "<" + "-".join(str(vocab.token_number(p, c)) for p, c in enumerate(values)) + ">"


def parse_short(text: str, vocab: MaskVocabulary = SAMTOK_VOCABULARY) -> tuple[int, ...]:
    """The short form ``<11-347>`` → per-position codes (11, 91); ValueError when malformed."""
    if not isinstance(text, str):
        raise ValueError(f"short form: expected a str, got {type(text).__name__}")
    match = SHORT_FORM.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"short form: expected '<n-n-…>' with decimal token numbers, got {text!r}")
    numbers = [int(part) for part in match.group(1).split("-")]
    if len(numbers) > vocab.max_codes:
        raise ValueError(f"short form {text!r}: {len(numbers)} numbers, a {vocab.name} word holds "
                         f"at most {vocab.max_codes}")
    codes = []
    for position, number in enumerate(numbers):
        if number >= vocab.num_code_tokens:
            raise ValueError(f"short form {text!r}: token number {number} is outside "
                             f"[0, {vocab.num_code_tokens}) for {vocab.name}")
        level, code = vocab.split_number(number)
        if level != vocab.expected_level(position):
            raise ValueError(f"short form {text!r}: token number {number} is a level-{level} code "
                             f"but position {position} takes level {vocab.expected_level(position)}")
        codes.append(code)
    return check_codes(codes, vocab, name=f"short form {text!r}")
