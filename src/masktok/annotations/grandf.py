"""GranD-f grounded captions (GLaMM's ``GranDf_HA_GCG_train.json`` and its siblings): a list of
``{"file_name", "caption", "groundings": {phrase: {"token_positives": [start, end],
"rle_masks": [RLE, …]}}}``; the masks of one phrase are merged into one.

Every malformed record raises :class:`masktok.annotations.AnnotationError` (a ``ValueError``)
naming the file and the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masktok.annotations.records import AnnotationError, load_json
from masktok.masks import mask_to_rle, rles_to_masks


@dataclass(frozen=True)
class GroundedCaption:
    """One image's caption with grounded phrases (GCG training data).

    Attributes:
        spans: ``(start, end)`` character offsets of each phrase in ``caption``, sorted by start,
            non-overlapping.
        phrases: ``caption[start:end]`` of each span.
        masks: one COCO RLE per phrase at (height, width).
    """

    image_id: Any
    file_name: str
    height: int
    width: int
    caption: str
    spans: tuple[tuple[int, int], ...]
    phrases: tuple[str, ...]
    masks: tuple[dict, ...]


def _grounding_mask(rles: Any, where: str) -> tuple[dict, tuple[int, int]]:
    if not isinstance(rles, list) or not rles:
        raise ValueError(f"{where}: 'rle_masks' must be a non-empty list of RLEs")
    masks = rles_to_masks(rles)
    return mask_to_rle(masks.any(axis=0)), (int(masks.shape[1]), int(masks.shape[2]))


def read_grandf(path: str | Path) -> list[GroundedCaption]:
    """A GranD-f GCG training file → one :class:`GroundedCaption` per record, in file order.

    The image size is the masks' (``height``/``width`` in the record, when present, must agree).
    The caption loses surrounding quotes and spaces as GLaMM's loader does; ``token_positives``
    index that stripped caption.

    Raises:
        AnnotationError: missing fields, spans outside the caption or overlapping, masks of
            different sizes, a record without groundings.
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, "file", "expected a JSON list of GranD-f records")
    out = []
    for k, rec in enumerate(data):
        record = f"record #{k}"
        try:
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            file_name, caption = rec.get("file_name"), rec.get("caption")
            groundings = rec.get("groundings")
            if not isinstance(file_name, str) or not isinstance(caption, str):
                raise ValueError("needs 'file_name' and 'caption' strings")
            if not isinstance(groundings, dict) or not groundings:
                raise ValueError("needs a non-empty 'groundings' object")
            caption = caption.strip('"').strip()
            items = []
            size = None
            for phrase, grounding in groundings.items():
                where = f"grounding {phrase!r}"
                span = grounding.get("token_positives") if isinstance(grounding, dict) else None
                if (not isinstance(span, list) or len(span) != 2
                        or not all(isinstance(v, int) for v in span)
                        or not 0 <= span[0] < span[1] <= len(caption)):
                    raise ValueError(f"{where}: 'token_positives' must be [start, end] inside the "
                                     f"caption ({len(caption)} characters), got {span!r}")
                rle, mask_size = _grounding_mask(grounding.get("rle_masks"), where)
                if size is not None and mask_size != size:
                    raise ValueError(f"{where}: masks are {mask_size} but earlier ones {size}")
                size = mask_size
                items.append(((span[0], span[1]), rle))
            items.sort(key=lambda item: item[0][0])
            for ((_, end), _), ((start, _), _) in zip(items, items[1:]):
                if start < end:
                    raise ValueError(f"phrase spans overlap at character {start}")
            assert size is not None
            for key, value in (("height", size[0]), ("width", size[1])):
                if key in rec and rec[key] != value:
                    raise ValueError(f"{key} {rec[key]} disagrees with the masks' {value}")
        except ValueError as exc:
            raise AnnotationError(path, record, str(exc)) from None
        out.append(GroundedCaption(
            image_id=rec.get("image_id", Path(file_name).stem), file_name=file_name,
            height=size[0], width=size[1], caption=caption,
            spans=tuple(span for span, _ in items),
            phrases=tuple(caption[s:e] for (s, e), _ in items),
            masks=tuple(rle for _, rle in items)))
    return out
