"""Input shards of a mask dataset: what ``masktok tokenize-dataset`` turns into one Parquet each.

A :class:`DatasetSource` names a dataset in one of the supported layouts:

========== ============================================================ =====================
kind       inputs                                                       one shard is
========== ============================================================ =====================
coco       COCO instances JSON + image folder                           ``images_per_shard``
panoptic   COCO panoptic JSON + id-PNG folder + image folder            ``images_per_shard``
refs       RefCOCO-style refs (``refs(*).p`` / JSON, gRefCOCO too) +     ``images_per_shard``
           COCO instances JSON + image folder; only referred instances
yolo       YOLO-seg images folder + labels folder                       ``images_per_shard``
sa1b       folder of SA-1B per-image JSONs (images beside them)          ``images_per_shard``
sa1b-tar   SA-1B ``sa_NNNNNN.tar`` shards                                one tar
========== ============================================================ =====================

:func:`plan_shards` fixes the shard list (names ``part-00000``… or the tar stems); a shard's
:class:`ShardImage` items are light, picklable references that :meth:`ShardImage.load` turns into
annotations and image bytes/paths inside DataLoader workers. Images keep the source's order
(COCO/panoptic: file order; refs: COCO file order; YOLO/SA-1B: sorted paths; tars: tar order).

Output side: the Parquet schema of a shard file (:func:`parquet_schema`), its atomic writing and
completeness check, and the codebook-usage summary over finished shards (:func:`codebook_usage`).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from masktok.annotations import (
    ImageAnnotations,
    read_coco_instances,
    read_coco_panoptic,
    read_yolo_seg,
)
from masktok.annotations.sa1b import read_sa1b_json, read_sa1b_tar_member, sa1b_tar_members
from masktok.errors import require_module

SOURCE_KINDS = ("coco", "panoptic", "refs", "yolo", "sa1b", "sa1b-tar")

# Which fields each kind needs (besides ``kind``). ``images`` is optional where the annotations
# alone hold the masks (coco, panoptic, refs): image-free tokenizers (HiMTok) never read them.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "coco": ("annotations",),
    "panoptic": ("annotations", "panoptic_pngs"),
    "refs": ("annotations", "instances"),
    "yolo": ("images", "labels"),
    "sa1b": ("images",),
    "sa1b-tar": ("tars",),
}


class MissingImageError(ValueError):
    """An image an annotation names is not on disk (or not in its tar)."""


@dataclass(frozen=True)
class DatasetSource:
    """A mask dataset on disk (see the module table for what each ``kind`` needs).

    Attributes:
        kind: one of :data:`SOURCE_KINDS`.
        annotations: COCO instances / panoptic JSON, or the refs file (``refs``).
        images: the image folder (``sa1b``: the folder of per-image JSONs and JPEGs); optional
            for coco, panoptic and refs, whose masks need no image (HiMTok reads none).
        instances: COCO instances JSON the refs point into (``refs``).
        panoptic_pngs: folder of panoptic id PNGs (``panoptic``).
        labels: YOLO-seg labels folder (``yolo``).
        class_names: YOLO class names by index (optional).
        orphan_labels: YOLO label files without an image: ``"error"`` (default) or ``"ignore"``.
        split: keep only refs of this split (``refs``; None keeps all).
        tars: SA-1B tar shards (``sa1b-tar``), in the order given.
    """

    kind: str
    annotations: Path | None = None
    images: Path | None = None
    instances: Path | None = None
    panoptic_pngs: Path | None = None
    labels: Path | None = None
    class_names: tuple[str, ...] | None = None
    orphan_labels: str = "error"
    split: str | None = None
    tars: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"kind: expected one of {SOURCE_KINDS}, got {self.kind!r}")
        for name in ("annotations", "images", "instances", "panoptic_pngs", "labels"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "tars", tuple(Path(t) for t in self.tars))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
        missing = [name for name in _REQUIRED[self.kind] if not getattr(self, name)]
        if missing:
            raise ValueError(f"{self.kind} source: missing {', '.join(missing)}")
        for name in (*_REQUIRED[self.kind], "images"):
            paths = getattr(self, name)
            for path in paths if isinstance(paths, tuple) else (paths,):
                if path is not None and not path.exists():
                    raise FileNotFoundError(f"{self.kind} source: {name} {path} does not exist")

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (recorded in the output's manifest)."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("annotations", "images", "instances", "panoptic_pngs", "labels"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value.resolve())
        if self.class_names is not None:
            out["class_names"] = list(self.class_names)
        if self.kind == "yolo":
            out["orphan_labels"] = self.orphan_labels
        if self.split is not None:
            out["split"] = self.split
        if self.tars:
            out["tars"] = [str(t.resolve()) for t in self.tars]
        return out


@dataclass(frozen=True)
class LoadedImage:
    """One image's annotations and where its pixels are.

    Exactly one of ``image_path`` / ``image_bytes`` is set.
    """

    annotations: ImageAnnotations
    image_path: Path | None = None
    image_bytes: bytes | None = None

    @property
    def image_exists(self) -> bool:
        return self.image_bytes is not None or (self.image_path is not None
                                                 and self.image_path.is_file())

    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB at the annotations' size (EXIF-rotated only if that is what makes
        the sizes agree).

        Raises:
            MissingImageError: the file does not exist.
            ValueError: unreadable image, or a size that matches the annotations neither as
                stored nor EXIF-rotated.
        """
        where = self.image_path if self.image_path is not None else "image bytes"
        if self.image_bytes is None and not self.image_exists:
            raise MissingImageError(f"image {self.annotations.image_id!r}: {where} not found")
        try:
            source = io.BytesIO(self.image_bytes) if self.image_bytes is not None else self.image_path
            with Image.open(source) as img:
                img.load()
                size = (self.annotations.height, self.annotations.width)
                if (img.height, img.width) != size:
                    rotated = ImageOps.exif_transpose(img)
                    if (rotated.height, rotated.width) != size:
                        raise ValueError(f"image {self.annotations.image_id!r}: {where} is "
                                         f"{img.height}x{img.width} but its annotations are "
                                         f"{size[0]}x{size[1]}")
                    img = rotated
                return np.array(img.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"image {self.annotations.image_id!r}: {where} is not a readable "
                             f"image ({exc})") from None


