"""What every annotation reader returns: images with their instance masks (as COCO RLE)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masktok.masks.rle import rle_to_mask, rles_to_masks

__all__ = ["AnnotationError", "Instance", "ImageAnnotations", "load_json"]


class AnnotationError(ValueError):
    """A malformed annotation file or record.

    Attributes:
        path: the file.
        record: which record (e.g. ``"annotation id=1774 (#12)"`` or ``"line 3"``).
        problem: what is wrong with it.
    """

    def __init__(self, path: str | Path, record: str, problem: str):
        self.path = str(path)
        self.record = record
        self.problem = problem
        super().__init__(f"{self.path}: {record}: {problem}")


@dataclass(frozen=True)
class Instance:
    """One annotated object.

    Attributes:
        mask_rle: compressed COCO RLE ``{"size": [H, W], "counts": str}`` at the image size.
        category_id: the dataset's category id (YOLO: class index).
        id: the annotation id (COCO/panoptic), line number (YOLO-seg) or instance number
            (labelme, numbered as labelme's own VOC export numbers its instances).
        area: the area the source file states (COCO ``area``), else the mask's pixel count.
        iscrowd: COCO crowd flag (False where the format has none).
        box: tight inclusive ``(x1, y1, x2, y2)`` of the mask; None for an empty mask.
        category_name: the category's name when the source (or the caller) provides one.
    """

    mask_rle: dict
    category_id: int
    id: int | str
    area: float
    iscrowd: bool
    box: tuple[int, int, int, int] | None
    category_name: str | None = None

    def mask(self) -> np.ndarray:
        """(H, W) bool."""
        return rle_to_mask(self.mask_rle)


@dataclass(frozen=True)
class ImageAnnotations:
    """One image and its instances.

    Attributes:
        image_id: the dataset's image id (COCO int; the file stem for YOLO-seg and labelme).
        file_name: the image file as the annotation names it.
        height, width: the image size every instance mask has.
        instances: in file order.
        ignore_rle: COCO RLE of regions marked "ignore" (labelme ``__ignore__``), else None.
    """

    image_id: int | str
    file_name: str
    height: int
    width: int
    instances: list[Instance]
    ignore_rle: dict | None = None

    def masks(self) -> np.ndarray:
        """(N, H, W) bool, one per instance."""
        return rles_to_masks([i.mask_rle for i in self.instances], size=(self.height, self.width))

    def ignore_mask(self) -> np.ndarray:
        """(H, W) bool of the ignore regions (all False when there are none)."""
        if self.ignore_rle is None:
            return np.zeros((self.height, self.width), dtype=bool)
        return rle_to_mask(self.ignore_rle, size=(self.height, self.width))


def load_json(path: str | Path) -> Any:
    """Parse a JSON file (gzip-compressed when its name ends in ``.gz``); a syntax error becomes
    an :class:`AnnotationError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return json.load(f)
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, f"line {exc.lineno}", f"invalid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, "file", "not UTF-8 text") from exc
    except (gzip.BadGzipFile, EOFError) as exc:  # not a gzip file, or one cut short
        raise AnnotationError(path, "file", f"unreadable gzip file ({exc})") from exc


def require_int(value: Any, what: str, positive: bool = False) -> int:
    """An int (not bool) from JSON, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{what} must be positive, got {value}")
    return value


def read_jsonl(path: str | Path) -> list[dict]:
    """A JSON-lines file → its records (blank lines skipped); bad JSON names the line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n}: invalid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: line {n}: expected a JSON object")
            out.append(rec)
    return out
