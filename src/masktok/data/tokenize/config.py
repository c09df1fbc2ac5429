"""How a dataset is tokenized (:class:`TokenizeConfig`): the one source of the settings' defaults,
also of ``masktok tokenize-dataset``'s options (:mod:`masktok.cli.dataclass_options`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from masktok.tokenizers.base import check_empty_masks

MISSING_IMAGE_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class TokenizeConfig:
    """How a dataset is tokenized.

    Attributes:
        output_dir: where shards, manifest, usage summary and ``_SUCCESS`` go.
        images_per_shard: images per output file (ignored for SA-1B tars: one file per tar).
        images_per_batch: images per model pass (the image encoder's batch for SAMTok).
        prefetch_images: how many loaded images the DataLoader keeps ready ahead of the tokenizer.
        num_codes: keep this many leading codes per mask (None = all; in [1, max_codes]).
        include_crowd: tokenize COCO crowd regions too (flagged in ``iscrowd``).
        empty_masks: the tokenizers' empty-mask policy (:mod:`masktok.tokenizers.base`):
            ``"error"`` (default), ``"skip"`` (left out, counted in the shard's metadata) or
            ``"keep"`` (a row with null ``codes``, ``words`` and ``box``).
        missing_images: ``"error"`` or ``"skip"`` (counted), for images the tokenizer needs that
            are not on disk.
        num_workers: DataLoader workers decoding images and masks.
        progress: show progress bars (rank 0 and each rank's own bar).
    """

    output_dir: Path
    images_per_shard: int = 1000
    images_per_batch: int = 8
    prefetch_images: int = 64
    num_codes: int | None = None
    include_crowd: bool = True
    empty_masks: str = "error"
    missing_images: str = "error"
    num_workers: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        for name in ("images_per_shard", "images_per_batch", "prefetch_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) \
                or self.num_workers < 0:
            raise ValueError(f"num_workers: expected an int >= 0, got {self.num_workers!r}")
        if self.num_codes is not None and (isinstance(self.num_codes, bool)
                                           or not isinstance(self.num_codes, int)
                                           or self.num_codes < 1):
            raise ValueError(f"num_codes: expected a positive int or None, got {self.num_codes!r}")
        check_empty_masks(self.empty_masks)
        if self.missing_images not in MISSING_IMAGE_POLICIES:
            raise ValueError(f"missing_images: expected one of {MISSING_IMAGE_POLICIES}, got {self.missing_images!r}")
