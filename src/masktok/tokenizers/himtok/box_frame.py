"""Box-first framing: a mask = its box (4 codes) + its shape inside the box (the latent codes).

A whole-image frame spends most of its pixels on background: a COCO object of median size
(~1,100 px in a 640×480 image) covers about 9×9 pixels of a 256² frame, and even a perfect
autoencoder of that frame only reaches mIoU 0.94 on ``coco_val2014_100`` (0.84 at 128²). Framing
the mask by its box instead makes every mask fill its frame: a 64² box frame bounds the same
masks at mIoU 0.994, with 16× fewer pixels to decode.

Box-first models (``HiMTokConfig.box_prefix``) therefore emit, coarse to fine:

1. four box codes ``x0, y0, x1, y1``: box coordinates in continuous pixel coordinates (pixel i
   spans [i, i + 1]) divided by the mask's width / height, on a grid of ``bins`` levels
   (code k ↔ k / (bins − 1));
2. the shape codes of the box frame (the box stretched to S×S).

Two roundings of the box (``HiMTokConfig.box_rounding``):

``nearest``  (masktok-box v1) each coordinate of the tight box rounded to the nearest level; the
             frame is the tight box itself. The decoded box is off by up to half a level (±2 px
             on a 4,000-px side), so small masks in large images lose IoU at any code length.
``outward``  (v2) near edges rounded down, far edges up: the decoded box always contains the mask,
             and the frame *is* the decoded box, so the shape codes place the mask inside it.
             Nothing about the mask is lost in the box codes, at any image size.

Decoding a prefix that stops inside the box codes uses the full extent for the missing
coordinates (x0, y0 = 0; x1, y1 = 1); a prefix of ≤ 4 codes decodes to the filled box.

    boxes = tight_boxes(masks)                                  # (N, 4) pixels, float
    codes = box_to_codes(boxes, sizes, 1024, "outward")         # (N, 4) int64
    frames = crop_box_frames(masks, codes_to_box(codes, sizes, 1024), 64)   # (N, 1, 64, 64)

Decoding pastes each frame back only inside its box (:mod:`masktok.tokenizers.himtok.box_paste`);
:func:`paste_box_frames` is the plain full-frame definition of that paste.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masktok.tokenizers.himtok.config import BOX_ROUNDINGS

BOX_CODES = 4


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """masks (N, H, W) bool → (N, 4) float32 tight boxes x0, y0, x1, y1 in continuous pixel
    coordinates (x1 = last column + 1). No host synchronisation; an empty mask gets the whole
    frame (callers that need a real box reject empty masks first)."""
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {tuple(masks.shape)}")
    n, height, width = masks.shape
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    xs = torch.arange(width, device=masks.device)
    ys = torch.arange(height, device=masks.device)
    x0 = torch.where(cols, xs, width).amin(dim=1)
    x1 = torch.where(cols, xs + 1, 0).amax(dim=1)
    y0 = torch.where(rows, ys, height).amin(dim=1)
    y1 = torch.where(rows, ys + 1, 0).amax(dim=1)
    empty = ~cols.any(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    whole = torch.tensor([0.0, 0.0, float(width), float(height)], device=masks.device).expand(n, 4)
    return torch.where(empty.view(n, 1), whole, boxes)


def _extent(sizes: torch.Tensor) -> torch.Tensor:
    """sizes (N, 2) (H, W) → (N, 4) W, H, W, H as float."""
    sizes = sizes.float()
    return torch.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], dim=1)


def box_to_codes(boxes: torch.Tensor, sizes: torch.Tensor, bins: int, rounding: str = "nearest") -> torch.Tensor:
    """boxes (N, 4) pixels, sizes (N, 2) (H, W) → (N, 4) int64 codes in [0, bins).

    ``rounding``: "nearest" level, or "outward" (x0, y0 down, x1, y1 up: the decoded box contains
    the given one). Computed in float64, so a coordinate on a level stays on it.
    """
    if rounding not in BOX_ROUNDINGS:
        raise ValueError(f"box rounding must be one of {BOX_ROUNDINGS}, got {rounding!r}")
    extent = _extent(sizes).to(device=boxes.device, dtype=torch.float64)
    levels = (boxes.double() / extent).clamp(0.0, 1.0) * (bins - 1)
    if rounding == "nearest":
        return torch.round(levels).long()
    return torch.cat([torch.floor(levels[:, :2]), torch.ceil(levels[:, 2:])], dim=1).long()


def codes_to_box(codes: torch.Tensor, sizes: torch.Tensor, bins: int,
                 counts: torch.Tensor | None = None) -> torch.Tensor:
    """codes (N, k) with k ≤ 4 box codes → (N, 4) float boxes in pixels of ``sizes`` (N, 2).

    ``counts`` (N,) keeps only the first counts[i] codes of row i (default: all k). Missing
    coordinates take the full extent (x0, y0 = 0; x1, y1 = 1 of the side). A box whose far edge
    does not lie beyond its near edge keeps a width / height of at least one code step.
    """
    n, k = codes.shape
    normalised = torch.tensor([0.0, 0.0, 1.0, 1.0], device=codes.device).repeat(n, 1)
    if k:
        k = min(k, BOX_CODES)
        given = codes[:, :k].float() / (bins - 1)
        if counts is not None:
            kept = torch.arange(k, device=codes.device).view(1, k) < counts.to(codes.device).view(n, 1)
            given = torch.where(kept, given, normalised[:, :k])
        normalised[:, :k] = given
    return _to_pixels(normalised, sizes, bins)


def _to_pixels(normalised: torch.Tensor, sizes: torch.Tensor, bins: int) -> torch.Tensor:
    """(N, 4) normalised x0, y0, x1, y1 → pixels of ``sizes`` (N, 2), far edges at least one
    code step beyond the near ones."""
    far = torch.maximum(normalised[:, 2:], normalised[:, :2] + 1.0 / (bins - 1))
    return torch.cat([normalised[:, :2], far], dim=1) * _extent(sizes).to(normalised.device)


def soft_codes_to_box(probs: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Per-position code probabilities (N, k, V), k ≤ 4 → expected boxes (N, 4) in pixels.

    Coordinate j is Σ_c p_j(c) · c / (V − 1) (rows renormalised to sum 1); missing ones as in
    :func:`codes_to_box`.
    """
    n, k, bins = probs.shape
    weights = probs.float() / probs.float().sum(dim=-1, keepdim=True).clamp(min=1e-12)
    levels = torch.arange(bins, device=probs.device, dtype=torch.float32) / (bins - 1)
    normalised = torch.tensor([0.0, 0.0, 1.0, 1.0], device=probs.device).repeat(n, 1)
    if k:
        normalised[:, :k] = weights[:, :BOX_CODES] @ levels
    return _to_pixels(normalised, sizes, bins)