@dataclass(frozen=True)
class ShardImage:
    """A reference to one image of a shard, cheap to pickle into DataLoader workers.

    In-memory sources carry their ``annotations``; SA-1B items carry a JSON path or a tar member.
    """

    annotations: ImageAnnotations | None = None
    image_path: Path | None = None
    json_path: Path | None = None
    tar_path: Path | None = None
    json_member: str | None = None
    image_member: str | None = None

    def load(self) -> LoadedImage:
        if self.annotations is not None:
            return LoadedImage(self.annotations, image_path=self.image_path)
        if self.json_path is not None:
            annotations = read_sa1b_json(self.json_path)
            return LoadedImage(annotations, image_path=self.json_path.parent / annotations.file_name)
        assert self.tar_path is not None and self.json_member is not None
        annotations, data = read_sa1b_tar_member(_open_tar(str(self.tar_path)), self.tar_path,
                                                 self.json_member, str(self.image_member))
        return LoadedImage(annotations, image_bytes=data)


@lru_cache(maxsize=4)
def _open_tar(path: str) -> tarfile.TarFile:
    """An open tar per process (each DataLoader worker opens its own)."""
    return tarfile.open(path, "r:*")


@dataclass(frozen=True)
class InputShard:
    """One unit of output: ``{name}.parquet``. ``num_images`` is None until a tar is listed."""

    index: int
    name: str
    num_images: int | None


@dataclass
class ShardPlan:
    """The shards of a source, and the images of each."""

    source: DatasetSource
    images_per_shard: int
    shards: list[InputShard]
    _items: list[ShardImage] = field(default_factory=list, repr=False)

    def images(self, shard: InputShard) -> list[ShardImage]:
        """The images of ``shard``, in order."""
        if self.source.kind == "sa1b-tar":
            tar_path = self.source.tars[shard.index]
            return [ShardImage(tar_path=tar_path, json_member=j, image_member=i)
                    for j, i in sa1b_tar_members(tar_path)]
        start = shard.index * self.images_per_shard
        return self._items[start:start + self.images_per_shard]

    def describe(self) -> dict[str, Any]:
        return {"images_per_shard": self.images_per_shard,
                "shards": [{"name": s.name, "num_images": s.num_images} for s in self.shards]}


def _refs_items(source: DatasetSource) -> list[ShardImage]:
    from masktok.annotations.refcoco import load_refs

    assert source.annotations is not None
    referred: set[Any] = set()
    for k, ref in enumerate(load_refs(source.annotations)):
        if source.split is not None and ref.get("split") != source.split:
            continue
        if "ann_id" not in ref:
            raise ValueError(f"{source.annotations}: ref #{k} has no 'ann_id'")
        ann_ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
        referred.update(a for a in ann_ids if a != -1)  # gRefCOCO marks no-target refs with -1
    if not referred:
        raise ValueError(f"{source.annotations}: no referred annotation"
                         + (f" in split {source.split!r}" if source.split else ""))
    items, found = [], set()
    for image in read_coco_instances(source.instances):  # type: ignore[arg-type]
        kept = [inst for inst in image.instances if inst.id in referred]
        found.update(inst.id for inst in kept)
        if kept:
            subset = ImageAnnotations(image.image_id, image.file_name, image.height, image.width,
                                      kept, image.ignore_rle)
            items.append(ShardImage(subset, _image_path(source, image.file_name)))
    unknown = sorted(referred - found, key=str)
    if unknown:
        raise ValueError(f"{source.annotations}: refs point to annotation ids missing from "
                         f"{source.instances}: {unknown[:5]}")
    return items


