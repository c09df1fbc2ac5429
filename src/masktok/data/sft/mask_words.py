"""Where builders get mask codes: a tokenizer on the fly, or the Parquet of ``tokenize-dataset``.

Both sources answer :meth:`codes` for all masks of one image at once (one image encoding per
call). :class:`ParquetWords` looks masks up by (image id, annotation id), so it serves tasks whose
masks are dataset instances (COCO, panoptic, YOLO, refs); zoom-in crops are new masks on new
images and always need a tokenizer.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from masktok.annotations import ImageAnnotations
from masktok.data.tokenize.shards import LoadedImage, pyarrow_module
from masktok.data.tokenize.pipeline import MANIFEST, SUCCESS
from masktok.masks import rles_to_masks


@dataclass(frozen=True)
class ImageEntry:
    """An image a sample is about: id, file and size."""

    image_id: str
    path: Path
    height: int
    width: int

    @classmethod
    def of(cls, annotations: ImageAnnotations, images_dir: str | Path) -> "ImageEntry":
        return cls(str(annotations.image_id), Path(images_dir) / annotations.file_name,
                   annotations.height, annotations.width)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def exists(self) -> bool:
        return self.path.is_file()

    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8; ValueError if the file is missing or its size is not (H, W)."""
        stub = ImageAnnotations(self.image_id, self.path.name, self.height, self.width, [])
        return LoadedImage(stub, image_path=self.path).pixels()

    def pil(self) -> Image.Image:
        return Image.fromarray(self.pixels())


@dataclass(frozen=True)
class MaskRef:
    """A mask of an image: its RLE and, for dataset instances, its annotation id."""

    rle: dict
    annotation_id: str | None = None


class TokenizerWords:
    """Codes computed with a mask tokenizer; recent images' codes are cached by mask."""

    def __init__(self, tokenizer: Any, cache_images: int = 8):
        self.tokenizer = tokenizer
        self.vocabulary = tokenizer.vocabulary
        self._needs_image = tokenizer.needs_image
        self._cache: OrderedDict[str, dict[str, tuple[int, ...]]] = OrderedDict()
        self._cache_images = cache_images

    def codes(self, image: ImageEntry, masks: Sequence[MaskRef]) -> list[tuple[int, ...]]:
        """Codes of ``masks`` (all on ``image``), in order."""
        key = str(image.path)
        known = self._cache.setdefault(key, {})
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_images:
            self._cache.popitem(last=False)
        todo = [m for m in masks if _rle_key(m.rle) not in known]
        if todo:
            stack = rles_to_masks([m.rle for m in todo], size=image.size)
            pixels = image.pixels() if self._needs_image else None
            rows = self.tokenizer.encode(pixels, stack).tolist()
            for mask, row in zip(todo, rows):
                known[_rle_key(mask.rle)] = tuple(int(c) for c in row)
        return [known[_rle_key(m.rle)] for m in masks]

    def crop_codes(self, image: Image.Image, mask: np.ndarray) -> tuple[int, ...]:
        """Codes of one mask (H', W') on a crop image."""
        pixels = np.asarray(image.convert("RGB")) if self._needs_image else None
        return tuple(int(c) for c in self.tokenizer.encode(pixels, mask[None]).tolist()[0])


def _rle_key(rle: dict) -> str:
    counts = rle["counts"]
    text = counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
    return f"{rle['size'][0]}x{rle['size'][1]}:{text}"


class ParquetWords:
    """Codes read from a finished ``tokenize-dataset`` output folder.

    Args:
        folder: the output folder (must hold ``_SUCCESS``).
        tokenizer: optional; only used for zoom-in crops, and must share the vocabulary.
    """

    def __init__(self, folder: str | Path, tokenizer: Any = None):
        from masktok.words import MaskVocabulary

        folder = Path(folder)
        if not (folder / SUCCESS).is_file():
            raise ValueError(f"{folder}: not a finished tokenize-dataset output (no {SUCCESS})")
        manifest = json.loads((folder / MANIFEST).read_text())
        self.vocabulary = MaskVocabulary.from_dict(manifest["vocabulary"])
        if tokenizer is not None and tokenizer.vocabulary != self.vocabulary:
            raise ValueError(f"tokenizer: its vocabulary {tokenizer.vocabulary} differs from the "
                             f"Parquet's {self.vocabulary}")
        self._crops = TokenizerWords(tokenizer) if tokenizer is not None else None
        pq = pyarrow_module().parquet
        self._codes: dict[tuple[str, str], tuple[int, ...]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        for shard in manifest["plan"]["shards"]:
            path = folder / f"{shard['name']}.parquet"
            table = pq.read_table(path, columns=["image_id", "annotation_id", "height", "width",
                                                 "codes"]).to_pydict()
            for image_id, ann_id, h, w, codes in zip(table["image_id"], table["annotation_id"],
                                                     table["height"], table["width"],
                                                     table["codes"]):
                self._codes[(image_id, ann_id)] = None if codes is None else tuple(codes)
                self._sizes[image_id] = (h, w)
        self.folder = folder

    def __len__(self) -> int:
        return len(self._codes)

    def codes(self, image: ImageEntry, masks: Sequence[MaskRef]) -> list[tuple[int, ...]]:
        size = self._sizes.get(image.image_id)
        if size is not None and size != image.size:
            raise ValueError(f"image {image.image_id}: {self.folder} tokenized it at {size}, "
                             f"the annotations say {image.size}")
        out = []
        for mask in masks:
            if mask.annotation_id is None:
                raise ValueError(f"image {image.image_id}: a mask without an annotation id cannot "
                                 f"be looked up in {self.folder}; build this task with a tokenizer")
            key = (image.image_id, mask.annotation_id)
            if key not in self._codes:
                raise ValueError(f"{self.folder}: no codes for image {key[0]} annotation {key[1]}")
            if self._codes[key] is None:
                raise ValueError(f"{self.folder}: image {key[0]} annotation {key[1]} is an empty mask kept "
                                 f"as an absent entry; it has no words")
            out.append(self._codes[key])
        return out

    def crop_codes(self, image: Image.Image, mask: np.ndarray) -> tuple[int, ...]:
        if self._crops is None:
            raise ValueError("zoom-in crops are new masks: give a tokenizer with the Parquet "
                             "(or turn zoom off)")
        return self._crops.crop_codes(image, mask)


def format_words(codes: Sequence[int], vocabulary: Any) -> str:
    """One mask's words."""
    from masktok.words import format_mask_words

    return format_mask_words(list(codes), vocabulary)


def mask_present(where: str, empty: bool, policy: str, result: Any = None) -> bool:
    """Whether the mask ``where`` names is non-empty; an empty one raises under ``"error"``, or
    is counted in ``result`` (when given) under ``"skip"``."""
    if not empty:
        return True
    if policy == "error":
        raise ValueError(f"{where} has an empty mask (pass empty_masks='skip' to leave it out)")
    if result is not None:
        result.skip("empty mask")
    return False


def image_available(entry: ImageEntry, policy: str, result: Any) -> bool:
    """Whether ``entry``'s file exists; a missing one raises under ``"error"``, or is counted in
    ``result`` (a :class:`~masktok.data.sft.base.BuildResult`) under ``"skip"``."""
    from masktok.data.tokenize.shards import MissingImageError

    if entry.exists():
        return True
    if policy == "error":
        raise MissingImageError(f"image {entry.image_id}: {entry.path} not found (pass "
                                f"missing_images='skip' to leave its samples out)")
    result.skip("image file missing")
    return False