def _sample_axis(start: torch.Tensor, stop: torch.Tensor, out_size: int, length: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis (align_corners=False, zero padding) for S output cells
    spanning [start, stop) of a source axis of ``length`` pixels.

    start, stop (N,) float → (index0, index1) (N, S) int64 clamped into the source and
    (weight0, weight1) (N, S) float32, a weight set to 0 where its tap falls outside the source.
    """
    cells = torch.arange(out_size, device=start.device, dtype=torch.float32) + 0.5
    coord = start.view(-1, 1) + cells.view(1, -1) * ((stop - start) / out_size).view(-1, 1) - 0.5
    low = torch.floor(coord)
    frac = coord - low
    low = low.long()
    high = low + 1
    weight0 = torch.where((low >= 0) & (low < length), 1.0 - frac, torch.zeros_like(frac))
    weight1 = torch.where((high >= 0) & (high < length), frac, torch.zeros_like(frac))
    return low.clamp(0, length - 1), high.clamp(0, length - 1), weight0, weight1


def crop_box_frames(masks: torch.Tensor, boxes: torch.Tensor, out_size: int) -> torch.Tensor:
    """Stretch each mask's box to an S×S frame (bilinear, as the whole-image models stretch the mask).

    Each frame cell reads its four neighbouring source pixels (zero outside the mask), so only
    N·S²·4 pixels are read and the masks keep their dtype: bool masks are never widened to float.

    Args:
        masks: (N, H, W) bool / uint8 / float (a shared canvas; boxes refer to its pixels).
        boxes: (N, 4) float x0, y0, x1, y1 in pixels (may reach beyond the canvas: zeros there).
        out_size: S.

    Returns:
        (N, 1, S, S) float32 in [0, 1], on the masks' device.
    """
    n, height, width = masks.shape
    boxes = boxes.float().to(masks.device)
    rows0, rows1, wy0, wy1 = _sample_axis(boxes[:, 1], boxes[:, 3], out_size, height)
    cols0, cols1, wx0, wx1 = _sample_axis(boxes[:, 0], boxes[:, 2], out_size, width)
    index = torch.arange(n, device=masks.device).view(n, 1, 1)

    def taps(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return masks[index, rows.view(n, -1, 1), cols.view(n, 1, -1)].float()  # (N, S, S)

    top = taps(rows0, cols0) * wx0.unsqueeze(1) + taps(rows0, cols1) * wx1.unsqueeze(1)
    bottom = taps(rows1, cols0) * wx0.unsqueeze(1) + taps(rows1, cols1) * wx1.unsqueeze(1)
    frames = top * wy0.unsqueeze(2) + bottom * wy1.unsqueeze(2)
    return frames.clamp_(0.0, 1.0).unsqueeze(1)


def paste_box_frames(frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`crop_box_frames` for probabilities, over the whole output frame.

    The definition of the paste; decoding uses :func:`masktok.tokenizers.himtok.box_paste.paste_tiles`,
    which computes the same values only inside each box.

    Args:
        frames: (N, S, S) float probabilities of the box frames.
        boxes: (N, 4) float boxes in pixels of the output.
        size: (H, W) output size.

    Returns:
        (N, H, W) float32 probabilities: the frame stretched (bilinear) onto its box, 0 outside.
    """
    n = frames.shape[0]
    height, width = size
    if n == 0:
        return frames.new_zeros(0, height, width, dtype=torch.float32)
    boxes = boxes.float().to(frames.device)
    # Output pixel centre (x + 0.5) → frame coordinate u = (x + 0.5 − x0) / (x1 − x0) ∈ [0, 1] in
    # the box, i.e. 2u − 1 in grid_sample's align_corners=False convention.
    xs = (torch.arange(width, device=frames.device, dtype=torch.float32) + 0.5).view(1, 1, -1)
    ys = (torch.arange(height, device=frames.device, dtype=torch.float32) + 0.5).view(1, -1, 1)
    gx = 2 * (xs - boxes[:, 0].view(n, 1, 1)) / (boxes[:, 2] - boxes[:, 0]).view(n, 1, 1) - 1
    gy = 2 * (ys - boxes[:, 1].view(n, 1, 1)) / (boxes[:, 3] - boxes[:, 1]).view(n, 1, 1) - 1
    grid = torch.stack([gx.expand(n, height, width), gy.expand(n, height, width)], dim=-1)
    out = F.grid_sample(frames.float().unsqueeze(1), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)[:, 0]
    inside = (gx.abs() <= 1) & (gy.abs() <= 1)
    return out * inside.expand(n, height, width)
