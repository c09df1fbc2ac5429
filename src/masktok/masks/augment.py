"""Mask augmentations for tokenizer training, batched in torch on any device.

One affine resampling per mask does the geometric part (crop, flip, rotation) straight from the
mask at its original size to the model frame, so a GPU trainer keeps the full-resolution masks on
the device and never round-trips through the CPU:

- **crop around the mask** as in ALTo: a window of area = box area × U(4, 50) (log-uniform by
  default) with a jittered aspect ratio, placed so that it contains the mask's box; or the whole
  image (``crop_prob`` decides);
- horizontal / vertical flips, a small rotation about the window centre;
- dilation or erosion by a few pixels (max-pooling) in the output frame.

Bilinear resampling keeps soft 0..1 edges, exactly as a bilinear stretch of the un-augmented
mask (the tokenizer's own preprocessing) would.

    aug = MaskAugmentConfig()
    params = sample_augment_params(boxes, sizes, aug, generator=gen)
    frames = apply_augment(masks_padded, sizes, params, out_size=256)   # (B, 1, 256, 256) float
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MaskAugmentConfig:
    """Probabilities and ranges of every augmentation.

    Attributes:
        crop_prob: probability of a crop around the mask (else the whole image is used).
        crop_area_scale: (min, max) of crop area / box area (ALTo: 4 … 50).
        log_uniform_scale: draw the area factor log-uniformly (else uniformly).
        aspect_jitter: the crop aspect ratio is the box's times exp(U(−a, a)).
        hflip_prob, vflip_prob: flip probabilities.
        max_rotation_deg: rotation angle ~ U(−r, r) degrees (applied with ``rotation_prob``).
        morph_prob: probability of a dilation or erosion (half each).
        max_morph_radius: radius in output pixels, drawn in 1 … r.
    """

    crop_prob: float = 0.5
    crop_area_scale: tuple[float, float] = (4.0, 50.0)
    log_uniform_scale: bool = True
    aspect_jitter: float = 0.4
    hflip_prob: float = 0.5
    vflip_prob: float = 0.1
    rotation_prob: float = 0.3
    max_rotation_deg: float = 10.0
    morph_prob: float = 0.15
    max_morph_radius: int = 2

    def __post_init__(self) -> None:
        for name in ("crop_prob", "hflip_prob", "vflip_prob", "rotation_prob", "morph_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability and must lie in [0, 1], got {value}")
        low, high = self.crop_area_scale
        if not 1.0 <= low <= high:
            raise ValueError(f"crop_area_scale must be (min, max) with 1 ≤ min ≤ max, got {self.crop_area_scale}")
        if self.aspect_jitter < 0 or self.max_rotation_deg < 0 or self.max_morph_radius < 0:
            raise ValueError("aspect_jitter, max_rotation_deg and max_morph_radius must be ≥ 0")


@dataclass
class AugmentParams:
    """Per-mask augmentation draws (all tensors of length B on one device).

    Attributes:
        window: (B, 4) float crop window x0, y0, x1, y1 in continuous pixel coordinates of the
            source mask (pixel i spans [i, i + 1]).
        hflip, vflip: (B,) bool.
        angle: (B,) float rotation in radians.
        morph: (B,) int radius; > 0 dilates, < 0 erodes, 0 leaves the mask.
    """

    window: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor
    angle: torch.Tensor
    morph: torch.Tensor


def _rand(n: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device)


def sample_crop_windows(boxes: torch.Tensor, sizes: torch.Tensor, config: MaskAugmentConfig,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop windows around masks.

    Args:
        boxes: (B, 4) inclusive pixel boxes x1, y1, x2, y2 of non-empty masks.
        sizes: (B, 2) source (height, width).
        config: the crop settings; ``crop_prob`` picks crop vs whole image per mask.

    Returns:
        (B, 4) float windows x0, y0, x1, y1 (continuous coordinates). A crop window contains the
        whole box; it is shifted inside the image when it fits there, else centred on the box
        (the outside reads as background).
    """
    device = boxes.device
    n = boxes.shape[0]
    boxes = boxes.float()
    sizes = sizes.float().to(device)
    bx0, by0 = boxes[:, 0], boxes[:, 1]
    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    low, high = config.crop_area_scale
    u = _rand(n, generator, device)
    scale = torch.exp(math.log(low) + u * (math.log(high) - math.log(low))) if config.log_uniform_scale \
        else low + u * (high - low)
    aspect = (bw / bh) * torch.exp((2 * _rand(n, generator, device) - 1) * config.aspect_jitter)
    area = bw * bh * scale
    cw = torch.maximum(torch.sqrt(area * aspect), bw)
    ch = torch.maximum(torch.sqrt(area / aspect), bh)
    # Place the window so the box lies inside it: x0 ∈ [bx0 + bw − cw, bx0].
    x0 = bx0 + bw - cw + _rand(n, generator, device) * (cw - bw)
    y0 = by0 + bh - ch + _rand(n, generator, device) * (ch - bh)
    height, width = sizes[:, 0], sizes[:, 1]
    fits_x, fits_y = cw <= width, ch <= height
    # Shift into the image where the window fits (keeps the box inside, as the box is inside the image).
    x0 = torch.where(fits_x, x0.clamp(min=torch.zeros_like(x0)).minimum(width - cw), bx0 + bw / 2 - cw / 2)
    y0 = torch.where(fits_y, y0.clamp(min=torch.zeros_like(y0)).minimum(height - ch), by0 + bh / 2 - ch / 2)
    crops = torch.stack([x0, y0, x0 + cw, y0 + ch], dim=1)
    whole = torch.stack([torch.zeros_like(width), torch.zeros_like(height), width, height], dim=1)
    use_crop = _rand(n, generator, device) < config.crop_prob
    return torch.where(use_crop.view(n, 1), crops, whole)


