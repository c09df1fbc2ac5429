"""HiMTok's own SFT data format (LMM-HiMTok ``example/anns/seg_data_with_mask.jsonl``).

One JSON object per line::

    {"image": "images/0.jpg", "mask": "masks/0.png",
     "conversations": [{"from": "human", "value": "<image>\\nSegment <ref>road</ref>."},
                       {"from": "gpt", "value": "The mask appears at <|mt_start|><|mt_0|>…<|mt_end|>."}]}

``image`` and ``mask`` are relative to the dataset root (the folder holding ``anns/``,
``images/``, ``masks/``); the mask is an 8-bit PNG (anti-aliased: foreground is pixel > 127, the
HiMTok data convention); the answer holds exactly one *placeholder* mask word that HiMTok's
``convert_mask2tokens.py`` replaces with the mask's real tokens. This module reads such files
(:func:`read_himtok_sft_jsonl`), turns them into masktok SFT samples (:func:`build_from_himtok_jsonl`,
behind ``masktok build-sft himtok|res``), and does the official converter's job for a whole folder
(:func:`convert_himtok_sft`, ``masktok convert-sft-masks``): every placeholder replaced by the
words of any mask tokenizer, resumable, with counts of what was converted and skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from masktok.data.sft.base import BuildConfig, BuildResult, SampleMask, SFTSample, Turn
from masktok.data.sft.mask_words import ImageEntry, MaskRef, format_words
from masktok.masks import mask_to_rle

PLACEHOLDER = re.compile(r"<\|mt_start\|>.*?<\|mt_end\|>", re.S)
MASK_THRESHOLD = 127
_IMAGE_TAG = re.compile(r"^\s*<image>\s*\n?")


@dataclass(frozen=True)
class HiMTokSFTRecord:
    """One line of a HiMTok SFT JSONL: its image and mask files and the conversation turns as
    (user, assistant) pairs (the ``<image>`` tag of the first user turn removed)."""

    line: int
    image: Path
    mask: Path
    turns: list[tuple[str, str]]
    raw: dict = field(repr=False)


def is_himtok_sft_jsonl(path: str | Path) -> bool:
    """True when the first non-empty line of ``path`` is a HiMTok SFT record."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(rec, dict) and "conversations" in rec and "mask" in rec
    return False


def _turns(rec: dict, where: str) -> list[tuple[str, str]]:
    conv = rec.get("conversations")
    if not isinstance(conv, list) or not conv or len(conv) % 2:
        raise ValueError(f"{where}: 'conversations' must be a non-empty list of human/gpt pairs")
    turns = []
    for k in range(0, len(conv), 2):
        human, gpt = conv[k], conv[k + 1]
        if not (isinstance(human, dict) and human.get("from") == "human" and isinstance(human.get("value"), str)
                and isinstance(gpt, dict) and gpt.get("from") == "gpt" and isinstance(gpt.get("value"), str)):
            raise ValueError(f"{where}: turn {k // 2} must be {{'from': 'human'}} then {{'from': 'gpt'}} "
                             "with string values")
        turns.append((human["value"], gpt["value"]))
    spans = sum(len(PLACEHOLDER.findall(a)) for _, a in turns)
    if spans != 1:
        raise ValueError(f"{where}: the answers hold {spans} mask words; HiMTok SFT records have "
                         "exactly one (the sample's mask)")
    return turns


def read_himtok_sft_jsonl(path: str | Path, root: str | Path | None = None) -> list[HiMTokSFTRecord]:
    """A HiMTok SFT JSONL → its records; ``root`` (default: the JSONL's folder) is the folder the
    ``image`` / ``mask`` paths are relative to. A malformed line is a ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    base = Path(root) if root is not None else path.parent
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}: line {n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("image"), str) \
                    or not isinstance(rec.get("mask"), str):
                raise ValueError(f"{where}: needs 'image' and 'mask' paths and 'conversations'")
            out.append(HiMTokSFTRecord(n, base / rec["image"], base / rec["mask"], _turns(rec, where), rec))
    return out


def read_sft_mask(path: Path, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """A HiMTok SFT mask PNG → (H, W) bool, foreground = pixel > ``threshold`` (grey level)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > threshold


def _entry(record: HiMTokSFTRecord, mask: np.ndarray) -> ImageEntry:
    if not record.image.is_file():
        raise FileNotFoundError(f"{record.image}: no such file (line {record.line}; pass the dataset "
                                "root that the 'image' and 'mask' paths are relative to)")
    with Image.open(record.image) as img:
        width, height = img.size
    if mask.shape != (height, width):
        raise ValueError(f"line {record.line}: mask {record.mask} is {mask.shape[0]}x{mask.shape[1]} "
                         f"but image {record.image} is {height}x{width}")
    return ImageEntry(record.image.stem, record.image, height, width)