def _memory_items(source: DatasetSource) -> list[ShardImage]:
    if source.kind == "coco":
        images = read_coco_instances(source.annotations)  # type: ignore[arg-type]
    elif source.kind == "panoptic":
        images = read_coco_panoptic(source.annotations, source.panoptic_pngs)  # type: ignore[arg-type]
    elif source.kind == "yolo":
        images = read_yolo_seg(source.images, source.labels, names=source.class_names,  # type: ignore[arg-type]
                               orphan_labels=source.orphan_labels)  # type: ignore[arg-type]
    else:
        return _refs_items(source)
    return [ShardImage(image, _image_path(source, image.file_name)) for image in images]


def _image_path(source: DatasetSource, file_name: str) -> Path | None:
    return source.images / file_name if source.images is not None else None


def plan_shards(source: DatasetSource, images_per_shard: int = 1000) -> ShardPlan:
    """Split ``source`` into shards (see the module docstring).

    Raises:
        ValueError: ``images_per_shard`` < 1, or a source with no image.
    """
    if isinstance(images_per_shard, bool) or not isinstance(images_per_shard, int) \
            or images_per_shard < 1:
        raise ValueError(f"images_per_shard: expected a positive int, got {images_per_shard!r}")
    if source.kind == "sa1b-tar":
        names = [t.name.split(".")[0] for t in source.tars]
        if len(set(names)) != len(names):
            raise ValueError(f"tars: shard names must be unique, got {names}")
        shards = [InputShard(i, name, None) for i, name in enumerate(names)]
        return ShardPlan(source, images_per_shard, shards)
    if source.kind == "sa1b":
        assert source.images is not None
        paths = sorted(source.images.rglob("*.json"))
        items = [ShardImage(json_path=p) for p in paths]
    else:
        items = _memory_items(source)
    if not items:
        raise ValueError(f"{source.kind} source: no image to tokenize")
    shards = []
    for index, start in enumerate(range(0, len(items), images_per_shard)):
        count = min(images_per_shard, len(items) - start)
        shards.append(InputShard(index, f"part-{index:05d}", count))
    return ShardPlan(source, images_per_shard, shards, items)


def source_images(source: DatasetSource) -> list[LoadedImage]:
    """Every image of an annotation-file source (coco, panoptic, refs, yolo) with its
    annotations, in source order (for the SFT builders)."""
    if source.kind in ("sa1b", "sa1b-tar"):
        raise ValueError(f"{source.kind} source: read it shard by shard with plan_shards")
    return [item.load() for item in _memory_items(source)]


def assign_shards(shards: list[InputShard], rank: int, world_size: int) -> list[InputShard]:
    """The shards rank ``rank`` of ``world_size`` processes (round robin)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank/world_size: expected 0 <= rank < world_size, got {rank}/{world_size}")
    return [s for s in shards if s.index % world_size == rank]


# ---------------------------------------------------------------------------------------------
# Output shard files (Parquet)
# ---------------------------------------------------------------------------------------------
FORMAT_VERSION = 2  # 2: vocabulary fields min_codes, pad_digits; null codes for absent masks


def parquet_schema() -> Any:
    """The columns of every shard file (pyarrow schema).

    ``image_id`` / ``annotation_id`` are strings (COCO ints, YOLO file stems and SA-1B ids in one
    type); ``codes`` holds one small int per code position (level order for SAMTok, coarse to
    fine for HiMTok); ``words`` the mask words; ``box`` the tight inclusive ``[x1, y1, x2, y2]``
    in pixels; ``area`` the area the source states (else the pixel count). ``codes``, ``words``
    and ``box`` are null for an empty mask kept as an absent entry (``empty_masks="keep"``).
    """
    pa = pyarrow_module()
    return pa.schema([
        ("image_id", pa.string()), ("annotation_id", pa.string()), ("file_name", pa.string()),
        ("height", pa.int32()), ("width", pa.int32()), ("category_id", pa.int64()),
        ("category_name", pa.string()), ("iscrowd", pa.bool_()),
        ("codes", pa.list_(pa.uint16())), ("words", pa.string()),
        ("box", pa.list_(pa.int32(), 4)), ("area", pa.float64()),
    ])


def pyarrow_module() -> Any:
    """pyarrow (with its Parquet module), or a MissingDependencyError naming the extra."""
    require_module("pyarrow.parquet", "writing Parquet", "train")
    import pyarrow

    return pyarrow


def shard_path(output_dir: Path, shard: InputShard) -> Path:
    """Where ``shard``'s Parquet file goes."""
    return output_dir / f"{shard.name}.parquet"


