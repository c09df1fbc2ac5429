"""Mask datasets for tokenizer training: every supported annotation format → one record list.

A :class:`MaskRecord` is one instance mask (as COCO RLE) with the file and record it came from,
so any problem met later (undecodable RLE, empty mask) is reported with both. Sources:

=============  ===============================================================================
``coco``       COCO instance JSON (``coco:instances.json[,images/][,crowd=include]``)
``panoptic``   COCO panoptic (``panoptic:panoptic.json,png_dir[,images/][,crowd=include]``)
``yolo``       YOLO-seg folders (``yolo:images_dir,labels_dir[,orphans=ignore]``)
``labelme``    labelme JSON file or folder (``labelme:dir``)
``mask_png``   binary / 8-bit mask PNGs (``mask_png:dir`` or a file; threshold 127)
``sa1b``       SA-1B style per-image JSON with RLE annotations: a file, a folder of them, or
               ``.tar`` shards (``sa1b:shard.tar`` or ``sa1b:dir``)
=============  ===============================================================================

For training, the masks are packed (:func:`pack_masks`) into one compressed ``.npz`` of bit-packed
arrays (downscaled so the long side is ≤ ``max_side``), which :class:`MaskPool` loads onto the
training device in one go; synthetic masks are mixed in by the sampler
(:mod:`masktok.train.tokenizer.mask_sampler`).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from masktok.annotations.records import AnnotationError, ImageAnnotations

SOURCE_KINDS = ("coco", "panoptic", "yolo", "labelme", "mask_png", "sa1b")


@dataclass(frozen=True)
class MaskRecord:
    """One instance mask and where it came from.

    Attributes:
        source: the annotation file (or shard member ``shard.tar:member``).
        record: which record inside it (e.g. ``"annotation id=17"``).
        height, width: mask size (the image's).
        rle: compressed COCO RLE of the mask.
        image_path: the image file when known (needed by image-conditioned tokenizers).
        image_key: groups the masks of one image.
    """

    source: str
    record: str
    height: int
    width: int
    rle: dict
    image_path: str | None = None
    image_key: str = ""

    def mask(self) -> np.ndarray:
        """(H, W) bool; an undecodable RLE raises :class:`AnnotationError` naming file and record."""
        from masktok.masks import rle_to_mask

        try:
            return rle_to_mask(self.rle, size=(self.height, self.width))
        except ValueError as exc:
            raise AnnotationError(self.source, self.record, f"undecodable mask: {exc}") from exc


def _from_images(images: Iterable[ImageAnnotations], source: Path, image_dir: Path | None,
                 include_crowd: bool) -> list[MaskRecord]:
    records = []
    for img in images:
        image_path = str(image_dir / img.file_name) if image_dir is not None else None
        for inst in img.instances:
            if inst.iscrowd and not include_crowd:
                continue
            records.append(MaskRecord(source=str(source), record=f"image {img.image_id} instance id={inst.id}",
                                      height=img.height, width=img.width, rle=inst.mask_rle,
                                      image_path=image_path, image_key=f"{source}:{img.image_id}"))
    return records


def coco_instance_records(json_path: str | Path, image_dir: str | Path | None = None,
                          include_crowd: bool = False) -> list[MaskRecord]:
    """COCO instance JSON → records (crowd regions left out unless ``include_crowd``)."""
    from masktok.annotations import read_coco_instances

    path = Path(json_path)
    return _from_images(read_coco_instances(path), path, Path(image_dir) if image_dir else None, include_crowd)


def coco_panoptic_records(json_path: str | Path, png_dir: str | Path, image_dir: str | Path | None = None,
                          include_crowd: bool = False) -> list[MaskRecord]:
    """COCO panoptic JSON + id PNG folder → records (things and stuff)."""
    from masktok.annotations import read_coco_panoptic

    path = Path(json_path)
    images = read_coco_panoptic(path, png_dir)
    return _from_images(images, path, Path(image_dir) if image_dir else None, include_crowd)


def yolo_seg_records(images_dir: str | Path, labels_dir: str | Path,
                     orphan_labels: str = "error") -> list[MaskRecord]:
    """YOLO-seg folders → records (image paths are the images found).

    ``orphan_labels="ignore"`` leaves out label files without an image (their size is unknown);
    the default raises, naming them.
    """
    from masktok.annotations import read_yolo_seg

    images_dir = Path(images_dir)
    images = read_yolo_seg(images_dir, labels_dir, orphan_labels=orphan_labels)
    return _from_images(images, Path(labels_dir), images_dir, False)


def labelme_records(path: str | Path) -> list[MaskRecord]:
    """labelme JSON file / folder → records (``__ignore__`` regions are not instances)."""
    from masktok.annotations import read_labelme

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return _from_images(read_labelme(path), path, folder, False)


def mask_png_records(path: str | Path, threshold: int = 127) -> list[MaskRecord]:
    """One mask PNG, or every ``*.png`` of a folder (sorted), foreground = pixel > threshold."""
    from masktok.masks import mask_to_rle, read_mask_png

    path = Path(path)
    files = sorted(path.glob("*.png")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no .png mask files found")
    records = []
    for file in files:
        try:
            mask = read_mask_png(file, threshold=threshold)
        except ValueError as exc:
            raise AnnotationError(file, "file", str(exc)) from exc
        records.append(MaskRecord(source=str(file), record="mask", height=mask.shape[0], width=mask.shape[1],
                                  rle=mask_to_rle(mask), image_key=str(file)))
    return records


def _sa1b_document(data: Any, source: str, image_path: str | None) -> list[MaskRecord]:
    """Records of one SA-1B per-image document ``{"image": {...}, "annotations": [...]}``, validated
    by :func:`masktok.annotations.sa1b.parse_sa1b_record` (errors name the source and annotation)."""
    from masktok.annotations.sa1b import parse_sa1b_record

    parsed = parse_sa1b_record(data, source)
    return [MaskRecord(source=source, record=f"annotation #{i} id={inst.id}", height=parsed.height,
                       width=parsed.width, rle=dict(inst.mask_rle), image_path=image_path,
                       image_key=f"{source}:{parsed.image_id}")
            for i, inst in enumerate(parsed.instances)]


def sa1b_records(path: str | Path) -> list[MaskRecord]:
    """SA-1B style annotations: one per-image JSON file, a folder of them, or ``.tar`` shard(s)
    holding ``<name>.json`` (and ``<name>.jpg``) members.

    Image paths are set for loose files (``image.file_name`` beside the JSON); for shards they are
    ``shard.tar:member`` (read with :func:`read_image_bytes`).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json")) + sorted(path.glob("*.tar"))
        if not files:
            raise ValueError(f"{path}: no SA-1B .json files or .tar shards found")
        return [r for f in files for r in sa1b_records(f)]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".tar":
        records = []
        try:
            with tarfile.open(path) as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                for name in sorted(members):
                    if not name.endswith(".json"):
                        continue
                    source = f"{path}:{name}"
                    raw = tar.extractfile(members[name]).read()
                    try:
                        data = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        raise AnnotationError(source, "file", f"invalid JSON ({exc})") from exc
                    file_name = data.get("image", {}).get("file_name") if isinstance(data, dict) else None
                    image_member = str(Path(name).with_name(file_name)) if file_name else None
                    image_path = f"{path}:{image_member}" if image_member in members else None
                    records.extend(_sa1b_document(data, source, image_path))
        except tarfile.TarError as exc:
            raise AnnotationError(path, "file", f"unreadable tar shard ({exc})") from exc
        return records
    from masktok.annotations.records import load_json

    data = load_json(path)
    file_name = data.get("image", {}).get("file_name") if isinstance(data, dict) else None
    return _sa1b_document(data, str(path), str(path.parent / file_name) if file_name else None)


def read_image_bytes(image_path: str) -> bytes:
    """Bytes of an image file, or of a ``shard.tar:member`` inside an SA-1B shard."""
    if ".tar:" in image_path:
        shard, member = image_path.split(".tar:", 1)
        with tarfile.open(shard + ".tar") as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise ValueError(f"{image_path}: not a file inside the shard")
            return handle.read()
    return Path(image_path).read_bytes()


def parse_source(spec: str) -> tuple[str, list[str]]:
    """``"kind:path[,path…]"`` → (kind, paths); see the module table for each kind's paths."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        raise ValueError(f"data source {spec!r} must look like KIND:PATH[,PATH…] with KIND in {SOURCE_KINDS}")
    return kind, [p for p in rest.split(",") if p]


_OPTIONS = {"yolo": {"orphans": ("error", "ignore")}, "coco": {"crowd": ("exclude", "include")},
            "panoptic": {"crowd": ("exclude", "include")}}


def load_source(spec: str) -> list[MaskRecord]:
    """Records of one source spec (see :func:`parse_source`).

    Options ride along as ``key=value`` items: ``orphans=ignore`` (yolo: leave out label files
    without an image) and ``crowd=include`` (coco, panoptic: keep crowd regions).
    """
    kind, items = parse_source(spec)
    options = {k: v for k, _, v in (i.partition("=") for i in items if "=" in i)}
    paths = [i for i in items if "=" not in i]
    allowed = _OPTIONS.get(kind, {})
    for key, value in options.items():
        if key not in allowed or value not in allowed[key]:
            raise ValueError(f"data source {spec!r}: unknown option {key}={value} for {kind} "
                             f"(allowed: {allowed or 'none'})")
    arity = {"coco": (1, 2), "panoptic": (2, 3), "yolo": (2, 2), "labelme": (1, 1), "mask_png": (1, 1),
             "sa1b": (1, 1)}[kind]
    if not arity[0] <= len(paths) <= arity[1]:
        raise ValueError(f"data source {spec!r}: {kind} takes {arity[0]}–{arity[1]} comma-separated paths")
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"data source {spec!r}: {p} does not exist")
    crowd = options.get("crowd") == "include"
    if kind == "coco":
        return coco_instance_records(*paths, include_crowd=crowd)
    if kind == "panoptic":
        return coco_panoptic_records(*paths, include_crowd=crowd)
    if kind == "yolo":
        return yolo_seg_records(*paths, orphan_labels=options.get("orphans", "error"))
    if kind == "labelme":
        return labelme_records(paths[0])
    if kind == "mask_png":
        return mask_png_records(paths[0])
    return sa1b_records(paths[0])


def load_sources(specs: Sequence[str]) -> list[MaskRecord]:
    """Records of several sources, concatenated in order."""
    return [r for spec in specs for r in load_source(spec)]


# ---- packing -------------------------------------------------------------------------------------
def _downscale(mask: np.ndarray, max_side: int) -> np.ndarray:
    """Bilinear (area-aware) downscale so the long side is ≤ max_side, then a 0.5 threshold."""
    h, w = mask.shape
    if max(h, w) <= max_side:
        return mask
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = torch.from_numpy(mask).float()[None, None]
    return (F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0] >= 0.5).numpy()


def pack_masks(records: Sequence[MaskRecord], path: str | Path, max_side: int = 640) -> dict[str, int]:
    """Decode every record, downscale to long side ≤ ``max_side``, and write one compressed ``.npz``.

    A record that decodes to an empty mask (or shrinks to nothing) raises an
    :class:`AnnotationError` naming its file and record: nothing is skipped silently.

    Returns:
        counts: ``{"masks": N, "bytes": file size}``.
    """
    if max_side < 16:
        raise ValueError(f"max_side must be ≥ 16, got {max_side}")
    bits, offsets, shapes, names = [], [0], [], []
    for rec in records:
        mask = rec.mask()
        if not mask.any():
            raise AnnotationError(rec.source, rec.record, "empty mask")
        small = _downscale(mask, max_side)
        if not small.any():
            raise AnnotationError(rec.source, rec.record, f"mask vanishes when downscaled to ≤ {max_side} px "
                                                          f"(area {int(mask.sum())} px); raise max_side")
        packed = np.packbits(small.reshape(-1))
        bits.append(packed)
        offsets.append(offsets[-1] + packed.size)
        shapes.append(small.shape)
        names.append(f"{rec.source}|{rec.record}")
    if not bits:
        raise ValueError("no masks to pack")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, bits=np.concatenate(bits), offsets=np.asarray(offsets, dtype=np.int64),
                        shapes=np.asarray(shapes, dtype=np.int32), names=np.asarray(names))
    return {"masks": len(bits), "bytes": path.stat().st_size}


@dataclass
class MaskPool:
    """Real masks resident on one device, ready for batched augmentation.

    Attributes:
        masks: (N, H_max, W_max) uint8 {0, 1}, each mask at the top-left of a zero canvas.
        sizes: (N, 2) int64 (height, width) of each mask.
        boxes: (N, 4) int64 inclusive x1, y1, x2, y2.
        names: ``"source|record"`` of each mask.
    """

    masks: torch.Tensor
    sizes: torch.Tensor
    boxes: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return self.masks.shape[0]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], names: Sequence[str],
                    device: str | torch.device = "cpu") -> "MaskPool":
        """Build from (H_i, W_i) bool arrays (all non-empty)."""
        if not arrays:
            raise ValueError("a mask pool needs at least one mask")
        hmax = max(a.shape[0] for a in arrays)
        wmax = max(a.shape[1] for a in arrays)
        canvas = np.zeros((len(arrays), hmax, wmax), dtype=np.uint8)
        boxes = np.zeros((len(arrays), 4), dtype=np.int64)
        for i, (a, name) in enumerate(zip(arrays, names)):
            rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
            if rows.size == 0:
                raise ValueError(f"mask {name} is empty")
            canvas[i, :a.shape[0], :a.shape[1]] = a
            boxes[i] = (cols[0], rows[0], cols[-1], rows[-1])
        canvas, boxes = torch.from_numpy(canvas), torch.from_numpy(boxes)
        sizes = torch.tensor([a.shape for a in arrays], dtype=torch.long)
        return cls(canvas.to(device), sizes.to(device), boxes.to(device), list(names))

    @classmethod
    def from_records(cls, records: Sequence[MaskRecord], max_side: int = 640,
                     device: str | torch.device = "cpu") -> "MaskPool":
        arrays, names = [], []
        for rec in records:
            mask = rec.mask()
            if not mask.any():
                raise AnnotationError(rec.source, rec.record, "empty mask")
            arrays.append(_downscale(mask, max_side))
            names.append(f"{rec.source}|{rec.record}")
        return cls.from_arrays(arrays, names, device)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "MaskPool":
        """Load a file written by :func:`pack_masks`."""
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
            bits, offsets, shapes, names = data["bits"], data["offsets"], data["shapes"], data["names"]
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a packed mask file (bits/offsets/shapes/names): {exc}") from exc
        if offsets.shape != (len(shapes) + 1,) or offsets[-1] != bits.size:
            raise ValueError(f"{path}: offsets do not match the packed bits (corrupt file)")
        arrays = []
        for i, (h, w) in enumerate(shapes):
            chunk = np.unpackbits(bits[offsets[i]:offsets[i + 1]])[: h * w]
            if chunk.size != h * w:
                raise ValueError(f"{path}: mask #{i} ({names[i]}) holds fewer bits than {h}×{w}")
            arrays.append(chunk.reshape(h, w).astype(bool))
        return cls.from_arrays(arrays, [str(n) for n in names], device)

    def subset(self, indices: Sequence[int]) -> "MaskPool":
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.masks.device)
        return MaskPool(self.masks[idx], self.sizes[idx], self.boxes[idx], [self.names[i] for i in idx.tolist()])

    def full_masks(self, index: int) -> np.ndarray:
        """Mask ``index`` at its own size: (H, W) bool."""
        h, w = self.sizes[index].tolist()
        return self.masks[index, :h, :w].bool().cpu().numpy()


def read_image(image_path: str):
    """A PIL RGB image from a file or an SA-1B shard member."""
    from PIL import Image

    return Image.open(io.BytesIO(read_image_bytes(image_path))).convert("RGB")
