"""Pasting decoded box frames into full-size masks, only inside each box, on the frames' device.

A box-first model decodes an S×S frame per mask; the mask is that frame stretched (bilinear) onto
the mask's box in an H×W image, zero outside the box (:func:`box_frame.paste_box_frames` is the
plain full-frame definition). Computing every one of the H·W pixels is what made decoding slow and
memory-hungry (a 4000×3000 image: 12 M pixels per mask, 2.4 GB of sampling grid for 40 masks),
while only the box's pixels can be non-zero. Here each mask is computed on a *tile*: a rectangle
of the image that holds its box, of a size shared by a group of masks, so one batch of gathers
fills a whole group:

1. :func:`pixel_windows`: the pixels whose centres lie in each box (one host read of N × 4 ints);
2. masks are grouped by tile size (each side rounded up to one or two sizes per octave, at most
   the image side), groups split into chunks of at most ``max_pixels`` tile pixels;
3. per chunk, the bilinear paste runs as two separable gathers (rows, then columns) in float32,
   the arithmetic of ``grid_sample`` (no matrix units, so no TF32 rounding); the weights of
   pixels outside the box window are 0.

Consumers write the tiles into a dense (N, H, W) tensor on the device (:func:`paste_dense`),
copy them into host masks (:func:`paste_host`: only the tiles cross the bus) or turn them into
COCO RLE on the device (:func:`paste_rles`, via :func:`masktok.masks.tile_rles`), so memory grows
with the boxes' area and the chunk budget, not with N · H · W.

    for chunk in iter_tiles(probs, boxes, (H, W)):      # probs (N, S, S), boxes (N, 4) pixels
        chunk.rows, chunk.origins, chunk.values           # (n,), (n, 2) row/col, (n, th, tw)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_MAX_PIXELS = {"cuda": 1 << 26, "cpu": 1 << 22}


def default_max_pixels(device: torch.device) -> int:
    """Tile pixels per chunk: 64 M on an accelerator (~1.5 GB of float32 temporaries), 4 M on the CPU."""
    return DEFAULT_MAX_PIXELS["cpu" if device.type == "cpu" else "cuda"]


def pixel_windows(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """boxes (N, 4) float x0, y0, x1, y1 in pixels → (N, 4) int64 r0, c0, r1, c1 (r1, c1 exclusive):
    the pixels whose centres (x + 0.5, y + 0.5) lie inside the box (edges included), clipped to
    the image. A window is empty (r1 ≤ r0 or c1 ≤ c0) when no pixel centre lies in its box."""
    height, width = size
    boxes = boxes.float()
    c0 = torch.ceil(boxes[:, 0] - 0.5).clamp(0, width)
    r0 = torch.ceil(boxes[:, 1] - 0.5).clamp(0, height)
    c1 = (torch.floor(boxes[:, 2] - 0.5) + 1).clamp(0, width)
    r1 = (torch.floor(boxes[:, 3] - 0.5) + 1).clamp(0, height)
    return torch.stack([r0, c0, r1, c1], dim=1).long()


def tile_side(extent: np.ndarray, limit: int, per_octave: int) -> np.ndarray:
    """Tile side for window sides ``extent`` (int array ≥ 1): rounded up to ``per_octave`` sizes per
    octave (1: the next power of two; 2: also 1.5 × a power of two), never below 4 nor above
    ``limit`` (the image side)."""
    extent = np.maximum(extent, 1)
    octave = np.floor(np.log2(extent)).astype(np.int64)
    step = np.maximum(1, 2 ** np.maximum(octave - (per_octave - 1), 0))
    side = np.maximum(4, -(-extent // step) * step)
    if per_octave == 1:
        side = np.maximum(4, 2 ** np.ceil(np.log2(extent)).astype(np.int64))
    return np.minimum(side, limit)


@dataclass
class TileChunk:
    """Pasted values of a chunk of masks, each on a tile of the same size.

    Attributes:
        rows: (n,) int64 numpy, the masks' rows in the decoded batch.
        origins: (n, 2) int64 numpy, (row, col) of each tile's top-left pixel (the tile lies in
            the image).
        device_rows, device_origins: the same on the frames' device.
        values: (n, th, tw) float32 pasted probabilities (0 outside the mask's box), on the device.
    """

    rows: np.ndarray
    origins: np.ndarray
    device_rows: torch.Tensor
    device_origins: torch.Tensor
    values: torch.Tensor


def _axis_weights(coords: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, window: torch.Tensor,
                  frame: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel indices (n, L) of one axis → bilinear frame taps (i0, i1 (n, L) int64) and weights
    (w0, w1 (n, L) float32) of the sample at each pixel centre, u = index · scale + shift
    (align_corners=False, clamped at the frame border as ``grid_sample``'s "border" padding);
    both weights are 0 for pixels outside ``window`` (n, 2) = [start, stop)."""
    u = (coords.double() * scale.view(-1, 1) + shift.view(-1, 1)).clamp_(0.0, frame - 1)
    low = torch.floor(u)
    inside = ((coords >= window[:, :1]) & (coords < window[:, 1:])).float()
    w1 = (u - low).float() * inside
    low = low.long()
    return low, (low + 1).clamp_(max=frame - 1), inside - w1, w1


def _paste_chunk(frames: torch.Tensor, axes: torch.Tensor, windows: torch.Tensor, origins: torch.Tensor,
                 tile: tuple[int, int]) -> torch.Tensor:
    """frames (n, S, S) float32, axes (n, 4) float64 = (scale_y, shift_y, scale_x, shift_x), windows
    (n, 4) = r0, c0, r1, c1, origins (n, 2) → (n, th, tw) pasted values."""
    n, frame = frames.shape[0], frames.shape[-1]
    th, tw = tile
    device = frames.device
    ys = origins[:, :1] + torch.arange(th, device=device).view(1, th)  # (n, th)
    xs = origins[:, 1:] + torch.arange(tw, device=device).view(1, tw)  # (n, tw)
    y0, y1, wy0, wy1 = _axis_weights(ys, axes[:, 0], axes[:, 1], windows[:, 0::2], frame)
    x0, x1, wx0, wx1 = _axis_weights(xs, axes[:, 2], axes[:, 3], windows[:, 1::2], frame)
    rows = (torch.gather(frames, 1, y0.unsqueeze(2).expand(n, th, frame)) * wy0.unsqueeze(2)
            + torch.gather(frames, 1, y1.unsqueeze(2).expand(n, th, frame)) * wy1.unsqueeze(2))  # (n, th, S)
    return (torch.gather(rows, 2, x0.unsqueeze(1).expand(n, th, tw)) * wx0.unsqueeze(1)
            + torch.gather(rows, 2, x1.unsqueeze(1).expand(n, th, tw)) * wx1.unsqueeze(1))  # (n, th, tw)


def iter_tiles(frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int],
               max_pixels: int | None = None, per_octave: int | None = None) -> Iterator[TileChunk]:
    """Paste frames (N, S, S) probabilities onto boxes (N, 4) (pixels of ``size`` = (H, W)), chunk
    by chunk; masks whose window is empty (no pixel centre in the box) appear in no chunk.

    ``max_pixels`` bounds n · th · tw per chunk (default :func:`default_max_pixels`; a single tile
    larger than that is still computed alone). ``per_octave`` tile sizes per octave of window
    side (default: 1 on an accelerator, where fewer, larger chunks save kernel launches; 2 on the
    CPU, where the arithmetic counts). The host reads the N windows once; everything per chunk
    is a slice of tensors gathered once.
    """
    height, width = size
    device = frames.device
    frame = frames.shape[-1]
    boxes = boxes.float().to(device)
    windows = pixel_windows(boxes, size)
    host = windows.cpu().numpy()
    extent_h, extent_w = host[:, 2] - host[:, 0], host[:, 3] - host[:, 1]
    keep = np.flatnonzero((extent_h > 0) & (extent_w > 0))
    if keep.size == 0:
        return
    per_octave = per_octave or (2 if device.type == "cpu" else 1)
    tile_h = tile_side(extent_h[keep], height, per_octave)
    tile_w = tile_side(extent_w[keep], width, per_octave)
    key = tile_h * (width + 1) + tile_w
    order = np.argsort(key, kind="stable")
    rows, tile_h, tile_w, key = keep[order], tile_h[order], tile_w[order], key[order]
    origins = np.stack([np.minimum(host[rows, 0], height - tile_h), np.minimum(host[rows, 1], width - tile_w)], 1)
    device_rows = torch.from_numpy(rows).to(device)
    device_origins = torch.from_numpy(origins).to(device)
    picked = boxes[device_rows].double()  # the per-axis arithmetic is tiny: float64 keeps u exact
    scale_y = frame / (picked[:, 3] - picked[:, 1])
    scale_x = frame / (picked[:, 2] - picked[:, 0])
    # u = (index + 0.5 − start) / (stop − start) · S − 0.5 = index · scale + shift
    axes = torch.stack([scale_y, (0.5 - picked[:, 1]) * scale_y - 0.5,
                        scale_x, (0.5 - picked[:, 0]) * scale_x - 0.5], dim=1)
    picked_frames = frames.float()[device_rows]
    picked_windows = windows[device_rows]
    budget = max_pixels or default_max_pixels(device)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [rows.size]])
    for group_start, group_stop in zip(starts[:-1].tolist(), starts[1:].tolist()):
        th, tw = int(tile_h[group_start]), int(tile_w[group_start])
        per_chunk = max(1, budget // (th * tw))
        for a in range(group_start, group_stop, per_chunk):
            b = min(group_stop, a + per_chunk)
            values = _paste_chunk(picked_frames[a:b], axes[a:b], picked_windows[a:b], device_origins[a:b], (th, tw))
            yield TileChunk(rows=rows[a:b], origins=origins[a:b], device_rows=device_rows[a:b],
                            device_origins=device_origins[a:b], values=values)


def paste_dense(frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], threshold: float | None,
                max_pixels: int | None = None) -> torch.Tensor:
    """Frames (N, S, S) probabilities on boxes (N, 4) → (N, H, W) on the frames' device: bool masks
    (probability > ``threshold``) or, with ``threshold=None``, float32 probabilities."""
    height, width = size
    n = frames.shape[0]
    dtype = torch.float32 if threshold is None else torch.bool
    out = torch.zeros(n, height, width, dtype=dtype, device=frames.device)
    for chunk in iter_tiles(frames, boxes, size, max_pixels):
        th, tw = chunk.values.shape[1:]
        rows = chunk.device_origins[:, :1] + torch.arange(th, device=out.device).view(1, th)
        cols = chunk.device_origins[:, 1:] + torch.arange(tw, device=out.device).view(1, tw)
        values = chunk.values if threshold is None else chunk.values > threshold
        out[chunk.device_rows.view(-1, 1, 1), rows.unsqueeze(2), cols.unsqueeze(1)] = values
    return out


