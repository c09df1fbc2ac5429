"""COCO run-length encoding (RLE): masks ↔ ``{"size": [H, W], "counts": ...}``.

Runs are taken over the mask in column-major (Fortran) order and alternate background /
foreground, starting with background (a leading 0 when the first pixel is set). ``counts`` is a
list of ints (*uncompressed*) or pycocotools' compact string (*compressed*). Encoding and
decoding go through pycocotools; :func:`masks_to_rles_torch` computes the runs on the tensor's
own device (GPU-friendly: only the run lengths leave the device) and gives byte-identical RLE.

pycocotools trusts its input: a string whose runs do not add up to H·W decodes to garbage or
reads past the buffer. :func:`check_rle` therefore parses every RLE first and refuses one whose
runs disagree with its size.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from masktok.masks.arrays import as_mask, as_mask_stack, check_size

__all__ = [
    "check_rle",
    "rle_counts",
    "mask_to_rle",
    "masks_to_rles",
    "masks_to_rles_torch",
    "tiles_to_rles_torch",
    "tile_rles",
    "compress_counts",
    "rle_to_mask",
    "rles_to_masks",
    "rle_area",
]


def decode_checked(rles: dict | list[dict]) -> np.ndarray:
    """pycocotools decode of already checked RLE(s): (H, W) or (H, W, N) uint8.

    pycocotools' decode raises a DeprecationWarning under numpy 2 about its own ``__array__``
    (the result is correct); it is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept",
                                category=DeprecationWarning)
        return coco_mask.decode(rles)


def _parse_compressed_counts(counts: bytes, name: str) -> np.ndarray:
    """pycocotools' compact string → run lengths (int64), validated character by character.

    Each count is stored as 5-bit groups (low group first) in characters ``chr(48 + c)``; bit 5
    says another group follows, bit 4 of the last group is the sign. From the third count on the
    value is stored as a difference to the count two places earlier.
    """
    if len(counts) == 0:
        return np.zeros(0, dtype=np.int64)
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        raise ValueError(f"{name}: counts string holds characters outside the RLE alphabet")
    last = (c & 0x20) == 0  # the group that ends each count
    if not last[-1]:
        raise ValueError(f"{name}: counts string ends in the middle of a count")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    group_index = np.arange(len(c)) - np.repeat(starts, ends - starts + 1)
    if group_index.max() > 11:
        raise ValueError(f"{name}: counts string holds a count longer than 64 bits")
    values = np.add.reduceat((c & 0x1F) << (5 * group_index), starts)
    n_groups = ends - starts + 1
    negative = (c[ends] & 0x10) != 0
    values = values - (negative.astype(np.int64) << (5 * n_groups))
    # undo the difference coding: from index 3 on, counts[i] += counts[i - 2]
    runs = values.copy()
    if len(runs) > 3:
        runs[3::2] = np.cumsum(values[1::2])[1:]
    if len(runs) > 4:
        runs[4::2] = np.cumsum(values[2::2])[1:]
    return runs


