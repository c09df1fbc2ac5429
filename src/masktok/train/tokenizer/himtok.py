"""HiMTok training recipe: model, masks, objective, validation and export for the trainer.

Masks come from a :class:`MaskPool` (packed files and/or annotation sources) mixed with synthetic
masks by :class:`MixedMaskSampler`; the whole network is trained with the hierarchical mask loss
(:class:`HiMTokObjective`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from masktok.masks.augment import MaskAugmentConfig
from masktok.data.mask_pools.sources import MaskPool, load_sources
from masktok.train.tokenizer.distributed import DistributedContext
from masktok.train.tokenizer.mask_sampler import MaskMixConfig, MixedMaskSampler
from masktok.train.tokenizer.objectives import HiMTokObjective
from masktok.train.tokenizer.validation import himtok_reconstruction_miou


def build_pool(sources: tuple[str, ...], packed: tuple[str, ...], max_side: int, device: torch.device,
               limit: int = 0) -> MaskPool | None:
    """One pool from packed ``.npz`` files and annotation source specs (None when both are empty)."""
    pools = [MaskPool.load(p) for p in packed]
    if sources:
        pools.append(MaskPool.from_records(load_sources(sources), max_side=max_side))
    if not pools:
        return None
    if len(pools) == 1:
        pool = pools[0] if not limit else pools[0].subset(range(min(limit, len(pools[0]))))
        return MaskPool(pool.masks.to(device), pool.sizes.to(device), pool.boxes.to(device), pool.names)
    arrays = [pool.full_masks(i) for pool in pools for i in range(len(pool))]
    names = [name for pool in pools for name in pool.names]
    if limit:
        arrays, names = arrays[:limit], names[:limit]
    return MaskPool.from_arrays(arrays, names, device)


class HiMTokRecipe:
    """Everything family-specific the trainer needs for HiMTok."""

    family = "himtok"

    def __init__(self, config, ctx: DistributedContext):
        from masktok.tokenizers.himtok import HiMTok, HiMTokModel, get_config

        self.config = config
        self.ctx = ctx
        family = config.tokenizer
        if family.init_from or Path(family.model).is_dir():
            start = family.init_from or family.model
            self.model = HiMTok.from_pretrained(start, device="cpu", dtype=torch.float32).model.train()
        else:
            self.model = HiMTokModel(get_config(family.model))
        self.model.to(ctx.device)
        self.objective = HiMTokObjective(self.model, num_partial=family.num_partial,
                                         sigma_scale=family.level_sigma_scale)
        pool = build_pool(family.data, family.packed, family.max_side, ctx.device)
        model_config = self.model.config
        mix = MaskMixConfig(synthetic_fraction=family.synthetic_fraction, out_size=model_config.image_size,
                            augment=MaskAugmentConfig(crop_prob=family.crop_prob),
                            box_frames=model_config.box_prefix, box_rounding=model_config.box_rounding,
                            box_bins=model_config.codebook_size, box_scale_prob=family.box_scale_prob,
                            box_scale_max=family.box_scale_max)
        self.sampler = MixedMaskSampler(pool, mix, batch_size=family.batch_size, seed=config.seed, rank=ctx.rank,
                                        world_size=ctx.world_size, device=ctx.device)
        self.val_pool = build_pool(family.val_data, family.val_packed, 100_000, ctx.device,
                                   limit=config.val_max_masks)
        self.pool_size = 0 if pool is None else len(pool)

    def batch(self, step: int) -> torch.Tensor:
        return self.sampler.batch(step)

    def data_state(self, next_step: int) -> dict:
        return self.sampler.state_dict(next_step)

    def check_data_state(self, state: dict) -> None:
        self.sampler.check_state(state)

    def validate(self, autocast_dtype: torch.dtype | None) -> dict[str, float]:
        if self.val_pool is None:
            return {}
        lengths = [l for l in self.config.tokenizer.val_prefix_lengths if l <= self.model.config.max_codes]
        scores = himtok_reconstruction_miou(self.model, self.val_pool, lengths, autocast_dtype=autocast_dtype)
        return {f"val_miou@{l}": v for l, v in scores.items()}

    def export(self, path: str | Path, dtype: torch.dtype) -> None:
        """Save a copy of the model as a tokenizer folder (config.json + model.safetensors) in ``dtype``."""
        from masktok.tokenizers.himtok import HiMTok

        model = copy.deepcopy(self.model).to("cpu")
        HiMTok(model=model, device="cpu", dtype=dtype).save_pretrained(path)
