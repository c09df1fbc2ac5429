"""What the parser reports for each mask span: offsets, codes, status and the repairs it made."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class SpanStatus(str, Enum):
    """The first problem found in a span (``ok`` when there is none).

    * ``ok`` — start, one valid code per position, end.
    * ``truncated`` — fewer codes than a word needs (a SAMTok word with its level-0 code only).
    * ``empty`` — a start token with no code after it.
    * ``extra_tokens`` — more code tokens than a word holds.
    * ``bad_level_order`` — a code token of another level at a position (SAMTok).
    * ``out_of_range`` — a token number outside the vocabulary (``<|mt_9999|>``, a code ≥ codebook).
    * ``malformed_token`` — a code token not spelt as the vocabulary spells it (``<|mt_011|>``
      for SAMTok, ``<|mt_0011|>`` for HiMTok).
    * ``unterminated`` — no end token (end of input, text, or a new start token came first).
    * ``missing_start`` — code or end tokens outside any span.
    """

    OK = "ok"
    TRUNCATED = "truncated"
    EMPTY = "empty"
    EXTRA_TOKENS = "extra_tokens"
    BAD_LEVEL_ORDER = "bad_level_order"
    OUT_OF_RANGE = "out_of_range"
    MALFORMED_TOKEN = "malformed_token"
    UNTERMINATED = "unterminated"
    MISSING_START = "missing_start"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class MaskSpan:
    """One mask span found by the parser.

    Attributes:
        start: offset of its first token (characters for text, tokens for ids).
        end: offset just past its last token (exclusive), so ``text[start:end]`` is the span.
        codes: per-position codes with the level offset removed. For a span that is not ``ok``
            these are what lenient parsing recovered (a valid prefix of a word), or () when
            nothing could be recovered.
        status: the first problem found (:class:`SpanStatus`), ``ok`` when there is none.
        repairs: what the parser did to get ``codes``, in words (dropped tokens, a closed
            span, a level-0-only decode, whitespace it ignored between tokens). Empty for an
            ``ok`` span whose tokens were adjacent.
        problems: every problem found, in order; ``status`` is the first one.
    """

    start: int
    end: int
    codes: tuple[int, ...]
    status: SpanStatus
    repairs: tuple[str, ...] = ()
    problems: tuple[SpanStatus, ...] = ()

    @property
    def ok(self) -> bool:
        """Well formed: ``codes`` are exactly what the words say."""
        return self.status is SpanStatus.OK

    @property
    def decodable(self) -> bool:
        """``codes`` can be handed to the tokenizer: ``ok``, or repaired into a valid prefix."""
        return len(self.codes) > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"start": self.start, "end": self.end, "codes": list(self.codes),
                "status": self.status.value, "decodable": self.decodable,
                "repairs": list(self.repairs), "problems": [p.value for p in self.problems]}


class MaskWordsError(ValueError):
    """A malformed mask span met in strict parsing. ``span`` holds the parser's report."""

    def __init__(self, message: str, span: MaskSpan | None = None) -> None:
        super().__init__(message)
        self.span = span
