"""Fine-tune a SAM 2 refiner on de-tokenized masks made imperfect on purpose (HiMTok Appendix C).

    from masktok.train.refiner import RefinerTraining, train_refiner

    refiner = SAMRefiner.from_pretrained("sam2.1_hiera_large.pt")
    result = train_refiner(refiner, himtok, samples, RefinerTraining(steps=2000), run_dir="runs/refiner")
    refiner.save_pretrained("runs/refiner/final")

Each step takes one image and up to ``masks_per_step`` of its ground-truth masks, encodes them with
the mask tokenizer, decodes only a random prefix of each code sequence (fewer tokens: the fine
shape is lost), applies a random dilation or erosion to the de-tokenized probabilities, and asks
the refiner for the ground truth: sigmoid BCE + Dice on its m×m logits against the mask in the
stretched frame. Only the mask decoder and the mask-prompt convolutions (``prompt_encoder.
mask_embed``) train, as in the paper; the image encoder stays frozen. Logs go to
``run_dir/metrics.csv`` and a progress bar.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from masktok.masks.augment import morph_masks


@dataclass(frozen=True)
class RefinerTraining:
    """Settings of the refiner fine-tuning.

    Attributes:
        steps: optimizer steps.
        learning_rate, weight_decay, max_grad_norm: AdamW and clipping.
        masks_per_step: masks (of one image) per step.
        min_codes: shortest code prefix decoded (the longest is the tokenizer's maximum).
        morph_probability: chance that a mask gets a random dilation or erosion.
        max_morph_radius: largest radius r (a (2r+1)² kernel; the official 3…7 kernels are r 1…3).
        bce_weight, dice_weight: loss weights.
        seed: the random choices of masks, prefixes and morphology.
        log_every: steps between log rows.
    """

    steps: int = 1000
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    masks_per_step: int = 8
    min_codes: int = 1
    morph_probability: float = 0.5
    max_morph_radius: int = 3
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("steps", "learning_rate", "masks_per_step", "min_codes", "log_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive value, got {getattr(self, name)!r}")
        if not 0.0 <= self.morph_probability <= 1.0:
            raise ValueError(f"morph_probability: expected a value in [0, 1], got {self.morph_probability}")
        if self.max_morph_radius < 0:
            raise ValueError(f"max_morph_radius: expected ≥ 0, got {self.max_morph_radius}")


@dataclass
class RefinerResult:
    """Per-step losses of a run (``losses[i]`` is step i + 1's)."""

    losses: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.losses)


def set_trainable(refiner: Any) -> list[torch.nn.Parameter]:
    """Freeze everything but the mask decoder and the mask-prompt convolutions; their parameters."""
    model = refiner.model
    model.requires_grad_(False)
    model.mask_decoder.requires_grad_(True)
    model.prompt_encoder.mask_embed.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def imperfect_probabilities(tokenizer: Any, masks: torch.Tensor, config: RefinerTraining,
                            generator: torch.Generator) -> torch.Tensor:
    """masks (N, H, W) bool → de-tokenized probabilities (N, H, W) from random code prefixes,
    randomly dilated or eroded."""
    n, height, width = masks.shape
    codes = tokenizer.encode(None, masks)
    longest = codes.shape[1]
    low = min(config.min_codes, longest)
    lengths = torch.randint(low, longest + 1, (n,), generator=generator)
    logits = tokenizer.decode(None, codes, size=(height, width), lengths=lengths, return_logits=True)
    probs = torch.sigmoid(logits.float()).unsqueeze(1)
    if config.max_morph_radius > 0 and config.morph_probability > 0:
        radius = torch.randint(1, config.max_morph_radius + 1, (n,), generator=generator)
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, 1, -1)
        apply = torch.rand(n, generator=generator) < config.morph_probability
        probs = morph_masks(probs, torch.where(apply, radius * sign, torch.zeros_like(radius)))
    return probs[:, 0]


def refinement_loss(logits: torch.Tensor, target: torch.Tensor, config: RefinerTraining) -> torch.Tensor:
    """logits (N, m, m), target (N, m, m) in [0, 1] → bce_weight · BCE + dice_weight · Dice."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits).flatten(1)
    flat = target.flatten(1)
    dice = 1 - (2 * (probs * flat).sum(1) + 1) / (probs.sum(1) + flat.sum(1) + 1)
    return config.bce_weight * bce + config.dice_weight * dice.mean()


def train_refiner(refiner: Any, tokenizer: Any, samples: Iterable[tuple[Any, Any]],
                  config: RefinerTraining = RefinerTraining(), *, run_dir: str | Path | None = None,
                  progress: bool = True) -> RefinerResult:
    """Fine-tune ``refiner`` in place on ``samples`` ((image, masks (N, H, W) bool) pairs, cycled).

    Raises:
        ValueError: no samples, or a sample whose masks do not match its image.
    """
    from tqdm.auto import tqdm

    from masktok.tokenizers.samtok.preprocess import load_rgb

    pool = list(samples)
    if not pool:
        raise ValueError("samples: expected at least one (image, masks) pair")
    generator = torch.Generator().manual_seed(config.seed)
    params = set_trainable(refiner)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    logger = None
    if run_dir is not None:
        from masktok.train.tokenizer.logging import MetricsLogger

        logger = MetricsLogger(run_dir)
    refiner.model.train()
    result = RefinerResult()
    order = itertools.cycle(range(len(pool)))
    bar = tqdm(range(config.steps), desc="refiner", disable=not progress)
    try:
        for step in bar:
            index = next(order)
            image, masks = pool[index]
            rgb = load_rgb(image)
            masks = torch.as_tensor(np.asarray(masks)).bool()
            if masks.ndim != 3 or tuple(masks.shape[1:]) != rgb.shape[:2]:
                raise ValueError(f"samples[{index}]: masks {tuple(masks.shape)} do not match image {rgb.shape[:2]}")
            masks = masks[masks.flatten(1).any(1)]
            if masks.shape[0] > config.masks_per_step:
                pick = torch.randperm(masks.shape[0], generator=generator)[:config.masks_per_step]
                masks = masks[pick]
            if masks.shape[0] == 0:
                raise ValueError(f"samples[{index}]: no non-empty mask")
            probs = imperfect_probabilities(tokenizer, masks, config, generator)
            embeddings = refiner.image_embeddings(rgb)
            logits = refiner.mask_logits(embeddings, probs)
            size = logits.shape[-1]
            target = F.interpolate(masks.float().unsqueeze(1), size=(size, size), mode="bilinear",
                                   align_corners=False)[:, 0].to(logits.device)
            loss = refinement_loss(logits, (target > 0.5).float(), config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            result.losses.append(loss.item())
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if logger is not None:
                    logger.log(step + 1, {"loss": result.losses[-1]})
    finally:
        refiner.model.eval()
        if logger is not None:
            logger.close()
    return result
