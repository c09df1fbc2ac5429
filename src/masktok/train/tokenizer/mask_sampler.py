"""Deterministic, resumable batches of training masks: real (augmented) + synthetic.

The batch of step ``s`` on rank ``r`` is a pure function of (seed, s, r): real masks are taken in
order from a per-epoch permutation of the pool (ranks interleave, so every rank sees different
masks), augmentations and synthetic masks come from a generator seeded from (seed, s, r) on the
training device. Resuming at step ``s`` therefore gives exactly the batch an uninterrupted run
would have drawn, on CPU or GPU, without replaying the data stream.

    sampler = MixedMaskSampler(pool, MaskMixConfig(), batch_size=256, seed=0, device="cuda")
    frames = sampler.batch(step)          # (B, 1, 256, 256) float in [0, 1]

With ``box_frames=True`` (box-first tokenizers) every frame is the mask's tight box stretched to
S×S, as the tokenizer frames masks: real masks keep their flips but are not cropped, rotated or
dilated/eroded (those would move the box edges off the frame edges); synthetic masks are drawn at
``synthetic_size`` and framed by their boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from masktok.masks.augment import MaskAugmentConfig, apply_augment, sample_augment_params
from masktok.data.mask_pools.sources import MaskPool
from masktok.data.mask_pools.synthetic import SyntheticMaskConfig, generate_synthetic_masks
from masktok.tokenizers.himtok.box_frame import crop_box_frames, tight_boxes

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
        box_frames: frame each mask by its tight box (box-first tokenizers).
        synthetic_size: side at which synthetic masks are drawn in box mode.
    """

    synthetic_fraction: float = 0.3
    out_size: int = 256
    augment: MaskAugmentConfig = field(default_factory=MaskAugmentConfig)
    synthetic: SyntheticMaskConfig = field(default_factory=SyntheticMaskConfig)
    box_frames: bool = False
    synthetic_size: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.synthetic_fraction <= 1.0:
            raise ValueError(f"synthetic_fraction must lie in [0, 1], got {self.synthetic_fraction}")
        if self.out_size < 8:
            raise ValueError(f"out_size must be ≥ 8, got {self.out_size}")


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
            if self.config.box_frames:
                params.window = boxes.float() + torch.tensor([0.0, 0.0, 1.0, 1.0], device=self.device)
                params.angle = torch.zeros_like(params.angle)
                params.morph = torch.zeros_like(params.morph)
            masks = self.pool.masks[idx].to(self.device, non_blocking=True)
            parts.append(apply_augment(masks, params, size))
        if self.num_synthetic:
            side = self.config.synthetic_size if self.config.box_frames else size
            synth = generate_synthetic_masks(self.num_synthetic, side, generator=gen, device=self.device,
                                             config=self.config.synthetic)
            if self.config.box_frames:
                parts.append(crop_box_frames(synth, tight_boxes(synth), size))
            else:
                parts.append(synth.unsqueeze(1).float())
        return torch.cat(parts)

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
