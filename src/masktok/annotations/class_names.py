"""Class names as models write them and datasets spell them: one normalisation for comparing both."""

from __future__ import annotations

import re


def normalize_class_name(name: str) -> str:
    """How class names are compared with what a model wrote: lower case, ``-merged``/``-other``/
    ``-stuff`` suffixes dropped, ``_``/``-``/``/`` as spaces, single spaces."""
    text = name.strip().lower()
    text = re.sub(r"-(merged|other|stuff)$", "", text)
    text = re.sub(r"[_\-/]+", " ", text)
    return " ".join(text.split())


def class_index(names: list[str]) -> dict[str, int]:
    """Normalised class name → index (ValueError when two names collide)."""
    out: dict[str, int] = {}
    for i, n in enumerate(names):
        key = normalize_class_name(n)
        if key in out:
            raise ValueError(f"class names {names[out[key]]!r} and {n!r} collide after normalisation")
        out[key] = i
    return out
