"""Helpers over parsed text: replace mask spans with readable stand-ins, or pull out their codes."""

from __future__ import annotations

from collections.abc import Callable

from masktok.words.format import format_short
from masktok.words.parse import parse_mask_words
from masktok.words.spans import MaskSpan
from masktok.words.vocabulary import MaskVocabulary

REPLACE_STYLES = ("index", "short")


def _short(vocab: MaskVocabulary) -> Callable[[int, MaskSpan], str]:
    def render(index: int, span: MaskSpan) -> str:
        if not span.decodable:
            return f"<{span.status.value}>"
        if len(span.codes) < vocab.min_codes:  # a repaired prefix: spell its token numbers
            return "<" + "-".join(str(vocab.token_number(p, c)) for p, c in enumerate(span.codes)) + ">"
        return format_short(span.codes, vocab)
    return render


def replace_mask_spans(text: str, vocab: MaskVocabulary,
                       fn_or_style: str | Callable[[int, MaskSpan], str] = "index", *,
                       lenient: bool = False) -> str:
    """``text`` with every mask span replaced.

    Args:
        text: text holding mask words.
        vocab: the vocabulary they are spelt in.
        fn_or_style: ``"index"`` → ``[mask 0]``, ``[mask 1]``… (spans counted from 0 in text
            order); ``"short"`` → the short form ``<11-347>`` (a lenient span with nothing to
            decode becomes ``<its status>``, e.g. ``<unterminated>``); or a function
            ``(index, span) -> str``.
        lenient: parse leniently (see :func:`parse_mask_words`); strict parsing raises
            :class:`MaskWordsError` on a malformed span.
    """
    if callable(fn_or_style):
        render = fn_or_style
    elif fn_or_style == "index":
        def render(index: int, span: MaskSpan) -> str:
            return f"[mask {index}]"
    elif fn_or_style == "short":
        render = _short(vocab)
    else:
        raise ValueError(f"fn_or_style: expected one of {REPLACE_STYLES} or a callable, got {fn_or_style!r}")
    pieces, cursor = [], 0
    for index, span in enumerate(parse_mask_words(text, vocab, lenient=lenient)):
        replacement = render(index, span)
        if not isinstance(replacement, str):
            raise ValueError(f"fn_or_style: the replacement for span {index} must be a str, "
                             f"got {type(replacement).__name__}")
        pieces.append(text[cursor:span.start])
        pieces.append(replacement)
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def extract_codes(text: str, vocab: MaskVocabulary) -> list[tuple[int, ...]]:
    """The codes of every mask span of ``text``, in order (strict: a malformed span raises
    :class:`MaskWordsError`; use :func:`parse_mask_words` with ``lenient=True`` to inspect one)."""
    return [span.codes for span in parse_mask_words(text, vocab)]
