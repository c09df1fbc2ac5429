"""REC answers → boxes, per model family, as each family's published scorer reads them.

Box formats (:data:`BOX_FORMATS`) and what each protocol accepts:

``"internvl"`` — InternVL / HiMTok, ``<box>[[x1, y1, x2, y2]]</box>``.
    *reference* (InternVL ``internvl_chat/eval/refcoco/evaluate_grounding.py``): the first
    bracketed list of four comma-separated fields *anywhere* in the answer (one or more ``[``,
    four fields, one or more ``]``: ``[[x1,y1,x2,y2]]``, ``[x1, y1, x2, y2]``, with or without
    ``<box>`` tags); each field is read with Python's ``float``; if the first such list does not
    parse the answer has no box. When the four values sum to at least 4 they are per mille of
    the image (divided by 1000), otherwise they are already fractions of the image; then
    multiplied by the width / height. Arithmetic in float32, as the reference's torch tensors.
    *strict*: only ``[x1, y1, x2, y2]`` lists inside ``<box>…</box>`` count (``[[…]]`` or a list of
    boxes), always per mille.
``"qwen_vl"`` — Qwen-VL / Qwen-VL-Chat, ``<box>(x1,y1),(x2,y2)</box>``.
    *reference* (Qwen-VL ``eval_mm/evaluate_grounding.py``): the first ``(…),(…)`` pair anywhere
    in the answer, each part two comma-separated floats; pixel = value / 999 × size (float32).
    *strict*: only inside ``<box>…</box>``.
``"qwen_norm"`` — Qwen2-VL / Qwen3-VL normalised 0–1000: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``,
    ``<box>(x1,y1),(x2,y2)</box>`` or JSON ``"bbox_2d": [x1, y1, x2, y2]``; pixel = value / 1000 ×
    size. No scorer is published with these models; both protocols read the same forms.
``"qwen_abs"`` — Qwen2.5-VL absolute pixels (JSON ``"bbox_2d"`` or the tag forms) in the frame
    the model saw (``input_size``); both protocols alike.
``"pixels"`` — plain ``[x1, y1, x2, y2]`` in original-image pixels; both protocols alike.

Statuses of :class:`ParsedBox`: ``ok``; ``no_box`` (no box form at all); ``unparsable_box`` (a box
form whose numbers do not read, e.g. ``[[a, b, c, d]]``); ``invalid_box`` (not finite, or x2 ≤ x1
or y2 ≤ y1 — the reference scores these IoU 0 as well); ``empty_mask`` (mask answers). Nothing is
clamped or repaired.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from masktok.eval.protocol import REFERENCE, check_protocol

BOX_FORMATS: tuple[str, ...] = ("internvl", "qwen_vl", "qwen_norm", "qwen_abs", "pixels")
FLOAT32_FORMATS = frozenset({"internvl", "qwen_vl"})  # their reference scorers compute in float32

_NUMBER = r"-?\d+(?:\.\d+)?"
_FOUR = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_PAIRS = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*,?\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")
_TIGHT_PAIRS = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\),\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")
_BOX_TAG = re.compile(r"<box>(.*?)</box>", re.S)
_QWEN_TAG = re.compile(r"<\|box_start\|>(.*?)<\|box_end\|>", re.S)
_BBOX_2D = re.compile(r'"bbox_2d"\s*:\s*(\[[^\]]*\])')
# InternVL's scorer: one or more "[", four lazily matched fields, one or more "]" (any text)
_INTERNVL_ANY = re.compile(r"\[+(.*?),(.*?),(.*?),(.*?)\]+")
# Qwen-VL's scorer: "(" field ")" "," "(" field ")" (any text, no space around the comma)
_QWEN_VL_ANY = re.compile(r"\((.*?)\),\((.*?)\)")


@dataclass(frozen=True)
class ParsedBox:
    """The box an answer gives or ``None``, with its status (see the module docstring).

    Attributes:
        box: (4,) xyxy in original-image pixels (float32 values for the reference protocol of
            ``internvl`` / ``qwen_vl``, float64 otherwise), or ``None``.
        num_boxes: box forms found in the answer (the first one is scored).
        source: the text of the box form that was read (``None`` when there was none).
    """

    box: np.ndarray | None
    status: str
    num_boxes: int = 0
    source: str | None = None


def _check(text: str, box_format: str, protocol: str) -> None:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    check_protocol(protocol)
    if not isinstance(text, str):
        raise ValueError(f"answer must be a string, got {type(text).__name__}")


def _python_floats(fields: Sequence[str]) -> tuple[float, ...] | None:
    """``float(field)`` for every field (Python's own reading, as the reference scorers use)."""
    try:
        return tuple(float(f) for f in fields)
    except ValueError:
        return None


def _box_forms(text: str, box_format: str, protocol: str) -> list[tuple[str, tuple[float, ...] | None]]:
    """Every box form in ``text`` in order: (its text, its four values in the format's units or
    ``None`` when they do not read)."""
    if protocol == REFERENCE and box_format == "internvl":
        return [(m.group(0), _python_floats(m.groups())) for m in _INTERNVL_ANY.finditer(text)]
    if protocol == REFERENCE and box_format == "qwen_vl":
        out = []
        for m in _QWEN_VL_ANY.finditer(text):
            parts = [g.split(",") for g in m.groups()]
            values = _python_floats(parts[0] + parts[1]) if all(len(p) == 2 for p in parts) else None
            out.append((m.group(0), values))
        return out
    if box_format == "internvl":
        return [(m.group(0), tuple(map(float, m.groups())))
                for body in _BOX_TAG.finditer(text) for m in _FOUR.finditer(body.group(1))]
    if box_format == "qwen_vl":
        return [(m.group(0), tuple(map(float, m.groups())))
                for body in _BOX_TAG.finditer(text) for m in _TIGHT_PAIRS.finditer(body.group(1))]
    if box_format == "pixels":
        return [(m.group(0), tuple(map(float, m.groups()))) for m in _FOUR.finditer(text)]
    # Qwen2-VL family: tags holding corner pairs or lists, or JSON bbox_2d entries, in text order
    found: list[tuple[int, str, tuple[float, ...]]] = []
    for tag in (_QWEN_TAG, _BOX_TAG):
        for m in tag.finditer(text):
            for pattern in (_PAIRS, _FOUR):
                found.extend((m.start(), g.group(0), tuple(map(float, g.groups())))
                             for g in pattern.finditer(m.group(1)))
    for m in _BBOX_2D.finditer(text):
        found.extend((m.start(), g.group(0), tuple(map(float, g.groups())))
                     for g in _FOUR.finditer(m.group(1)))
    return [(src, values) for _, src, values in sorted(found, key=lambda item: item[0])]


def parse_boxes(text: str, box_format: str, protocol: str = REFERENCE) -> list[tuple[float, ...]]:
    """Every readable box of ``text`` in the format's own units (0–999 / 0–1000 / pixels, or
    fractions for InternVL reference boxes summing below 4), in order."""
    _check(text, box_format, protocol)
    return [values for _, values in _box_forms(text, box_format, protocol) if values is not None]


def box_to_pixels(box: Sequence[float], box_format: str, width: int, height: int,
                  input_size: tuple[int, int] | None = None, protocol: str = REFERENCE) -> np.ndarray:
    """One parsed box (format units) → (4,) xyxy in original-image pixels."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    if check_protocol(protocol) == REFERENCE and box_format in FLOAT32_FORMATS:
        values = np.asarray(box, dtype=np.float32).reshape(4)
        if box_format == "qwen_vl":
            values = values / np.float32(999)
        elif values.sum(dtype=np.float32) >= 4:  # per mille; smaller sums are fractions already
            values = values / np.float32(1000)
        return values * np.array([width, height, width, height], dtype=np.float32)
    x1, y1, x2, y2 = (float(v) for v in box)
    if box_format in ("internvl", "qwen_norm"):
        sx, sy = width / 1000.0, height / 1000.0
    elif box_format == "qwen_vl":
        sx, sy = width / 999.0, height / 999.0
    elif box_format == "qwen_abs":
        in_w, in_h = input_size if input_size is not None else (width, height)
        if in_w <= 0 or in_h <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        sx, sy = width / in_w, height / in_h
    else:
        sx = sy = 1.0
    return np.array([x1 * sx, y1 * sy, x2 * sx, y2 * sy], dtype=np.float64)


def answer_box(text: str, box_format: str, width: int, height: int,
               input_size: tuple[int, int] | None = None, protocol: str = REFERENCE) -> ParsedBox:
    """The first box of an answer, in original-image pixels (REC scores the first box)."""
    _check(text, box_format, protocol)
    forms = _box_forms(text, box_format, protocol)
    if not forms:
        return ParsedBox(None, "no_box", 0)
    source, values = forms[0]
    if values is None:
        return ParsedBox(None, "unparsable_box", len(forms), source)
    box = box_to_pixels(values, box_format, width, height, input_size, protocol)
    if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        return ParsedBox(None, "invalid_box", len(forms), source)
    return ParsedBox(box, "ok", len(forms), source)
