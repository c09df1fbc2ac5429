"""Deterministic, resumable batches of training masks: real (augmented) + synthetic.

The batch of step ``s`` on rank ``r`` is a pure function of (seed, s, r): real masks are taken in
order from a per-epoch permutation of the pool (ranks interleave, so every rank sees different
masks), augmentations and synthetic masks come from a generator seeded from (seed, s, r) on the
training device. Resuming at step ``s`` therefore gives exactly the batch an uninterrupted run
would have drawn, on CPU or GPU, without replaying the data stream.

    sampler = MixedMaskSampler(pool, MaskMixConfig(), batch_size=256, seed=0, device="cuda")
    frames = sampler.batch(step)          # (B, 1, 256, 256) float in [0, 1]

With ``box_frames=True`` (box-first tokenizers) every frame is the mask's box stretched to S×S, as
the tokenizer frames masks: real masks keep their flips but are not cropped, rotated or
dilated/eroded (those would move the box edges off the frame edges); synthetic masks are drawn at
``synthetic_size`` and framed by their boxes. With ``box_rounding="outward"`` the box is the tight
box rounded outward to the tokenizer's grid of ``box_bins`` levels per side; with probability
``box_scale_prob`` that grid is made coarser by a factor s ~ log-uniform [1, ``box_scale_max``]
at a random phase, as if the image were s times larger around a mask of the same pixel size (a
small object in a 4K photo), so the model learns to place masks that fill a small part of their
frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from masktok.masks.augment import MaskAugmentConfig, apply_augment, sample_augment_params
from masktok.data.mask_pools.sources import MaskPool
from masktok.data.mask_pools.synthetic import SyntheticMaskConfig, generate_synthetic_masks
from masktok.tokenizers.himtok.box_frame import BOX_ROUNDINGS, crop_box_frames, tight_boxes

_MIX = 0x9E3779B97F4A7C15


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """A 63-bit seed for (seed, step, rank, stream)."""
    value = (seed * 1_000_003 + step) * 65_537 + rank * 257 + stream
    value = (value * _MIX) & ((1 << 64) - 1)
    return value >> 1


@dataclass(frozen=True)
class MaskMixConfig:
    """What a training batch is made of.

    Attributes:
        synthetic_fraction: share of synthetic masks per batch (0 … 1; 1 needs no pool).
        out_size: side of the model frame.
        augment: augmentation of the real masks.
        synthetic: the synthetic shape mixture.
        box_frames: frame each mask by its box (box-first tokenizers).
        synthetic_size: side at which synthetic masks are drawn in box mode.
        box_rounding: "nearest" (the frame is the tight box) or "outward" (the tight box rounded
            outward to a grid of ``box_bins`` levels per side, as the tokenizer does).
        box_bins: levels per image side of the box codes.
        box_scale_prob, box_scale_max: probability and largest factor of the coarser grid.
    """

    synthetic_fraction: float = 0.3
    out_size: int = 256
    augment: MaskAugmentConfig = field(default_factory=MaskAugmentConfig)
    synthetic: SyntheticMaskConfig = field(default_factory=SyntheticMaskConfig)
    box_frames: bool = False
    synthetic_size: int = 256
    box_rounding: str = "nearest"
    box_bins: int = 1024
    box_scale_prob: float = 0.0
    box_scale_max: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.synthetic_fraction <= 1.0:
            raise ValueError(f"synthetic_fraction must lie in [0, 1], got {self.synthetic_fraction}")
        if self.out_size < 8:
            raise ValueError(f"out_size must be ≥ 8, got {self.out_size}")
        if self.box_rounding not in BOX_ROUNDINGS:
            raise ValueError(f"box_rounding must be one of {BOX_ROUNDINGS}, got {self.box_rounding!r}")
        if self.box_bins < 2 or not 0.0 <= self.box_scale_prob <= 1.0 or self.box_scale_max < 1.0:
            raise ValueError(f"need box_bins ≥ 2, 0 ≤ box_scale_prob ≤ 1 and box_scale_max ≥ 1, got "
                             f"{self.box_bins}, {self.box_scale_prob}, {self.box_scale_max}")


def grid_windows(boxes: torch.Tensor, sizes: torch.Tensor, bins: int, scale: torch.Tensor,
                 phase: torch.Tensor) -> torch.Tensor:
    """Boxes rounded outward to a grid: boxes (B, 4) continuous x0, y0, x1, y1, sizes (B, 2)
    (H, W), scale (B,) ≥ 1, phase (B, 2) in [0, 1) (x, y) → (B, 4) windows.

    The grid step is scale · side / (bins − 1), shifted by phase · step; scale 1 with phase 0 is
    the tokenizer's own outward rounding.
    """
    sizes = sizes.float()
    extent = torch.stack([sizes[:, 1], sizes[:, 0]], dim=1)  # (B, 2): W, H
    step = scale.float().view(-1, 1) * extent / (bins - 1)
    offset = phase.float() * step
    near = offset + step * torch.floor((boxes[:, :2].float() - offset) / step)
    far = offset + step * torch.ceil((boxes[:, 2:].float() - offset) / step)
    return torch.cat([near, far], dim=1)


def _flip(frames: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor) -> torch.Tensor:
    """frames (B, 1, S, S); hflip, vflip (B,) bool → frames flipped where asked."""
    frames = torch.where(hflip.view(-1, 1, 1, 1), frames.flip(-1), frames)
    return torch.where(vflip.view(-1, 1, 1, 1), frames.flip(-2), frames)


class MixedMaskSampler:
    """Batches of (B, 1, S, S) float masks for step ``s`` (see the module docstring)."""

    def __init__(self, pool: MaskPool | None, config: MaskMixConfig, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, device: str | torch.device = "cpu"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.config = config
        self.batch_size = batch_size
        self.num_synthetic = round(batch_size * config.synthetic_fraction)
        self.num_real = batch_size - self.num_synthetic
        if self.num_real > 0 and (pool is None or len(pool) == 0):
            raise ValueError("real masks are requested (synthetic_fraction < 1) but the mask pool is empty")
        self.device = torch.device(device)
        self.pool = pool
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(step_seed(self.seed, epoch, 0, stream=1))
            self._perm = torch.randperm(len(self.pool), generator=gen)
            self._perm_epoch = epoch
        return self._perm

    def real_indices(self, step: int) -> torch.Tensor:
        """Pool indices of the real masks of ``step`` on this rank: (num_real,) int64."""
        n = len(self.pool)
        start = (step * self.world_size + self.rank) * self.num_real
        positions = torch.arange(start, start + self.num_real)
        out = torch.empty(self.num_real, dtype=torch.long)
        for epoch in torch.unique(positions // n).tolist():
            where = positions // n == epoch
            out[where] = self._permutation(epoch)[positions[where] % n]
        return out

    def position(self, step: int) -> dict[str, int]:
        """Where the real-mask stream stands before ``step``: epoch and offset in its permutation."""
        n = len(self.pool) if self.pool is not None else 0
        drawn = step * self.world_size * self.num_real
        return {"epoch": drawn // n if n else 0, "offset": drawn % n if n else 0, "step": step}

    def batch(self, step: int) -> torch.Tensor:
        """(B, 1, S, S) float32 in [0, 1] on the sampler's device: real first, then synthetic."""
        gen = torch.Generator(device=self.device).manual_seed(step_seed(self.seed, step, self.rank))
        parts = []
        size = self.config.out_size
        if self.num_real:
            idx = self.real_indices(step).to(self.pool.masks.device)
            boxes = self.pool.boxes[idx].to(self.device)
            params = sample_augment_params(boxes, self.pool.sizes[idx].to(self.device), self.config.augment,
                                           generator=gen)
            masks = self.pool.masks[idx].to(self.device, non_blocking=True)
            if self.config.box_frames:
                tight = boxes.float() + torch.tensor([0.0, 0.0, 1.0, 1.0], device=self.device)
                windows = self._box_windows(tight, self.pool.sizes[idx].to(self.device), gen)
                parts.append(_flip(crop_box_frames(masks, windows, size), params.hflip, params.vflip))
            else:
                parts.append(apply_augment(masks, params, size))
        if self.num_synthetic:
            side = self.config.synthetic_size if self.config.box_frames else size
            synth = generate_synthetic_masks(self.num_synthetic, side, generator=gen, device=self.device,
                                             config=self.config.synthetic)
            if self.config.box_frames:
                sizes = torch.tensor([side, side], device=self.device).expand(synth.shape[0], 2)
                parts.append(crop_box_frames(synth, self._box_windows(tight_boxes(synth), sizes, gen), size))
            else:
                parts.append(synth.unsqueeze(1).float())
        return torch.cat(parts)

    def _box_windows(self, tight: torch.Tensor, sizes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Frame windows (B, 4) of masks with continuous tight boxes (B, 4) and sizes (B, 2)."""
        config = self.config
        if config.box_rounding == "nearest":
            return tight
        n = tight.shape[0]
        coarser = torch.rand(n, generator=gen, device=self.device) < config.box_scale_prob
        factor = torch.exp(torch.rand(n, generator=gen, device=self.device) * math.log(config.box_scale_max))
        phase = torch.rand(n, 2, generator=gen, device=self.device)
        scale = torch.where(coarser, factor, torch.ones_like(factor))
        phase = torch.where(coarser.view(n, 1), phase, torch.zeros_like(phase))
        return grid_windows(tight, sizes, config.box_bins, scale, phase)

    def state_dict(self, next_step: int) -> dict:
        return {"seed": self.seed, "world_size": self.world_size, "batch_size": self.batch_size,
                "num_real": self.num_real, "pool_size": len(self.pool) if self.pool is not None else 0,
                **self.position(next_step)}

    def check_state(self, state: dict) -> None:
        """Refuse to resume with a different data stream (seed, world size, batch or pool size)."""
        mine = self.state_dict(int(state.get("step", 0)))
        for key in ("seed", "world_size", "batch_size", "num_real", "pool_size"):
            if state.get(key) != mine[key]:
                raise ValueError(f"cannot resume: the checkpoint's data stream has {key}={state.get(key)} "
                                 f"but this run has {key}={mine[key]}")