def check_rle(rle: Any, size: Sequence[int] | None = None, name: str = "rle") -> dict:
    """Validate a COCO RLE and return it in the form pycocotools reads.

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes | list[int]}``.
        size: the image size (H, W) the RLE must have; None accepts the RLE's own size.
        name: how the input is called in error messages.

    Returns:
        ``{"size": [H, W], "counts": bytes}`` (compressed; uncompressed input is compressed).

    Raises:
        ValueError: not a dict, missing keys, bad size, negative runs, runs not summing to H·W,
            a malformed counts string, or a ``size`` that disagrees with the RLE's.
    """
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise ValueError(f"{name}: expected a COCO RLE dict with 'size' and 'counts', got "
                         f"{type(rle).__name__}{sorted(rle) if isinstance(rle, dict) else ''}")
    h, w = check_size(rle["size"], f"{name}['size']")
    if size is not None:
        expected = check_size(size, "size")
        if (h, w) != expected:
            raise ValueError(f"{name}: RLE size {[h, w]} disagrees with the image size "
                             f"{list(expected)}")
    counts = rle["counts"]
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{name}: counts string is not ASCII") from None
    if isinstance(counts, (bytes, bytearray)):
        compressed = bytes(counts)
        if (compressed, h, w) in _RECENTLY_VALID:  # readers check an RLE, then take its area and box
            return {"size": [h, w], "counts": compressed}
        runs = _parse_compressed_counts(compressed, name)
    elif isinstance(counts, (list, tuple, np.ndarray)):
        runs = np.asarray(counts)
        if runs.ndim != 1 or (runs.size and runs.dtype.kind not in "iu"):
            raise ValueError(f"{name}: uncompressed counts must be a flat list of integers")
        runs = runs.astype(np.int64)
        compressed = None
    else:
        raise ValueError(f"{name}: counts must be a string or a list of ints, got "
                         f"{type(counts).__name__}")
    if runs.size and runs.min() < 0:
        raise ValueError(f"{name}: counts hold a negative run length")
    if int(runs.sum()) != h * w:
        raise ValueError(f"{name}: runs add up to {int(runs.sum())} pixels but size {[h, w]} "
                         f"has {h * w}")
    if compressed is None:
        uncompressed = {"size": [h, w], "counts": runs.tolist()}
        compressed = coco_mask.frPyObjects(uncompressed, h, w)["counts"]
    else:
        _RECENTLY_VALID[(compressed, h, w)] = None
        if len(_RECENTLY_VALID) > _RECENTLY_VALID_SIZE:
            _RECENTLY_VALID.popitem(last=False)
    return {"size": [h, w], "counts": compressed}


# compressed RLEs that passed check_rle lately (validation is a pure function of counts and size)
_RECENTLY_VALID: OrderedDict[tuple[bytes, int, int], None] = OrderedDict()
_RECENTLY_VALID_SIZE = 64


def rle_counts(rle: Any, name: str = "rle") -> list[int]:
    """The run lengths of a (compressed or uncompressed) RLE as a list of ints."""
    checked = check_rle(rle, name=name)
    return _parse_compressed_counts(checked["counts"], name).tolist()


