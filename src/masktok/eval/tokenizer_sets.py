"""Reconstruction IoU of a mask tokenizer on the held-out evaluation sets, per mask and prefix length.

Each image's masks are encoded at the image size, decoded from their first l codes back to that
size as COCO RLE (``decode(..., output="rle")``, so 4,000-pixel canvases never become dense
host arrays) and scored against the ground truth with pycocotools' RLE IoU. The summary gives,
per set (and per COCO area range of the native sets), the mean IoU per length and the share of
masks whose IoU drops from one evaluated length to the next (coarse-to-fine monotonicity).

    per_mask = set_ious(tokenizer, sets["coco2017_heldout"], lengths=(4, 8, 16, 32))
    table = summarize(per_mask, lengths=(4, 8, 16, 32))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as coco_mask

from masktok.data.mask_pools.heldout import EvalImage

AREA_RANGES = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, float("inf")))


@dataclass(frozen=True)
class MaskScores:
    """IoU per prefix length of every mask of a set.

    Attributes:
        ious: (M, len(lengths)) float64.
        areas: (M,) foreground pixels of each ground-truth mask.
        lengths: the prefix lengths, increasing.
    """

    ious: np.ndarray
    areas: np.ndarray
    lengths: tuple[int, ...]


def _bytes_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def image_ious(tokenizer, image: EvalImage, lengths: Sequence[int]) -> np.ndarray:
    """(N, len(lengths)) IoU of each mask of ``image`` with its decoded prefixes (all prefixes of
    all masks decoded in one ragged call)."""
    masks = image.masks()
    codes = tokenizer.encode(None, masks)
    truth = [_bytes_rle(r) for r in image.rles]
    count = len(truth)
    kept = torch.tensor(list(lengths), dtype=torch.long).repeat(count)  # mask-major: (N · L,)
    decoded = tokenizer.decode(None, codes.repeat_interleave(len(lengths), dim=0), lengths=kept,
                               size=(image.height, image.width), output="rle")
    out = np.zeros((count, len(lengths)))
    for index, pred in enumerate(decoded):
        row, column = divmod(index, len(lengths))
        out[row, column] = coco_mask.iou([_bytes_rle(pred)], [truth[row]], [0])[0, 0]
    return out


def frame_bound_ious(image: EvalImage, frame: int, bins: int = 1024) -> np.ndarray:
    """(N, 1) IoU of each mask with itself framed as a perfect box-first tokenizer would keep it:
    its box rounded outward to ``bins`` levels, stretched to a ``frame``² frame (bilinear) and
    pasted back (threshold 0.5): the resolution bound of that frame."""
    from masktok.tokenizers.himtok.box_frame import box_to_codes, codes_to_box, crop_box_frames, tight_boxes
    from masktok.tokenizers.himtok.box_paste import paste_rles

    masks = torch.from_numpy(image.masks())
    sizes = torch.tensor([image.height, image.width]).expand(masks.shape[0], 2)
    boxes = codes_to_box(box_to_codes(tight_boxes(masks), sizes, bins, "outward"), sizes, bins)
    frames = crop_box_frames(masks, boxes, frame)[:, 0]
    pasted = paste_rles(frames, boxes, (image.height, image.width), 0.5)
    truth = [_bytes_rle(r) for r in image.rles]
    return np.array([[coco_mask.iou([_bytes_rle(p)], [t], [0])[0, 0]] for p, t in zip(pasted, truth)])


def set_ious(tokenizer, images: Iterable[EvalImage], lengths: Sequence[int], progress=None,
             frame_bound: int = 0) -> MaskScores:
    """Scores of every mask of ``images``; ``progress`` (optional) is called after each image.
    With ``frame_bound`` = S the tokenizer is not used: the one column is :func:`frame_bound_ious`."""
    lengths = (0,) if frame_bound else tuple(sorted(int(length) for length in lengths))
    rows, areas = [], []
    for image in images:
        rows.append(frame_bound_ious(image, frame_bound) if frame_bound else image_ious(tokenizer, image, lengths))
        areas.extend(int(coco_mask.area(_bytes_rle(r))) for r in image.rles)
        if progress is not None:
            progress()
    ious = np.concatenate(rows) if rows else np.zeros((0, len(lengths)))
    return MaskScores(ious=ious, areas=np.asarray(areas, dtype=np.int64), lengths=lengths)


def worse_share(scores: MaskScores) -> dict[str, float]:
    """Share of masks whose IoU is lower at the next evaluated length, per consecutive pair
    (``"4→8"``), and over all pairs (``"any"``: a mask that gets worse at least once)."""
    if scores.ious.shape[0] == 0:
        return {}
    drops = scores.ious[:, 1:] < scores.ious[:, :-1]
    out = {f"{a}→{b}": float(drops[:, k].mean()) for k, (a, b) in enumerate(zip(scores.lengths, scores.lengths[1:]))}
    out["any"] = float(drops.any(axis=1).mean())
    return out


def summarize(scores: MaskScores, by_area: bool = False) -> dict[str, dict]:
    """{row name: {"masks": M, "miou": {length: mean IoU}, "worse": worse_share}} for the whole set
    and, with ``by_area``, its COCO area ranges (small < 32², medium < 96², large)."""
    rows = {"all": np.ones(len(scores.areas), dtype=bool)}
    if by_area:
        for name, low, high in AREA_RANGES:
            rows[name] = (scores.areas >= low) & (scores.areas < high)
    out = {}
    for name, keep in rows.items():
        part = MaskScores(scores.ious[keep], scores.areas[keep], scores.lengths)
        out[name] = {"masks": int(keep.sum()),
                     "miou": {str(l): float(part.ious[:, k].mean()) if keep.any() else float("nan")
                              for k, l in enumerate(scores.lengths)},
                     "worse": worse_share(part)}
    return out
