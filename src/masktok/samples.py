"""The sample images and masks bundled with masktok (``masktok/assets/samples``).

Five COCO val2014 photographs (CC BY / CC BY-SA, attribution in the folder's README.md) with
twelve instance masks stored as COCO RLE in ``samples.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image

from masktok.masks.rle import rles_to_masks

__all__ = ["load_samples", "samples_dir"]


def samples_dir() -> Any:
    """The bundled samples folder (an importlib ``Traversable``; a real folder when installed
    from a source checkout or a wheel)."""
    return resources.files("masktok") / "assets" / "samples"


def load_samples() -> list[tuple[Image.Image, np.ndarray, dict]]:
    """Every bundled sample as ``(image, masks, metadata)``.

    Returns:
        A list, one entry per image, in ``samples.json`` order:

        * image: RGB ``PIL.Image`` of size (W, H);
        * masks: (N, H, W) bool, one per listed mask;
        * metadata: ``file``, ``height``, ``width``, ``coco_image_id``, ``coco_url``,
          ``flickr_url``, ``license`` (``name``, ``url``), ``categories`` (N names),
          ``category_ids`` (N ints), ``coco_annotation_ids`` and ``rles`` (N COCO RLE dicts).
    """
    folder = samples_dir()
    doc = json.loads((folder / "samples.json").read_text(encoding="utf-8"))
    out = []
    for entry in doc["images"]:
        with (folder / entry["file"]).open("rb") as f:
            image = Image.open(f)
            image.load()
        image = image.convert("RGB")
        h, w = entry["height"], entry["width"]
        if image.size != (w, h):
            raise ValueError(f"samples.json: {entry['file']} is {image.size[1]}x{image.size[0]} "
                             f"but listed as {h}x{w}")
        rles = [m["rle"] for m in entry["masks"]]
        masks = rles_to_masks(rles, size=(h, w))
        meta = {k: v for k, v in entry.items() if k != "masks"}
        meta["categories"] = [m["category"] for m in entry["masks"]]
        meta["category_ids"] = [m["category_id"] for m in entry["masks"]]
        meta["coco_annotation_ids"] = [m["coco_annotation_id"] for m in entry["masks"]]
        meta["rles"] = rles
        out.append((image, masks, meta))
    return out
