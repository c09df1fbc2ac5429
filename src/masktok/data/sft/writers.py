"""Write SFT samples as LLaVA-style JSON and as TRL-ready JSONL.

LLaVA (one JSON list)::

    {"id": "res/123", "image": "a.jpg" | ["a.jpg", "crop.png"],
     "conversations": [{"from": "human", "value": "<image>\\nPlease segment …"},
                       {"from": "gpt", "value": "<|mt_start|>…<|mt_end|>"}, …]}

TRL (one JSON object per line; ``SFTTrainer`` with a vision processor reads it as is)::

    {"id": "res/123", "images": ["a.jpg"],
     "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "…"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "…"}]}],
     "masks": [{"image": 0, "rle": {"size": [480, 640], "counts": "…"}}]}

``masks`` holds the ground truth of every mask span of the text, in reading order (HiMTok's
stage 2 trains its mask loss on it; other readers ignore it). It is left out when the sample
mentions no mask.

Image placeholders sit in the user message of the turn that shows the image, before its text,
in image order. Paths are written as built, or relative to ``relative_to`` when given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from masktok.data.sft.base import SFTSample

IMAGE_TOKEN = "<image>"


def _paths(sample: SFTSample, relative_to: str | Path | None) -> list[str]:
    if relative_to is None:
        return list(sample.images)
    return [os.path.relpath(Path(p).resolve(), Path(relative_to).resolve()) for p in sample.images]


def _check_order(sample: SFTSample) -> None:
    shown = [i for turn in sample.turns for i in turn.images]
    if shown != list(range(len(sample.images))):
        raise ValueError(f"sample {sample.sample_id}: turns show images {shown}; writers need "
                         f"each image once, in order")


def llava_record(sample: SFTSample, relative_to: str | Path | None = None) -> dict[str, Any]:
    """One sample in LLaVA's conversation format."""
    _check_order(sample)
    paths = _paths(sample, relative_to)
    conversations = []
    for turn in sample.turns:
        prefix = "".join(f"{IMAGE_TOKEN}\n" for _ in turn.images)
        conversations.append({"from": "human", "value": prefix + turn.user})
        conversations.append({"from": "gpt", "value": turn.assistant})
    return {"id": sample.sample_id, "image": paths[0] if len(paths) == 1 else paths,
            "conversations": conversations}


def trl_record(sample: SFTSample, relative_to: str | Path | None = None) -> dict[str, Any]:
    """One sample as chat-template ``messages`` + ``images`` (+ the ground-truth ``masks``)."""
    _check_order(sample)
    messages = []
    for turn in sample.turns:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in turn.images]
        content.append({"type": "text", "text": turn.user})
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.assistant}]})
    record: dict[str, Any] = {"id": sample.sample_id, "images": _paths(sample, relative_to),
                              "messages": messages}
    if sample.masks:
        record["masks"] = [{"image": m.image_index, "rle": _json_rle(m.rle)} for m in sample.masks]
    return record


def _json_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def write_llava_json(samples: Iterable[SFTSample], path: str | Path,
                     relative_to: str | Path | None = None) -> Path:
    """All samples as one LLaVA JSON list at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [llava_record(s, relative_to) for s in samples]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1))
    return path


def write_trl_jsonl(samples: Iterable[SFTSample], path: str | Path,
                    relative_to: str | Path | None = None) -> Path:
    """All samples as TRL JSONL at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for sample in samples:
            f.write(json.dumps(trl_record(sample, relative_to), ensure_ascii=False) + "\n")
    return path
