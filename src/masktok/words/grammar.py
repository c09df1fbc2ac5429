"""The span grammar as a state machine over lexed tokens, shared by the text and id parsers.

A lexer (:mod:`masktok.words.lexer`) turns text or token ids into calls ``on_start``,
``on_end``, ``on_code`` and ``on_text``; :class:`SpanAssembler` groups them into spans and
appends each finished :class:`MaskSpan` to ``completed`` the moment it is decided. Each call does
constant work, so parsing is linear in the input.

Grammar: ``start code{min_codes..max_codes} end``, where the code at position ``p`` must be
spelt canonically, lie inside the vocabulary and come from level ``expected_level(p)``.
Whitespace between tokens of a span is ignored and reported; any other text ends the span.
Lenient recovery keeps the longest valid prefix of codes (at most ``max_codes``), closes an
unterminated span, and decodes a SAMTok prefix with fewer levels; each step is written into the
span's ``repairs``. Strict mode raises :class:`MaskWordsError` instead of emitting a bad span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from masktok.words.spans import MaskSpan, MaskWordsError, SpanStatus
from masktok.words.vocabulary import (CODE_TOKEN_PREFIX, CODE_TOKEN_SUFFIX, MaskVocabulary,
                                      vocabulary_tokens)

WHITESPACE_NOTE = "ignored whitespace between mask tokens"
_PREVIEW_TOKENS = 6


@lru_cache(maxsize=32)
def known_spellings(vocab: MaskVocabulary) -> dict[str, tuple[int, int]]:
    """Every canonical in-vocabulary number spelling (``"0347"``) → (level, code)."""
    prefix, suffix = len(CODE_TOKEN_PREFIX), len(CODE_TOKEN_SUFFIX)
    codes = vocabulary_tokens(vocab)[2:]
    return {token[prefix:-suffix]: divmod(n, vocab.codebook_size) for n, token in enumerate(codes)}


@dataclass
class _OpenSpan:
    """A span being read."""

    start: int
    end: int
    has_start: bool
    count: int = 0                      # code tokens seen
    prefix: list[int] = field(default_factory=list)  # valid codes before the first bad token
    first_bad: int | None = None        # position of the first invalid code token
    dropped: int = 0                    # code tokens after the valid prefix
    problems: list[SpanStatus] = field(default_factory=list)
    pending_space: bool = False         # whitespace seen since the last token
    spaced: bool = False                # whitespace found between two tokens
    preview: list[str] = field(default_factory=list)  # the first few tokens, for messages
    seen: int = 0                       # tokens of any kind seen

    def note(self, problem: SpanStatus) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def see(self, raw: str, end: int) -> None:
        if self.pending_space:
            self.spaced = True
            self.pending_space = False
        if len(self.preview) < _PREVIEW_TOKENS:
            self.preview.append(raw)
        self.seen += 1
        self.end = end


class SpanAssembler:
    """Groups lexed tokens into :class:`MaskSpan`s (see the module docstring).

    Args:
        vocab: the vocabulary.
        lenient: recover and report instead of raising :class:`MaskWordsError`.
        unit: ``"character"`` or ``"token"``, used in messages.
    """

    def __init__(self, vocab: MaskVocabulary, *, lenient: bool, unit: str) -> None:
        self.vocab = vocab
        self.lenient = lenient
        self.unit = unit
        self.completed: list[MaskSpan] = []
        self._open: _OpenSpan | None = None
        self._max_codes = vocab.max_codes
        self._known = known_spellings(vocab)

    @property
    def is_open(self) -> bool:
        """Whether a span (or a run of stray tokens) is being read."""
        return self._open is not None

    # ---- events ------------------------------------------------------------------------------
    def on_start(self, start: int, end: int) -> None:
        if self._open is not None:
            self._finish(self._open, terminated=False,
                         reason=f"before a new start token at {self.unit} {start}")
        self._open = _OpenSpan(start=start, end=end, has_start=True, preview=[self.vocab.start_token],
                               seen=1)

    def on_end(self, start: int, end: int) -> None:
        span = self._open
        if span is None:
            span = _OpenSpan(start=start, end=end, has_start=False)
        span.see(self.vocab.end_token, end)
        self._open = None
        self._finish(span, terminated=True, reason="")

    def on_code(self, start: int, end: int, digits: str, raw: str) -> None:
        """A token ``<|mt_{digits}|>`` (``digits``: 1–9 ASCII digits) spanning [start, end)."""
        span = self._open
        if span is None:
            span = self._open = _OpenSpan(start=start, end=end, has_start=False)
        span.see(raw, end)
        position = span.count
        span.count += 1
        if position >= self._max_codes:
            span.note(SpanStatus.EXTRA_TOKENS)
            span.dropped += 1
            return
        known = self._known.get(digits)
        problem = None
        if known is None:
            problem = (SpanStatus.OUT_OF_RANGE if self.vocab.is_canonical(digits)
                       else SpanStatus.MALFORMED_TOKEN)
        elif known[0] != self.vocab.expected_level(position):
            problem = SpanStatus.BAD_LEVEL_ORDER
        if problem is not None:
            span.note(problem)
            if span.first_bad is None:
                span.first_bad = position
        if span.first_bad is not None:
            span.dropped += 1
        else:
            span.prefix.append(known[1])

    def on_text(self, first_visible: int | None) -> None:
        """Text after the last token: whitespace only (``first_visible`` None), or text whose
        first non-whitespace character is at ``first_visible``."""
        span = self._open
        if span is None:
            return
        if first_visible is None:
            span.pending_space = True
            return
        self._open = None
        self._finish(span, terminated=False, reason=f"before text at {self.unit} {first_visible}")

    def finish(self) -> None:
        """End of input: decide the span still open, if any."""
        if self._open is not None:
            span, self._open = self._open, None
            self._finish(span, terminated=False, reason="at end of input")

    # ---- deciding a span ---------------------------------------------------------------------
    def _finish(self, span: _OpenSpan, *, terminated: bool, reason: str) -> None:
        vocab = self.vocab
        problems = list(span.problems)
        if not span.has_start:
            problems.insert(0, SpanStatus.MISSING_START)
        else:
            if not terminated:
                problems.append(SpanStatus.UNTERMINATED)
            if span.count == 0:
                problems.append(SpanStatus.EMPTY)
            elif span.count < vocab.min_codes:
                problems.append(SpanStatus.TRUNCATED)
        repairs = [WHITESPACE_NOTE] if span.spaced else []
        codes: tuple[int, ...] = tuple(span.prefix)
        if problems:
            if not self.lenient:
                self._raise(span, problems)
            if not span.has_start or not span.prefix:
                codes = ()
            else:
                repairs.extend(self._recovery(span, terminated, reason))
        self.completed.append(MaskSpan(start=span.start, end=span.end, codes=codes,
                                       status=problems[0] if problems else SpanStatus.OK,
                                       repairs=tuple(repairs), problems=tuple(problems)))

    def _recovery(self, span: _OpenSpan, terminated: bool, reason: str) -> list[str]:
        vocab = self.vocab
        steps = []
        if span.dropped:
            if span.first_bad is not None:
                steps.append(f"dropped {span.dropped} code token(s) from position {span.first_bad} "
                             f"on ({span.problems[0].value} at position {span.first_bad})")
            else:
                steps.append(f"dropped {span.dropped} extra code token(s) after the "
                             f"{vocab.max_codes} a {vocab.name} word holds")
        if not terminated:
            steps.append(f"closed the unterminated span {reason}")
        if len(span.prefix) < vocab.min_codes:
            steps.append(f"decoding the first {len(span.prefix)} of {vocab.min_codes} levels only")
        return steps

    def _raise(self, span: _OpenSpan, problems: list[SpanStatus]) -> None:
        preview = "".join(span.preview) + ("…" if span.seen > len(span.preview) else "")
        status = problems[0]
        report = MaskSpan(start=span.start, end=span.end, codes=(), status=status,
                          problems=tuple(problems))
        raise MaskWordsError(
            f"malformed {self.vocab.name} mask span at {self.unit}s {span.start}:{span.end} "
            f"({', '.join(p.value for p in problems)}): {preview!r}; parse with lenient=True to "
            f"recover what can be recovered", span=report)