def _runs_numpy(flat: np.ndarray) -> list[int]:
    """Column-major flattened bool mask (H·W,) → COCO run lengths (starting with background)."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return runs.tolist()


def mask_to_rle(mask: Any, compressed: bool = True) -> dict:
    """One binary mask (H, W) → COCO RLE.

    Returns:
        ``{"size": [H, W], "counts": str}`` (compressed, JSON-ready) or, with
        ``compressed=False``, ``{"size": [H, W], "counts": list[int]}``.
    """
    m = as_mask(mask)
    h, w = m.shape
    if not compressed:
        return {"size": [h, w], "counts": _runs_numpy(m.ravel(order="F"))}
    rle = coco_mask.encode(np.asfortranarray(m, dtype=np.uint8))
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def masks_to_rles(masks: Any, compressed: bool = True) -> list[dict]:
    """A stack (N, H, W) of binary masks → N COCO RLEs (see :func:`mask_to_rle`)."""
    m = as_mask_stack(masks)
    n, h, w = m.shape
    if n == 0:
        return []
    if not compressed:
        return [{"size": [h, w], "counts": _runs_numpy(x.ravel(order="F"))} for x in m]
    encoded = coco_mask.encode(np.asfortranarray(m.transpose(1, 2, 0), dtype=np.uint8))
    return [{"size": [h, w], "counts": r["counts"].decode("ascii")} for r in encoded]


def masks_to_rles_torch(masks: Any, compressed: bool = True) -> list[dict]:
    """(N, H, W) torch masks → N COCO RLEs, run lengths computed on the tensor's device.

    Only the run lengths (not the N·H·W pixels) are copied to the host; the compact string is
    then written by pycocotools, so the result is identical to :func:`masks_to_rles`.

    Args:
        masks: (N, H, W) torch tensor, bool or integer/float holding 0 and 1, on any device.
        compressed: string counts (default) or lists of ints.
    """
    import torch

    if not isinstance(masks, torch.Tensor):
        raise ValueError(f"masks: expected a torch tensor, got {type(masks).__name__} "
                         "(use masks_to_rles for numpy input)")
    if masks.ndim != 3:
        raise ValueError(f"masks: expected a mask stack (N, H, W), got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    if h == 0 or w == 0:
        raise ValueError(f"masks: empty image size {(h, w)}")
    if masks.dtype != torch.bool:
        if masks.is_complex():
            raise ValueError(f"masks: dtype {masks.dtype} is not a mask dtype")
        if masks.is_floating_point() and bool(torch.isnan(masks).any()):
            raise ValueError("masks: contains NaN value(s)")
        if bool(((masks != 0) & (masks != 1)).any()):
            raise ValueError("masks: a binary mask holds only 0 and 1")
        masks = masks != 0
    if n == 0:
        return []
    hw = h * w
    flat = masks.transpose(1, 2).reshape(n, hw)  # column-major pixel order, as COCO counts
    change = torch.ones((n, hw + 1), dtype=torch.bool, device=masks.device)
    change[:, 1:hw] = flat[:, 1:] != flat[:, :-1]
    rows, pos = change.nonzero(as_tuple=True)  # row-major: sorted by mask, then position
    same_mask = rows[1:] == rows[:-1]
    lengths = (pos[1:] - pos[:-1])[same_mask]
    runs_per_mask = torch.bincount(rows, minlength=n) - 1
    starts_on = flat[:, 0]
    lengths, runs_per_mask, starts_on = (t.cpu().numpy() for t in (lengths, runs_per_mask,
                                                                   starts_on))
    split = np.split(lengths.astype(np.int64), np.cumsum(runs_per_mask)[:-1])
    counts = [([0] + r.tolist()) if on else r.tolist() for r, on in zip(split, starts_on)]
    return _runs_to_rles(counts, h, w, compressed)


def _runs_to_rles(counts: list[list[int]], h: int, w: int, compressed: bool) -> list[dict]:
    """Run lengths per mask → uncompressed RLE dicts, or compact strings written by pycocotools."""
    uncompressed = [{"size": [h, w], "counts": c} for c in counts]
    if not compressed or not uncompressed:
        return uncompressed
    encoded = coco_mask.frPyObjects(uncompressed, h, w)
    return [{"size": [h, w], "counts": r["counts"].decode("ascii")} for r in encoded]


def tiles_to_rles_torch(tiles: Any, origins: Any, size: Sequence[int], compressed: bool = True) -> list[dict]:
    """Masks given only on a tile each → N COCO RLEs of the whole (H, W) image, computed on the
    tiles' device.

    Mask i is ``tiles[i]`` placed with its top-left pixel at ``origins[i]`` = (row, col) and zero
    elsewhere: its runs can only change at a tile pixel or just after one, so only the n · th · tw
    tile pixels are read (a 40 × 40 tile of a 4000 × 3000 image costs 1,600 reads, not 12 M). The
    compact strings are written on the device too (pycocotools' format), so only their characters
    reach the host. The result equals :func:`masks_to_rles` of the full masks.

    Args:
        tiles: (n, th, tw) torch bool tensor, on any device.
        origins: (n, 2) integer tensor (row, col); every tile must lie inside the image.
        size: (H, W) of the image.
        compressed: string counts (default) or lists of ints.
    """
    import torch

    height, width = check_size(size)
    if not isinstance(tiles, torch.Tensor) or tiles.dtype != torch.bool or tiles.ndim != 3:
        raise ValueError(f"tiles: expected an (n, th, tw) bool torch tensor, got "
                         f"{getattr(tiles, 'dtype', type(tiles).__name__)} {tuple(getattr(tiles, 'shape', ()))}")
    n, th, tw = tiles.shape
    origins = torch.as_tensor(origins, device=tiles.device)
    if origins.shape != (n, 2) or origins.dtype.is_floating_point:
        raise ValueError(f"origins: expected ({n}, 2) integer (row, col), got {tuple(origins.shape)} {origins.dtype}")
    if n == 0:
        return []
    if th == 0 or tw == 0 or th > height or tw > width:
        raise ValueError(f"tiles of {th}×{tw} do not fit an image of {height}×{width}")
    lo = origins.min(dim=0).values.tolist()
    hi = origins.max(dim=0).values.tolist()
    if lo[0] < 0 or lo[1] < 0 or hi[0] + th > height or hi[1] + tw > width:
        raise ValueError(f"origins: a {th}×{tw} tile at rows {lo[0]}..{hi[0]}, cols {lo[1]}..{hi[1]} "
                         f"reaches outside the {height}×{width} image")
    return tile_rles(tiles, origins.long(), (height, width), compressed)


def tile_rles(tiles: Any, origins: Any, size: tuple[int, int], compressed: bool = True) -> list[dict]:
    """:func:`tiles_to_rles_torch` for arguments already checked (bool tiles (n, th, tw) inside the
    image, int64 origins (n, 2) on the tiles' device): the device waits for the host only to
    size the list of run boundaries and to hand over the result."""
    import torch

    height, width = size
    n, th, tw = tiles.shape
    device = tiles.device
    total = height * width
    columns = tiles.transpose(1, 2)  # (n, tw, th): column-major order inside each tile, as COCO runs
    previous = torch.zeros_like(columns)
    previous[:, :, 1:] = columns[:, :, :-1]
    full_height = th == height  # then a column's first pixel follows the previous column's last
    if full_height and tw > 1:
        previous[:, 1:, 0] = columns[:, :-1, th - 1]
    starts = columns != previous
    # A run also ends right after a tile pixel whose successor lies outside the tile (not after
    # the image's last pixel: the last run ends with the image).
    ends = torch.zeros_like(columns)
    if full_height:
        ends[:, tw - 1, th - 1] = columns[:, tw - 1, th - 1]
    else:
        ends[:, :, th - 1] = columns[:, :, th - 1]
    at_end = (origins[:, 0] + th == height) & (origins[:, 1] + tw == width)
    ends[:, tw - 1, th - 1] &= ~at_end
    local = (torch.arange(tw, device=device).view(tw, 1) * height
             + torch.arange(th, device=device).view(1, th))  # (tw, th) offsets from the tile origin
    offsets = torch.stack([local, local + 1], dim=-1).reshape(-1)
    base = origins[:, 1] * height + origins[:, 0]  # position of each tile's origin
    flags = torch.stack([starts, ends], dim=-1).reshape(n, -1)
    rows, where = flags.nonzero(as_tuple=True)  # sorted by tile, then by position
    positions = base[rows] + offsets[where]
    changes = rows.numel()
    per_tile = torch.zeros(n, dtype=torch.long, device=device).index_add_(0, rows, torch.ones_like(rows))
    first = torch.cumsum(per_tile, 0) - per_tile  # index of each tile's first change
    rank = torch.arange(changes, device=device) - first[rows]
    previous_position = torch.where(rank > 0, positions[(torch.arange(changes, device=device) - 1).clamp(min=0)],
                                    torch.zeros_like(positions))
    last = torch.zeros(n, dtype=torch.long, device=device).scatter_reduce_(0, rows, positions, reduce="amax")
    out_start = torch.cumsum(per_tile + 1, 0) - (per_tile + 1)  # each tile's runs, then its final run
    counts = torch.empty(changes + n, dtype=torch.long, device=device)
    counts[out_start[rows] + rank] = positions - previous_position
    counts[out_start + per_tile] = total - last
    if compressed:
        strings = compress_counts(counts, per_tile + 1)
        return [{"size": [height, width], "counts": c} for c in strings]
    host_counts, host_lengths = counts.cpu().numpy(), (per_tile + 1).cpu().numpy()
    return [{"size": [height, width], "counts": part.tolist()}
            for part in np.split(host_counts, np.cumsum(host_lengths)[:-1])]


def compress_counts(counts: Any, lengths: Any) -> list[str]:
    """Run lengths of several masks → pycocotools' compact strings, computed on their device.

    Args:
        counts: (K,) int64 torch tensor, the run lengths of every mask one after the other.
        lengths: (n,) int64 torch tensor, how many of them each mask has (≥ 1 each).

    Each count (from a mask's fourth on, minus the count two before it) is written in 5-bit
    groups, low group first, as characters ``chr(48 + group)`` with bit 5 set while more groups
    follow; bit 4 of the last group is the sign (pycocotools ``rleToString``).
    """
    import torch

    device = counts.device
    total = counts.numel()
    n = lengths.numel()
    owner = torch.repeat_interleave(torch.arange(n, device=device), lengths, output_size=total)
    rank = torch.arange(total, device=device) - (torch.cumsum(lengths, 0) - lengths)[owner]
    two_before = torch.zeros_like(counts)
    two_before[2:] = counts[:-2]
    value = torch.where(rank > 2, counts - two_before, counts)
    groups, active = [], []
    alive = torch.ones(total, dtype=torch.bool, device=device)
    for _ in range(8):  # 8 groups of 5 bits hold any count of an image up to 2^39 pixels
        group = value & 31
        value = value >> 5
        more = torch.where((group & 16) != 0, value != -1, value != 0)
        groups.append((group | (more.long() << 5)) + 48)
        active.append(alive)
        alive = alive & more
    chars = torch.stack(groups, dim=1).to(torch.uint8)
    emitted = torch.stack(active, dim=1)
    per_mask = torch.zeros(n, dtype=torch.long, device=device).index_add_(0, owner, emitted.sum(dim=1))
    text = chars[emitted].cpu().numpy().tobytes()
    ends = np.cumsum(per_mask.cpu().numpy())
    begins = ends - per_mask.cpu().numpy()
    return [text[a:b].decode("ascii") for a, b in zip(begins.tolist(), ends.tolist())]


def rle_to_mask(rle: Any, size: Sequence[int] | None = None, name: str = "rle") -> np.ndarray:
    """COCO RLE (compressed or uncompressed counts) → (H, W) bool.

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes | list[int]}``.
        size: expected (H, W); a disagreeing RLE size raises ValueError.
    """
    checked = check_rle(rle, size=size, name=name)
    return decode_checked(checked).astype(bool)


def rles_to_masks(rles: Sequence[Any], size: Sequence[int] | None = None) -> np.ndarray:
    """N COCO RLEs of one size → (N, H, W) bool. ``size`` is required when ``rles`` is empty."""
    if isinstance(rles, dict):
        raise ValueError("rles: expected a list of RLE dicts, got one dict (use rle_to_mask)")
    rles = list(rles)
    if not rles:
        if size is None:
            raise ValueError("rles: empty list and no size given; cannot tell (H, W)")
        h, w = check_size(size)
        return np.zeros((0, h, w), dtype=bool)
    first = check_rle(rles[0], size=size, name="rles[0]")
    checked = [first] + [check_rle(r, size=first["size"], name=f"rles[{i}]")
                         for i, r in enumerate(rles[1:], start=1)]
    return decode_checked(checked).astype(bool).transpose(2, 0, 1)


def rle_area(rle: Any, name: str = "rle") -> int:
    """Number of foreground pixels of a COCO RLE."""
    return int(coco_mask.area(check_rle(rle, name=name)))
