"""Prediction files: JSON lines, one record per sample (formats documented in ``docs/eval.md``).

Every task accepts masks either directly as COCO RLE (``"masks": [RLE, …]``, compressed string
or uncompressed list counts) or as the model's raw text answer (``"answer": "…"``) whose mask
words are decoded by a tokenizer (:class:`AnswerDecoder`). The image a SAMTok tokenizer needs is
read from ``image_root / file_name`` (file name from the record or the ground truth); image-free
tokenizers (HiMTok) need no image folder.

Records are matched to ground truth by ``"id"`` (RES, GRES, REC, perception) or ``"image_id"``
(GCG, PSG, open-vocabulary segmentation). A duplicate id, an id absent from the ground truth, a
ground-truth sample without a prediction or a mask of the wrong size is a ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from masktok.eval.answers import DecodedAnswer, decode_answer
from masktok.annotations.records import read_jsonl
from masktok.masks.iou import check_rle_sizes, coco_rle, coco_rle_groups


@dataclass
class AnswerDecoder:
    """Decodes the mask words of text answers with ``tokenizer`` (any ``MaskTokenizer``).

    Attributes:
        image_root: folder of the images (needed by image-conditioned tokenizers); ``None``
            passes ``image=None`` to the tokenizer.
        lenient: the grammar's lenient mode (repairs are reported in the span statuses).
    """

    tokenizer: Any = None
    image_root: Path | None = None
    lenient: bool = False
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def image(self, file_name: str | None) -> Any:
        """The RGB image for ``file_name`` (PIL), or ``None`` without an image folder."""
        if self.image_root is None:
            return None
        if not file_name:
            raise ValueError("an image folder was given but the sample names no image file")
        if file_name not in self._cache:
            path = Path(self.image_root) / file_name
            if not path.is_file():
                raise ValueError(f"image not found: {path}")
            self._cache.clear()  # answers come grouped by image; keep one image in memory
            with Image.open(path) as img:
                self._cache[file_name] = img.convert("RGB")
        return self._cache[file_name]

    def decode(self, text: str, size: tuple[int, int], file_name: str | None) -> DecodedAnswer:
        if self.tokenizer is None:
            raise ValueError("a prediction holds a text answer with mask words: a tokenizer is needed to "
                             "decode it (masktok eval … --tokenizer: the one that made the predictions, "
                             "'default' for the shipped one)")
        return decode_answer(self.tokenizer, self.image(file_name), text, size, self.lenient)


def index_records(path: str | Path, key: str, multi: bool = False) -> dict[str, Any]:
    """Prediction JSONL → ``{str(record[key]): record}`` (``multi``: a list of records per key)."""
    out: dict[str, Any] = {}
    records = read_jsonl(path)
    for n, rec in enumerate(records, 1):
        if key not in rec:
            raise ValueError(f"{path}: record {n} has no {key!r}")
        k = str(rec[key])
        if multi:
            out.setdefault(k, []).append(rec)
        elif k in out:
            raise ValueError(f"{path}: two predictions for {key} {k!r}")
        else:
            out[k] = rec
    # the RLEs of every "masks" list are validated together, in one vectorised pass
    with_masks = [(n, rec) for n, rec in enumerate(records, 1) if isinstance(rec.get("masks"), list)]
    checked = coco_rle_groups([rec["masks"] for _, rec in with_masks],
                              lambda g, i: f"prediction {key}={with_masks[g][1][key]} mask {i}")
    for (_, rec), masks in zip(with_masks, checked):
        rec["masks"] = masks
    return out


def check_coverage(predicted: set[str], expected: list[str], what: str, allow_missing: bool) -> list[str]:
    """ValueError for predictions of unknown samples, and — unless ``allow_missing`` — for
    samples without a prediction; returns the missing ids."""
    unknown = predicted - set(expected)
    if unknown:
        raise ValueError(f"predictions for {len(unknown)} {what} not in the ground truth, e.g. "
                         f"{sorted(unknown)[:3]}")
    missing = [e for e in expected if e not in predicted]
    if missing and not allow_missing:
        raise ValueError(f"no prediction for {len(missing)} {what}, e.g. {missing[:3]} "
                         "(--allow-missing scores them as empty answers)")
    return missing


@dataclass
class MaskPrediction:
    """The masks of one answer at the ground-truth size, plus what the answer said.

    Attributes:
        masks: COCO RLEs (compressed).
        no_target: the record's explicit ``no_target`` flag, or ``None``.
        num_spans: mask spans found in a text answer (``None`` for RLE records).
        undecoded: spans the tokenizer could not decode.
        missing: no record existed for this sample (scored as an empty answer).
    """

    masks: list[dict]
    no_target: bool | None = None
    num_spans: int | None = None
    undecoded: int = 0
    statuses: list[str] = field(default_factory=list)
    missing: bool = False


def record_masks(rec: dict | None, size: tuple[int, int], decoder: AnswerDecoder,
                 file_name: str | None, where: str) -> MaskPrediction:
    """One prediction record → :class:`MaskPrediction` at ``size`` (H, W)."""
    if rec is None:
        return MaskPrediction(masks=[], missing=True)
    flag = rec.get("no_target")
    if flag is not None and not isinstance(flag, bool):
        raise ValueError(f"{where}: 'no_target' must be true or false, got {flag!r}")
    if "masks" in rec:
        if not isinstance(rec["masks"], list):
            raise ValueError(f"{where}: 'masks' must be a list of COCO RLEs")
        masks = [coco_rle(m, f"{where} mask {i}") for i, m in enumerate(rec["masks"])]
        try:
            check_rle_sizes(masks, size, f"{where} masks")
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return MaskPrediction(masks=masks, no_target=flag)
    if "answer" in rec:
        decoded = decoder.decode(rec["answer"], size, rec.get("file_name", file_name))
        return MaskPrediction(masks=decoded.rles(), no_target=flag, num_spans=len(decoded.all_offsets),
                              undecoded=decoded.num_undecoded, statuses=decoded.statuses)
    raise ValueError(f"{where}: needs 'masks' (COCO RLEs) or 'answer' (text with mask words)")