def paste_host(frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], threshold: float,
               max_pixels: int | None = None) -> torch.Tensor:
    """Frames (N, S, S) probabilities on boxes (N, 4) → (N, H, W) bool masks on the host.

    Only the tiles cross to the host; they are copied into a zero-initialised array whose untouched
    pages are never written (no N · H · W pass over host memory)."""
    height, width = size
    out = np.zeros((frames.shape[0], height, width), dtype=bool)
    for chunk in iter_tiles(frames, boxes, size, max_pixels):
        th, tw = chunk.values.shape[1:]
        tiles = (chunk.values > threshold).cpu().numpy()
        for tile, row, (top, left) in zip(tiles, chunk.rows.tolist(), chunk.origins.tolist()):
            out[row, top:top + th, left:left + tw] = tile
    return torch.from_numpy(out)


def paste_rles(frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], threshold: float,
               max_pixels: int | None = None) -> list[dict]:
    """Frames (N, S, S) probabilities on boxes (N, 4) → N compressed COCO RLEs of the (H, W) masks
    (probability > ``threshold``); runs and strings are made on the frames' device, tile by tile."""
    from masktok.masks import compress_counts, tile_rles

    height, width = size
    empty = {"size": [height, width], "counts": compress_counts(
        torch.tensor([height * width]), torch.tensor([1]))[0]}
    out: list[dict] = [dict(empty) for _ in range(frames.shape[0])]
    for chunk in iter_tiles(frames, boxes, size, max_pixels):
        rles = tile_rles(chunk.values > threshold, chunk.device_origins, size)
        for row, rle in zip(chunk.rows.tolist(), rles):
            out[row] = rle
    return out
