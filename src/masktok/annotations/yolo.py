"""Reader for YOLO-seg label folders: one ``.txt`` per image, one object per line
``class x1 y1 x2 y2 ...`` with coordinates normalised by the image width and height.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Sequence

from PIL import Image, UnidentifiedImageError

from masktok.annotations.records import AnnotationError, ImageAnnotations, Instance
from masktok.masks.boxes import rle_to_box
from masktok.masks.polygons import check_yolo_rings, polygons_to_rle
from masktok.masks.rle import rle_area

__all__ = ["read_yolo_seg", "IMAGE_SUFFIXES"]

#: Image file suffixes looked for in the images folder (lower case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

_EXIF_ORIENTATION = 0x0112


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) as displayed: EXIF orientations 5–8 (90° turns) swap the stored sides,
    the convention YOLO-seg tools use when they normalise coordinates."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise AnnotationError(path, "image", f"not a readable image ({exc})") from exc
    if w == 0 or h == 0:
        raise AnnotationError(path, "image", "empty image size")
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _parse_line(line: str, height: int, width: int) -> tuple[int, dict]:
    fields = line.split()
    try:
        cls_value = float(fields[0])
    except ValueError:
        raise ValueError(f"class {fields[0]!r} is not a number") from None
    if not cls_value.is_integer() or cls_value < 0:
        raise ValueError(f"class {fields[0]!r} is not a non-negative integer")
    try:
        coords = [float(v) for v in fields[1:]]
    except ValueError:
        raise ValueError("coordinates must be numbers") from None
    if len(coords) == 4:
        raise ValueError("holds a box (class cx cy w h), not a polygon")
    (ring,) = check_yolo_rings([coords], "polygon")
    pixels = ring.reshape(-1, 2) * [width, height]
    return int(cls_value), polygons_to_rle([pixels.ravel().tolist()], height, width,
                                          name="polygon")


def read_yolo_seg(images_dir: str | Path, labels_dir: str | Path,
                  names: Sequence[str] | Mapping[int, str] | None = None,
                  orphan_labels: Literal["error", "ignore"] = "error"
                  ) -> list[ImageAnnotations]:
    """A YOLO-seg dataset split → one :class:`ImageAnnotations` per image (sorted by path).

    Args:
        images_dir: folder of images (searched recursively for :data:`IMAGE_SUFFIXES`).
        labels_dir: folder of labels mirroring it: ``images_dir/a/b.jpg`` ↔ ``labels_dir/a/b.txt``.
        names: class names by index; when given, every class must have a name.
        orphan_labels: what to do with label files that have no image: ``"error"`` (default)
            raises, so a misnamed image cannot drop its annotations unnoticed; ``"ignore"``
            leaves them out, as YOLO trainers do (they only look up labels of images).

    An image without a label file is a background image (YOLO's convention): no instances. Each
    line is one instance (``id`` = its 1-based line number, ``category_id`` = the class,
    ``area`` = mask pixel count); blank lines are allowed.

    Raises:
        AnnotationError: naming the label file and line: unparsable numbers, odd coordinate
            count, < 3 points, coordinates outside [0, 1], a box line, unknown class name; or a
            label file with no image (unless ``orphan_labels="ignore"``).
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for d, what in ((images_dir, "images_dir"), (labels_dir, "labels_dir")):
        if not d.is_dir():
            raise FileNotFoundError(f"{what}: {d} is not a folder")
    if orphan_labels not in ("error", "ignore"):
        raise ValueError(f"orphan_labels: expected 'error' or 'ignore', got {orphan_labels!r}")
    if isinstance(names, (str, bytes)):
        raise ValueError("names: expected a list of class names or a {class: name} mapping, got "
                         "a string")
    name_map = dict(enumerate(names)) if isinstance(names, Sequence) else names
    image_paths = sorted(p for p in images_dir.rglob("*")
                         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    stems = {p.relative_to(images_dir).with_suffix("") for p in image_paths}
    orphans = sorted(p for p in labels_dir.rglob("*.txt")
                     if p.relative_to(labels_dir).with_suffix("") not in stems)
    if orphans and orphan_labels == "error":
        raise AnnotationError(orphans[0], "file", f"label file has no image in {images_dir} "
                              f"({len(orphans)} such file(s): "
                              f"{', '.join(p.name for p in orphans[:5])}); pass "
                              "orphan_labels='ignore' to leave them out")
    out = []
    for image_path in image_paths:
        rel = image_path.relative_to(images_dir)
        height, width = _image_size(image_path)
        label_path = labels_dir / rel.with_suffix(".txt")
        instances = []
        if label_path.is_file():
            text = label_path.read_text(encoding="utf-8")
            for line_no, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    cls, rle = _parse_line(line, height, width)
                    if name_map is not None and cls not in name_map:
                        raise ValueError(f"class {cls} has no name in names")
                except ValueError as exc:
                    raise AnnotationError(label_path, f"line {line_no}", str(exc)) from None
                instances.append(Instance(
                    mask_rle=rle, category_id=cls, id=line_no, area=float(rle_area(rle)),
                    iscrowd=False, box=rle_to_box(rle),
                    category_name=None if name_map is None else name_map[cls]))
        out.append(ImageAnnotations(image_id=rel.with_suffix("").as_posix(),
                                    file_name=rel.as_posix(), height=height, width=width,
                                    instances=instances))
    return out