def sample_augment_params(boxes: torch.Tensor, sizes: torch.Tensor, config: MaskAugmentConfig,
                          generator: torch.Generator | None = None) -> AugmentParams:
    """Draw every augmentation for a batch: boxes (B, 4) inclusive xyxy, sizes (B, 2) (H, W)."""
    if boxes.ndim != 2 or boxes.shape[1] != 4 or sizes.shape != (boxes.shape[0], 2):
        raise ValueError(f"boxes must be (B, 4) and sizes (B, 2); got {tuple(boxes.shape)} and {tuple(sizes.shape)}")
    device, n = boxes.device, boxes.shape[0]
    window = sample_crop_windows(boxes, sizes, config, generator)
    hflip = _rand(n, generator, device) < config.hflip_prob
    vflip = _rand(n, generator, device) < config.vflip_prob
    rotate = _rand(n, generator, device) < config.rotation_prob
    angle = (2 * _rand(n, generator, device) - 1) * math.radians(config.max_rotation_deg) * rotate
    morph_on = _rand(n, generator, device) < config.morph_prob
    radius = torch.randint(1, max(config.max_morph_radius, 1) + 1, (n,), generator=generator, device=device)
    sign = torch.where(_rand(n, generator, device) < 0.5, 1, -1)
    morph = torch.where(morph_on & (config.max_morph_radius > 0), radius * sign, torch.zeros_like(radius))
    return AugmentParams(window=window, hflip=hflip, vflip=vflip, angle=angle, morph=morph)


def identity_params(sizes: torch.Tensor) -> AugmentParams:
    """Parameters that only stretch each whole mask to the output frame (sizes (B, 2) (H, W))."""
    n, device = sizes.shape[0], sizes.device
    sizes = sizes.float()
    window = torch.stack([torch.zeros(n, device=device), torch.zeros(n, device=device), sizes[:, 1], sizes[:, 0]], 1)
    false = torch.zeros(n, dtype=torch.bool, device=device)
    return AugmentParams(window=window, hflip=false, vflip=false.clone(), angle=torch.zeros(n, device=device),
                         morph=torch.zeros(n, dtype=torch.long, device=device))


def _affine(params: AugmentParams, padded_hw: tuple[int, int]) -> torch.Tensor:
    """(B, 2, 3) theta mapping output coordinates in [−1, 1] to the padded source's [−1, 1]."""
    window = params.window.float()
    ph, pw = padded_hw
    cx, cy = (window[:, 0] + window[:, 2]) / 2, (window[:, 1] + window[:, 3]) / 2
    hw, hh = (window[:, 2] - window[:, 0]) / 2, (window[:, 3] - window[:, 1]) / 2
    sx = torch.where(params.hflip, -hw, hw)
    sy = torch.where(params.vflip, -hh, hh)
    cos, sin = params.angle.cos(), params.angle.sin()
    # Output (u, v) → pixel offset (sx·u, sy·v), rotated by angle, plus the window centre; then to
    # normalised source coordinates x_n = 2x / W_pad − 1 (align_corners=False convention).
    a = torch.stack([cos * sx, -sin * sy, cx], dim=1)
    b = torch.stack([sin * sx, cos * sy, cy], dim=1)
    theta = torch.stack([a, b], dim=1)
    to_norm = torch.tensor([2.0 / pw, 2.0 / ph], device=window.device).view(1, 2, 1)
    theta = theta * to_norm
    theta[:, :, 2] -= 1.0
    return theta


def morph_masks(frames: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """frames (B, 1, S, S) float in [0, 1], radius (B,) int → dilated (r > 0) / eroded (r < 0) frames."""
    out = frames
    for r in sorted({abs(int(v)) for v in radius.tolist() if v != 0}):
        k = 2 * r + 1
        dilated = F.max_pool2d(frames, k, stride=1, padding=r)
        eroded = -F.max_pool2d(-frames, k, stride=1, padding=r)
        out = torch.where((radius == r).view(-1, 1, 1, 1), dilated, out)
        out = torch.where((radius == -r).view(-1, 1, 1, 1), eroded, out)
    return out


def apply_augment(masks: torch.Tensor, params: AugmentParams, out_size: int | tuple[int, int] = 256) -> torch.Tensor:
    """Resample source masks into the output frame.

    Args:
        masks: (B, H_pad, W_pad) bool/uint8/float source masks, each at its own size in the
            top-left corner of a zero-padded canvas (the windows refer to unpadded pixels).
        params: from :func:`sample_augment_params` or :func:`identity_params`.
        out_size: output side or (h, w).

    Returns:
        (B, 1, h, w) float32 in [0, 1] (bilinear, soft edges).
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (B, H, W), got {tuple(masks.shape)}")
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    theta = _affine(params, (masks.shape[1], masks.shape[2]))
    grid = F.affine_grid(theta, [masks.shape[0], 1, oh, ow], align_corners=False)
    src = masks.unsqueeze(1).to(torch.float32)
    frames = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return morph_masks(frames, params.morph).clamp_(0.0, 1.0)
