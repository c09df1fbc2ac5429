"""Mask spans of a text → gradio ``HighlightedText`` pieces, coloured like the overlay.

Decoded mask k is labelled ``mask k`` (``mask k · status`` when the parser repaired it) in the
overlay colour of mask k (:func:`masktok.masks.render.mask_colors`); a span that could not be
decoded is labelled ``not decoded · status`` in grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from masktok.demo.feedback import rgb_hex
from masktok.masks.render import mask_colors

UNDECODED_COLOR = "#9ca3af"


@dataclass(frozen=True)
class MarkedSpan:
    """One mask span of a text: ``text[start:end]``, its parser status and whether it was decoded."""

    start: int
    end: int
    status: str
    decoded: bool


def span_labels(marked: Sequence[MarkedSpan]) -> list[tuple[str, str]]:
    """(label, colour) per span, numbering decoded masks in order from 0."""
    decoded_count = sum(m.decoded for m in marked)
    colors = mask_colors(decoded_count)
    labels, k = [], 0
    for m in marked:
        if m.decoded:
            label = f"mask {k}" if m.status == "ok" else f"mask {k} · {m.status}"
            labels.append((label, rgb_hex(colors[k])))
            k += 1
        else:
            labels.append((f"not decoded · {m.status}", UNDECODED_COLOR))
    return labels


def highlighted_text(text: str, marked: Sequence[MarkedSpan]
                     ) -> tuple[list[tuple[str, str | None]], dict[str, str]]:
    """``text`` cut into (piece, label or None) for ``HighlightedText``, and its colour map.

    Raises:
        ValueError: spans out of order, overlapping or outside ``text``.
    """
    pieces: list[tuple[str, str | None]] = []
    color_map: dict[str, str] = {}
    cursor = 0
    for m, (label, color) in zip(marked, span_labels(marked)):
        if not cursor <= m.start <= m.end <= len(text):
            raise ValueError(f"spans: [{m.start}, {m.end}) is out of order or outside the text "
                             f"(length {len(text)})")
        if m.start > cursor:
            pieces.append((text[cursor:m.start], None))
        pieces.append((text[m.start:m.end], label))
        color_map[label] = color
        cursor = m.end
    if cursor < len(text):
        pieces.append((text[cursor:], None))
    return pieces, color_map