def shard_is_complete(path: Path) -> bool:
    """A finished shard: a readable Parquet file carrying masktok's completion metadata."""
    if not path.is_file():
        return False
    pq = pyarrow_module().parquet
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # any read failure means a damaged file, which is redone
        return False
    return b"masktok.num_images" in metadata


def write_shard(path: Path, rows: list[dict], stats: dict[str, int], vocabulary: Any) -> None:
    """Write one finished shard atomically (``*.tmp`` then rename); ``stats`` (image and skip
    counts) and the vocabulary go into the file's metadata."""
    pa = pyarrow_module()
    schema = parquet_schema().with_metadata({
        "masktok.format_version": str(FORMAT_VERSION),
        "masktok.vocabulary": json.dumps(vocabulary_fields(vocabulary)),
        **{f"masktok.{k}": str(v) for k, v in stats.items()},
    })
    columns = {name: [row[name] for row in rows] for name in schema.names}
    table = pa.Table.from_pydict(columns, schema=schema)
    tmp = path.with_name(path.name + ".tmp")
    pa.parquet.write_table(table, tmp)
    os.replace(tmp, path)


def vocabulary_fields(vocabulary: Any) -> dict[str, Any]:
    """The fields that rebuild a :class:`~masktok.words.MaskVocabulary`."""
    return vocabulary.to_dict()


# ---------------------------------------------------------------------------------------------
# Codebook usage
# ---------------------------------------------------------------------------------------------
@dataclass
class PositionUsage:
    """How one code position uses its codebook: distinct codes, their share of the codebook,
    the perplexity exp(entropy) of the code distribution and the most frequent codes."""

    position: int
    masks: int
    used: int
    used_fraction: float
    perplexity: float
    top: list[tuple[int, int]]


@dataclass
class CodebookUsage:
    """Per-position usage over a whole output; ``distinct_words``: distinct full code tuples
    (None when the word space is too large to count exactly)."""

    masks: int
    codebook_size: int
    positions: list[PositionUsage]
    distinct_words: int | None


def codebook_usage(chunks: Any, vocabulary: Any, top: int = 5) -> CodebookUsage:
    """Usage from an iterable of code-row lists (each row a list of codes, position order)."""
    size = vocabulary.codebook_size
    hist = np.zeros((vocabulary.max_codes, size), dtype=np.int64)
    count_words = size ** vocabulary.max_codes <= 1 << 24
    words = np.zeros(size ** vocabulary.max_codes if count_words else 0, dtype=np.int64)
    masks = 0
    for rows in chunks:
        rows = [row for row in rows if row is not None]  # null: an empty mask kept as an absent entry
        for row in rows:
            if len(row) > vocabulary.max_codes or min(row) < 0 or max(row) >= size:
                raise ValueError(f"codes {row} do not fit the {vocabulary.name} vocabulary")
            hist[np.arange(len(row)), row] += 1
            if count_words and len(row) == vocabulary.max_codes:
                words[int(np.ravel_multi_index(tuple(row), (size,) * len(row)))] += 1
        masks += len(rows)
    positions = []
    for p in range(vocabulary.max_codes):
        total = int(hist[p].sum())
        if total == 0:
            continue
        probs = hist[p][hist[p] > 0] / total
        order = np.argsort(-hist[p], kind="stable")[:top]
        positions.append(PositionUsage(
            position=p, masks=total, used=int((hist[p] > 0).sum()),
            used_fraction=float((hist[p] > 0).mean()),
            perplexity=float(np.exp(-(probs * np.log(probs)).sum())),
            top=[(int(c), int(hist[p][c])) for c in order if hist[p][c] > 0]))
    return CodebookUsage(masks=masks, codebook_size=size, positions=positions,
                         distinct_words=int((words > 0).sum()) if count_words else None)


def usage_table(usage: CodebookUsage) -> Any:
    """A rich table of :class:`CodebookUsage` for the console."""
    from rich.table import Table

    title = f"codebook usage over {usage.masks} masks"
    if usage.distinct_words is not None:
        title += f" ({usage.distinct_words} distinct words)"
    table = Table(title=title)
    for column in ("position", "masks", "codes used", "of codebook", "perplexity", "top codes"):
        table.add_column(column, justify="right" if column != "top codes" else "left")
    for p in usage.positions:
        table.add_row(str(p.position), str(p.masks), f"{p.used}/{usage.codebook_size}",
                      f"{100 * p.used_fraction:.1f} %", f"{p.perplexity:.1f}",
                      ", ".join(f"{c}×{n}" for c, n in p.top))
    return table
