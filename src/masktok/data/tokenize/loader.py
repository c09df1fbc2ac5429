"""DataLoader workers for ``tokenize-dataset``: images and masks decoded off the main process.

Each worker task loads ``group_size`` consecutive images (JPEG + RLE decoding) and sends them as
one :class:`LoadedGroup`: all their tensors' bytes in one flat buffer. The main process then gets
one shared-memory handle per group instead of two per image (each handle costs a socket round
trip), the DataLoader's pinning thread makes one pinned copy per group (with ``pin_memory``), and
the items come back as views of that buffer — ready for the GPU without another host copy. For
tokenizers that read a stream (SAMTok) the masks travel bit-packed (:class:`~masktok.masks.BitMasks`,
1/8 of the bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from masktok.data.tokenize.shards import MissingImageError, ShardImage
from masktok.masks import BitMasks, rles_to_masks

if TYPE_CHECKING:
    from masktok.data.tokenize.config import TokenizeConfig


@dataclass
class LoadedImageItem:
    """One image as the loader hands it over.

    Attributes:
        shard: index into the list of shards being processed.
        meta: image_id, file_name, height, width (the row fields of the image).
        instances: per kept mask, its row fields (annotation_id, category, iscrowd, box, area).
        masks: (N, H, W) bool tensor, or :class:`~masktok.masks.BitMasks` when packed.
        pixels: (H, W, 3) uint8 tensor, or None for image-free tokenizers / a missing image.
    """

    shard: int
    meta: dict[str, Any]
    instances: list[dict]
    masks: torch.Tensor | BitMasks
    pixels: torch.Tensor | None
    skipped_empty: int
    missing_image: bool


@dataclass
class LoadedGroup:
    """Consecutive loaded images as one message: the items without their tensors, each tensor's
    (kind, shape, width) and all their bytes in ``flat`` (uint8, concatenated in item order,
    masks before pixels)."""

    items: list[LoadedImageItem]
    layout: list[tuple[tuple, tuple | None]]
    flat: torch.Tensor

    @classmethod
    def of(cls, items: list[LoadedImageItem]) -> "LoadedGroup":
        parts, layout, bare = [], [], []
        for item in items:
            if isinstance(item.masks, BitMasks):
                masks_layout = ("bits", tuple(item.masks.bits.shape), item.masks.width)
                parts.append(item.masks.bits.reshape(-1))
            else:
                masks_layout = ("bool", tuple(item.masks.shape), 0)
                parts.append(item.masks.contiguous().reshape(-1).view(torch.uint8))
            pixels_layout = None
            if item.pixels is not None:
                pixels_layout = tuple(item.pixels.shape)
                parts.append(item.pixels.contiguous().reshape(-1))
            layout.append((masks_layout, pixels_layout))
            bare.append(replace(item, masks=None, pixels=None))
        flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.uint8)
        return cls(bare, layout, flat)

    def pin_memory(self) -> "LoadedGroup":
        """Called by the DataLoader's pinning thread: one pinned copy of the whole group."""
        return replace(self, flat=self.flat.pin_memory())

    def unpack(self) -> list[LoadedImageItem]:
        """The items, their tensors views of ``flat`` (pinned if ``flat`` is)."""
        out, offset = [], 0

        def take(shape: tuple) -> torch.Tensor:
            nonlocal offset
            size = int(np.prod(shape))
            view = self.flat[offset: offset + size].view(shape)
            offset += size
            return view

        for item, ((kind, shape, width), pixels_shape) in zip(self.items, self.layout):
            masks = BitMasks(take(shape), width) if kind == "bits" else take(shape).view(torch.bool)
            pixels = take(pixels_shape) if pixels_shape is not None else None
            out.append(replace(item, masks=masks, pixels=pixels))
        return out


class ImageLoadDataset(Dataset):
    """The pending images of a rank, in shard order; item → masks and pixels of one image."""

    def __init__(self, items: list[tuple[int, ShardImage]], config: "TokenizeConfig",
                 load_pixels: bool, pack_masks: bool):
        self.items = items
        self.config = config
        self.load_pixels = load_pixels
        self.pack_masks = pack_masks

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> LoadedImageItem:
        shard, ref = self.items[index]
        loaded = ref.load()
        ann = loaded.annotations
        meta = {"image_id": str(ann.image_id), "file_name": ann.file_name,
                "height": ann.height, "width": ann.width}
        empty = self._masks(np.zeros((0, ann.height, ann.width), dtype=bool))
        pixels = None
        if self.load_pixels:
            try:
                pixels = torch.from_numpy(loaded.pixels())
            except MissingImageError:
                if self.config.missing_images == "error":
                    raise
                return LoadedImageItem(shard, meta, [], empty, None, 0, True)
        kept, skipped = [], 0
        for inst in ann.instances:
            if inst.iscrowd and not self.config.include_crowd:
                continue
            if inst.box is None and self.config.empty_masks != "keep":
                if self.config.empty_masks == "error":
                    raise ValueError(f"image {ann.image_id!r}: annotation {inst.id!r} has an empty "
                                     f"mask (pass empty_masks='skip' to leave such masks out, or "
                                     f"'keep' for a row without codes)")
                skipped += 1
                continue
            kept.append(inst)
        # C-contiguous here, in the worker: RLE decoding yields column-major masks
        masks = self._masks(np.ascontiguousarray(rles_to_masks(
            [i.mask_rle for i in kept], size=(ann.height, ann.width)))) if kept else empty
        instances = [{"annotation_id": str(i.id), "category_id": int(i.category_id),
                      "category_name": i.category_name, "iscrowd": bool(i.iscrowd),
                      "box": None if i.box is None else list(i.box), "area": float(i.area)} for i in kept]
        return LoadedImageItem(shard, meta, instances, masks, pixels, skipped, False)

    def _masks(self, masks: np.ndarray) -> torch.Tensor | BitMasks:
        return BitMasks.pack(masks) if self.pack_masks else torch.from_numpy(masks)


def load_images(items: list[tuple[int, ShardImage]], config: "TokenizeConfig", *, load_pixels: bool,
                pack_masks: bool, pin_memory: bool, group_size: int,
                prefetch_images: int) -> Iterator[LoadedImageItem]:
    """The loaded images of ``items`` in order, ``config.num_workers`` workers loading groups of
    ``group_size`` images and keeping about ``prefetch_images`` ready."""
    workers = config.num_workers
    prefetch = {"prefetch_factor": max(2, -(-prefetch_images // (workers * group_size)))} if workers else {}
    loader = DataLoader(ImageLoadDataset(items, config, load_pixels, pack_masks), batch_size=group_size,
                        shuffle=False, num_workers=workers, collate_fn=LoadedGroup.of,
                        pin_memory=pin_memory, **prefetch)
    for group in loader:
        yield from group.unpack()
