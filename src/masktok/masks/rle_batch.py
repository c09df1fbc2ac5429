"""Validate many COCO RLEs at once.

:func:`masktok.masks.check_rle` parses one compressed counts string with a handful of numpy
calls; for a prediction file of 10,000 masks the per-call overhead dominates. :func:`check_rles`
concatenates every compressed string into one buffer and parses all of them with the same number
of numpy calls as a single one (the counts of pycocotools' compact string never cross a string:
each string ends with the last 5-bit group of its last count).

The result is exactly ``[check_rle(r, size, name(i)) for i, r in enumerate(rles)]``: the same
``{"size": [H, W], "counts": bytes}`` dicts, and for bad input the same ``ValueError`` for the
first bad RLE, with its name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from masktok.masks.arrays import check_size
from masktok.masks.rle import check_rle

__all__ = ["check_rles"]

_MAX_GROUPS = 12  # 12 groups of 5 bits: a count of at most 60 bits (check_rle's limit)


def _plain_size(size: Any) -> tuple[int, int] | None:
    """(H, W) when ``size`` is a plain two-int list/tuple of positive ints, else None."""
    if type(size) not in (list, tuple) or len(size) != 2:
        return None
    h, w = size
    if type(h) is not int or type(w) is not int or h <= 0 or w <= 0:
        return None
    return h, w


def check_rles(rles: Sequence[Any], size: Sequence[int] | None = None,
               name: str | Callable[[int], str] = "rles") -> list[dict]:
    """Validate N COCO RLEs → N ``{"size": [H, W], "counts": bytes}`` (see :func:`check_rle`).

    Args:
        rles: RLE dicts with compressed (``str`` / ``bytes``) or uncompressed (list) counts.
        size: the (H, W) every RLE must have; None accepts each RLE's own size.
        name: how the inputs are called in errors: a prefix (``"rles"`` → ``rles[3]``) or a
            function of the index.

    Raises:
        ValueError: for the first bad RLE, with :func:`check_rle`'s message.
    """
    names = (lambda i: f"{name}[{i}]") if isinstance(name, str) else name
    expected = None if size is None else check_size(size, "size")
    out: list[dict | None] = [None] * len(rles)
    fast_index: list[int] = []
    fast_bytes: list[bytes] = []
    fast_hw: list[tuple[int, int]] = []
    for i, rle in enumerate(rles):
        counts = rle.get("counts") if isinstance(rle, dict) else None
        hw = _plain_size(rle.get("size")) if isinstance(rle, dict) else None
        if hw is not None and (expected is None or hw == expected):
            if isinstance(counts, str) and counts.isascii():
                fast_index.append(i)
                fast_bytes.append(counts.encode("ascii"))
                fast_hw.append(hw)
                continue
            if isinstance(counts, (bytes, bytearray)):
                fast_index.append(i)
                fast_bytes.append(bytes(counts))
                fast_hw.append(hw)
                continue
        out[i] = check_rle(rle, size=size, name=names(i))  # uncompressed or unusual: one by one
    if fast_index:
        bad = _bad_compressed(fast_bytes, np.array(fast_hw, dtype=np.int64).reshape(-1, 2))
        if bad.any():
            first = fast_index[int(np.flatnonzero(bad)[0])]
            check_rle(rles[first], size=size, name=names(first))  # raises with the exact reason
            raise AssertionError(f"{names(first)}: rejected by the batch check but not by check_rle")
        for i, counts, (h, w) in zip(fast_index, fast_bytes, fast_hw):
            out[i] = {"size": [h, w], "counts": counts}
    return out  # type: ignore[return-value]


def _segmented_cumsum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``x`` restarting at every index of ``starts`` (sorted, the first 0)."""
    y = x.copy()
    if len(starts) > 1:
        y[starts[1:]] -= np.add.reduceat(x, starts)[:-1]
    return np.cumsum(y)


def _bad_compressed(strings: list[bytes], hw: np.ndarray) -> np.ndarray:
    """(M,) bool: which compressed counts strings are malformed or disagree with (H, W) (M, 2)."""
    m = len(strings)
    lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=m)
    bad = lengths == 0
    if bad.all():
        return bad
    c = np.frombuffer(b"".join(strings), dtype=np.uint8) - np.uint8(48)  # wraps below "0"
    string_first_char = np.cumsum(lengths) - lengths
    nonempty = np.flatnonzero(lengths > 0)
    outside = c > 63
    if outside.any():
        bad[np.searchsorted(string_first_char, np.flatnonzero(outside), side="right") - 1] = True
        c = np.where(outside, np.uint8(0), c)
    last = c < 32  # the 5-bit group that ends a count (no "more" bit)
    string_end = string_first_char[nonempty] + lengths[nonempty] - 1
    bad[nonempty[~last[string_end]]] = True  # a string ending mid-count
    last[string_end] = True  # so that no count crosses into the next string
    ends = np.flatnonzero(last)
    per_string = np.zeros(m, dtype=np.int64)
    per_string[nonempty] = np.add.reduceat(last, string_first_char[nonempty], dtype=np.int64)
    string_of_count = np.repeat(np.arange(m), per_string)
    # a count's value: its groups' low 5 bits, lowest group first; the last group is signed
    last_group = c[ends].astype(np.int64)
    values = (last_group & 0x1F) - ((last_group & 0x10) << 1)
    more = np.flatnonzero(~last)  # groups followed by another group of the same count (rare)
    if more.size:
        count = np.searchsorted(ends, more)
        count_start = np.where(count > 0, ends[np.maximum(count - 1, 0)] + 1, 0)
        n_groups = ends - np.concatenate([[-1], ends[:-1]])
        too_long = n_groups > _MAX_GROUPS
        bad[string_of_count[too_long]] = True
        values = values << (5 * np.minimum(n_groups - 1, _MAX_GROUPS - 1))
        shift = 5 * np.minimum(more - count_start, _MAX_GROUPS - 1)
        np.add.at(values, count, (c[more].astype(np.int64) & 0x1F) << shift)
    # undo the difference coding, string by string: from the fourth count on (index 3),
    # counts[j] += counts[j - 2], i.e. run j is the sum of the values at j, j-2, ... down to
    # index 1 (odd j) or index 2 (even j); index 0 is its own run
    has_counts = per_string > 0
    starts = (np.cumsum(per_string) - per_string)[has_counts]  # the first count of each string
    j = _segmented_cumsum(np.ones(len(values), dtype=np.int64), starts) - 1
    odd = (j & 1) == 1
    odd_values = np.where(odd, values, 0)
    even_values = values - odd_values
    even_values[starts] = 0
    runs = np.where(odd, _segmented_cumsum(odd_values, starts), _segmented_cumsum(even_values, starts))
    runs[starts] = values[starts]
    pixels = hw[:, 0] * hw[:, 1]
    # every run in [0, H·W] and their sum H·W; runs above the largest image are out of range
    # whatever their string (this also keeps the sums below far from int64 overflow)
    out_of_range = (runs < 0) | (runs > pixels.max())
    if out_of_range.any():
        bad[string_of_count[out_of_range]] = True
        runs = np.where(out_of_range, 0, runs)
    sums = np.zeros(m, dtype=np.int64)
    sums[has_counts] = np.add.reduceat(runs, starts)
    return bad | (sums != pixels)
