"""Tokenizer-training settings: one small config per family, and the run settings they share.

    from masktok.train.tokenizer.config import HiMTokTrainConfig, TrainConfig
    config = TrainConfig(tokenizer=HiMTokTrainConfig(model="masktok-s", packed=("masks.npz",)),
                         steps=2000, run_dir="runs/himtok")

These dataclasses are the one source of the defaults: ``masktok train tokenizer`` builds its
options from their fields (:mod:`masktok.cli.dataclass_options`). A run's ``config.json`` and its
checkpoints store :meth:`TrainConfig.to_dict`, a flat dict with ``family``; :meth:`TrainConfig.from_dict`
reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

EXPORT_DTYPES = ("float32", "float16", "bfloat16")


def _as_tuples(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(config, name, tuple(getattr(config, name)))


@dataclass
class HiMTokTrainConfig:
    """What a HiMTok run trains and on which masks.

    Attributes:
        model: a HiMTok config name (``masktok-s``, ``masktok-b``, ``masktok-box``, ``official``) or a
            tokenizer folder to start from.
        init_from: start from these weights (a tokenizer folder / checkpoint) instead of random.
        data: annotation source specs KIND:PATH[,PATH…] (:func:`masktok.data.mask_pools.sources.parse_source`).
        packed: packed mask files (.npz, :func:`masktok.data.mask_pools.sources.pack_masks`).
        val_data: held-out annotation source specs.
        val_packed: held-out packed mask files.
        val_prefix_lengths: prefix lengths the validation reports.
        synthetic_fraction: share of synthetic masks per batch.
        crop_prob: probability of the crop around the mask (area × U(4, 50)), else the whole image.
        max_side: long side of real masks kept in memory (downscaled when larger).
        batch_size: masks per step and process.
        num_partial: random partial prefix lengths per mask and step.
        level_sigma_scale: scale of the partial levels' target blur (1: the official schedule).
        box_scale_prob: box-first models with outward boxes: probability of a coarser box grid
            (masks as small parts of larger images; see :mod:`masktok.train.tokenizer.mask_sampler`).
        box_scale_max: the largest factor of that coarser grid.
    """

    family: ClassVar[str] = "himtok"

    model: str = "masktok-s"
    init_from: str | None = None
    data: tuple[str, ...] = ()
    packed: tuple[str, ...] = ()
    val_data: tuple[str, ...] = ()
    val_packed: tuple[str, ...] = ()
    val_prefix_lengths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    synthetic_fraction: float = 0.3
    crop_prob: float = 0.5
    max_side: int = 640
    batch_size: int = 64
    num_partial: int = 3
    level_sigma_scale: float = 1.0
    box_scale_prob: float = 0.0
    box_scale_max: float = 1.0

    def __post_init__(self) -> None:
        _as_tuples(self, ("data", "packed", "val_data", "val_packed", "val_prefix_lengths"))
        if not self.level_sigma_scale > 0 or not 0 <= self.box_scale_prob <= 1 or not self.box_scale_max >= 1:
            raise ValueError(f"need level_sigma_scale > 0, 0 ≤ box_scale_prob ≤ 1 and box_scale_max ≥ 1, got "
                             f"{self.level_sigma_scale}, {self.box_scale_prob}, {self.box_scale_max}")
        if self.batch_size < 1 or self.num_partial < 0 or self.max_side < 1:
            raise ValueError(f"batch_size and max_side must be ≥ 1 and num_partial ≥ 0, got {self.batch_size}, "
                             f"{self.max_side} and {self.num_partial}")
        if not 0 <= self.synthetic_fraction <= 1 or not 0 <= self.crop_prob <= 1:
            raise ValueError("synthetic_fraction and crop_prob must lie in [0, 1]")
        if any(length < 1 for length in self.val_prefix_lengths):
            raise ValueError(f"val_prefix_lengths: code lengths start at 1, got {list(self.val_prefix_lengths)}")
        if self.synthetic_fraction < 1 and not (self.data or self.packed):
            raise ValueError("HiMTok training needs real masks (data or packed) unless synthetic_fraction is 1")


@dataclass
class SAMTokTrainConfig:
    """What a SAMTok run trains and on which images.

    Attributes:
        model: a SAM 2.1 Hiera size (``tiny``, ``small``, ``base_plus``, ``large``), ``tiny-test``, or a
            tokenizer folder / checkpoint to start from.
        init_from: start from these weights (a tokenizer folder / checkpoint) instead of random.
        data: image-annotated source specs KIND:PATH[,PATH…] (coco, panoptic, yolo, labelme, sa1b).
        val_data: held-out source specs.
        batch_size: images per step and process.
        masks_per_image: masks per image in a step (the image is embedded once for all).
        dead_code_threshold: EMA count under which a code is restarted (official: 1.0, tuned for a
            global batch of 1024 masks, ~4 per code and step; small batches need it scaled down by
            about batch masks / 1024, or almost every code restarts every step).
    """

    family: ClassVar[str] = "samtok"

    model: str = "large"
    init_from: str | None = None
    data: tuple[str, ...] = ()
    val_data: tuple[str, ...] = ()
    batch_size: int = 64
    masks_per_image: int = 8
    dead_code_threshold: float = 1.0

    def __post_init__(self) -> None:
        _as_tuples(self, ("data", "val_data"))
        if self.batch_size < 1 or self.masks_per_image < 1:
            raise ValueError(f"batch_size and masks_per_image must be ≥ 1, got {self.batch_size} and "
                             f"{self.masks_per_image}")
        if not self.dead_code_threshold >= 0:
            raise ValueError(f"dead_code_threshold must be ≥ 0, got {self.dead_code_threshold}")
        if not self.data:
            raise ValueError("SAMTok training needs image-annotated data sources (data)")


FAMILY_CONFIGS: dict[str, type] = {cls.family: cls for cls in (HiMTokTrainConfig, SAMTokTrainConfig)}


@dataclass
class TrainConfig:
    """A tokenizer training run: the family's config plus the settings every run shares.

    Attributes:
        tokenizer: :class:`HiMTokTrainConfig` or :class:`SAMTokTrainConfig`.
        steps: total optimizer steps.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay (matrices only).
        betas: AdamW betas.
        grad_clip: gradient norm clip (0: off).
        warmup_fraction: linear warm-up share of the steps; then cosine down to ``min_lr_ratio · lr``.
        min_lr_ratio: final LR as a fraction of the peak.
        seed: model init and data stream.
        device: auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK).
        bf16: bf16 autocast on CUDA (ignored on CPU).
        run_dir: output folder (checkpoints, logs, final/).
        checkpoint_every: steps between checkpoints (0: only at the end / on stop).
        keep_checkpoints: how many checkpoints to keep.
        checkpoint_part_mb: split checkpoint files into parts of at most this many MiB (0: one file).
        checkpoint_optimizer_dtype: float32 (exact resume) or bfloat16 (smaller files).
        log_every: steps between log rows.
        val_every: steps between validation passes (0: at the end only).
        val_max_masks: validate on at most this many masks (SAMTok: images; 0: all).
        tensorboard: also write TensorBoard event files.
        progress: show a progress bar.
        time_limit_min: stop with a checkpoint once this many minutes have passed (0: none); checked
            every ``log_every`` steps, so the steps never wait for the accelerator.
        stop_at_step: stop with a checkpoint after this step (0: run to ``steps``).
        export_dtype: dtype of the exported ``final/`` tokenizer (float32, float16, bfloat16).
    """

    tokenizer: HiMTokTrainConfig | SAMTokTrainConfig
    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.05
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    run_dir: str = "runs/tokenizer"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    checkpoint_part_mb: float = 0.0
    checkpoint_optimizer_dtype: str = "float32"
    log_every: int = 10
    val_every: int = 0
    val_max_masks: int = 0
    tensorboard: bool = False
    progress: bool = True
    time_limit_min: float = 0.0
    stop_at_step: int = 0
    export_dtype: str = "float32"

    # Settings that only steer this invocation; every other one defines the run and must match on resume.
    RUN_CONTROL: ClassVar[frozenset[str]] = frozenset({
        "device", "run_dir", "checkpoint_every", "keep_checkpoints", "checkpoint_part_mb",
        "checkpoint_optimizer_dtype", "log_every", "val_every", "val_max_masks", "tensorboard", "progress",
        "time_limit_min", "stop_at_step", "export_dtype", "val_data", "val_packed", "val_prefix_lengths"})

    def __post_init__(self) -> None:
        if not isinstance(self.tokenizer, tuple(FAMILY_CONFIGS.values())):
            raise ValueError(f"tokenizer: expected one of {[c.__name__ for c in FAMILY_CONFIGS.values()]}, "
                             f"got {type(self.tokenizer).__name__}")
        self.betas = tuple(self.betas)
        if self.steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {self.steps}")
        if self.lr <= 0 or not 0 <= self.warmup_fraction < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("need lr > 0, 0 ≤ warmup_fraction < 1 and 0 ≤ min_lr_ratio ≤ 1")
        if self.grad_clip < 0 or self.checkpoint_every < 0 or self.log_every < 1 or self.val_every < 0:
            raise ValueError("grad_clip, checkpoint_every and val_every must be ≥ 0 and log_every ≥ 1")
        if self.export_dtype not in EXPORT_DTYPES:
            raise ValueError(f"export_dtype must be one of {EXPORT_DTYPES}, got {self.export_dtype!r}")

    @property
    def family(self) -> str:
        """The family being trained ("himtok" or "samtok")."""
        return self.tokenizer.family

    def to_dict(self) -> dict[str, Any]:
        """``{"family": …, <the family's fields>, <the run's fields>}``, JSON-ready."""
        run = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tokenizer"}
        family = {f.name: getattr(self.tokenizer, f.name) for f in fields(self.tokenizer)}
        flat = {"family": self.family, **family, **run}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in flat.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The config :meth:`to_dict` wrote (``family`` picks the family's config); ``ValueError``
        naming unknown keys. Keys only another family uses (older runs stored one flat config
        holding both families' settings) are not this family's and are not read."""
        data = dict(data)
        family = data.pop("family", "himtok")
        if family not in FAMILY_CONFIGS:
            raise ValueError(f"family must be one of {tuple(FAMILY_CONFIGS)}, got {family!r}")
        family_cls = FAMILY_CONFIGS[family]
        family_names = {f.name for f in fields(family_cls)}
        run_names = {f.name for f in fields(cls)} - {"tokenizer"}
        others = {f.name for other in FAMILY_CONFIGS.values() for f in fields(other)}
        unknown = sorted(set(data) - family_names - run_names - others)
        if unknown:
            raise ValueError(f"unknown {family} training config keys: {unknown}")
        tokenizer = family_cls(**{k: v for k, v in data.items() if k in family_names})
        return cls(tokenizer=tokenizer, **{k: v for k, v in data.items() if k in run_names})