def build_from_himtok_jsonl(records: list[HiMTokSFTRecord], words: Any, config: BuildConfig = BuildConfig(),
                            task: str = "himtok", threshold: int = MASK_THRESHOLD) -> BuildResult:
    """HiMTok SFT records → masktok SFT samples whose mask words come from ``words`` (a
    :class:`~masktok.data.sft.TokenizerWords` or :class:`~masktok.data.sft.ParquetWords`)."""
    result = BuildResult(task, [])
    for record in records:
        if result.full(config):
            break
        if config.missing_images == "skip" and not (record.image.is_file() and record.mask.is_file()):
            result.skip("missing image or mask file")
            continue
        mask = read_sft_mask(record.mask, threshold)
        entry = _entry(record, mask)
        rle = mask_to_rle(mask)
        codes = words.codes(entry, [MaskRef(rle)])[0]
        word = format_words(codes, words.vocabulary)
        turns = [Turn(_IMAGE_TAG.sub("", user, count=1) if k == 0 else user,
                      PLACEHOLDER.sub(lambda _m: word, answer), (0,) if k == 0 else ())
                 for k, (user, answer) in enumerate(record.turns)]
        result.samples.append(SFTSample(
            sample_id=f"{task}/{record.image.stem}-{record.line}", task=task, images=[str(entry.path)],
            image_sizes=[entry.size], turns=turns, masks=[SampleMask(0, rle)],
            meta={"image_id": entry.image_id, "source_line": record.line, "mask_file": str(record.mask)}))
    return result


@dataclass
class ConversionReport:
    """What :func:`convert_himtok_sft` did, per file and in total."""

    files: dict[str, dict[str, int]] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(counts.get(key, 0) for counts in self.files.values())

    def summary(self) -> str:
        return (f"{len(self.files)} file(s): {self.total('converted')} records converted, "
                f"{self.total('already_done')} already converted earlier (skipped), "
                f"{self.total('missing_files')} skipped for a missing image or mask")


def _jsonl_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder")
    files = sorted(p for p in source.rglob("*.jsonl") if is_himtok_sft_jsonl(p))
    if not files:
        raise ValueError(f"{source}: no HiMTok SFT JSONL (records with 'conversations' and 'mask') found")
    return files


def _done_lines(partial: Path) -> int:
    """Complete lines already written to ``partial`` (a torn last line is cut off)."""
    if not partial.is_file():
        return 0
    data = partial.read_bytes()
    keep = data[:data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        partial.write_bytes(keep)
    return keep.count(b"\n")


def convert_himtok_sft(source: str | Path, out_dir: str | Path, words: Any, *, root: str | Path | None = None,
                       threshold: int = MASK_THRESHOLD, skip_missing: bool = False, batch: int = 64,
                       progress: Callable[[Iterable[Any], str, int], Iterable[Any]] | None = None
                       ) -> ConversionReport:
    """Replace the placeholder mask word of every record of every HiMTok SFT JSONL under
    ``source`` (a file or a folder, searched recursively) with the mask's real words from
    ``words`` (:class:`~masktok.data.sft.TokenizerWords` of any tokenizer); write the same JSONL
    layout under ``out_dir`` (relative paths kept).

    Resumable: records are appended to ``<output>.partial`` as they are done and the file is
    renamed when complete; a rerun skips finished files and the finished lines of a partial one.
    ``root``: the folder the ``image`` / ``mask`` paths are relative to (default: ``source`` when
    it is a folder, else the JSONL's folder). ``skip_missing`` counts and leaves out records whose
    image or mask file is missing (default: an error).
    """
    source, out_dir = Path(source), Path(out_dir)
    report = ConversionReport()
    base = Path(root) if root is not None else (source if source.is_dir() else source.parent)
    for path in _jsonl_files(source):
        rel = path.relative_to(source) if source.is_dir() else Path(path.name)
        target = out_dir / rel
        counts = {"converted": 0, "already_done": 0, "missing_files": 0}
        report.files[str(rel)] = counts
        records = read_himtok_sft_jsonl(path, base)
        if target.is_file():  # finished by an earlier run
            counts["already_done"] = sum(1 for line in target.open(encoding="utf-8") if line.strip())
            report.outputs.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        done = _done_lines(partial)
        counts["already_done"] = done
        todo = records[done:]
        steps = range(0, len(todo), batch)
        with partial.open("a", encoding="utf-8") as f:
            for start in (progress(steps, str(rel), len(steps)) if progress else steps):
                for record in todo[start:start + batch]:
                    if skip_missing and not (record.image.is_file() and record.mask.is_file()):
                        counts["missing_files"] += 1
                        f.write(json.dumps({"skipped": "missing image or mask file",
                                            "line": record.line}) + "\n")
                        continue
                    mask = read_sft_mask(record.mask, threshold)
                    codes = words.codes(_entry(record, mask), [MaskRef(mask_to_rle(mask))])[0]
                    word = format_words(codes, words.vocabulary)
                    out = dict(record.raw)
                    out["conversations"] = [
                        {**turn, "value": PLACEHOLDER.sub(lambda _m: word, turn["value"])}
                        if turn.get("from") == "gpt" else turn for turn in record.raw["conversations"]]
                    f.write(json.dumps(out, ensure_ascii=False) + "\n")
                    counts["converted"] += 1
                f.flush()
        _drop_skip_markers(partial, target)
        report.outputs.append(target)
    return report


def _drop_skip_markers(partial: Path, target: Path) -> None:
    """Finish a file: the ``.partial`` without the lines that mark skipped records → ``target``."""
    lines = partial.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith('{"skipped": ')]
    target.write_text("".join(kept), encoding="utf-8")
    partial.unlink()


__all__ = ["HiMTokSFTRecord", "ConversionReport", "is_himtok_sft_jsonl", "read_himtok_sft_jsonl",
           "build_from_himtok_jsonl", "convert_himtok_sft"]
