"""Evaluation reports: ``metrics.json``, ``metrics.md`` (a markdown table), ``per_sample.jsonl``
and overlay PNGs of the worst samples (ground truth green, prediction red, overlap yellow).

``metrics.json`` holds ``{"task", "headline", "metrics": {name: value}, "notes": [...],
"inputs": {...}}``; undefined ratios (NaN) are written as ``null``; ``headline`` is a warning to
read before the numbers (or ``null``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GT_COLOR = np.array([0, 200, 0], dtype=np.float32)
PRED_COLOR = np.array([230, 30, 30], dtype=np.float32)
BOTH_COLOR = np.array([255, 220, 0], dtype=np.float32)


def json_ready(value: Any) -> Any:
    """numpy scalars/arrays → Python, NaN/inf → None, tuples → lists, bytes → str."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, bytes):
        return value.decode("ascii")
    if isinstance(value, Path):
        return str(value)
    return value


def markdown_table(task: str, metrics: dict[str, Any]) -> str:
    """``| metric | value |`` table; fractions keep 4 decimals, counts are integers."""
    lines = [f"### {task}", "", "| metric | value |", "|---|---|"]
    for name, value in metrics.items():
        if isinstance(value, (bool, np.bool_)):
            text = str(value)
        elif isinstance(value, (int, np.integer)):
            text = str(int(value))
        elif isinstance(value, (float, np.floating)):
            text = f"{float(value):.4f}" if math.isfinite(float(value)) else "n/a"
        else:
            text = str(value)
        lines.append(f"| {name} | {text} |")
    return "\n".join(lines) + "\n"


@dataclass
class Overlay:
    """One sample to draw: ground truth and prediction masks (H, W) bool over its image
    ((H, W, 3) uint8 or ``None`` for a grey canvas)."""

    name: str
    gt: np.ndarray
    pred: np.ndarray
    image: np.ndarray | None = None
    score: float | None = None


def render_overlay(overlay: Overlay, alpha: float = 0.5) -> Image.Image:
    """The overlay as an RGB PIL image."""
    gt, pred = np.asarray(overlay.gt, dtype=bool), np.asarray(overlay.pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"overlay {overlay.name}: masks {gt.shape} and {pred.shape} must be one (H, W)")
    if overlay.image is None:
        base = np.full((*gt.shape, 3), 96, dtype=np.float32)
    else:
        base = np.asarray(overlay.image, dtype=np.float32)
        if base.shape != (*gt.shape, 3):
            raise ValueError(f"overlay {overlay.name}: image {base.shape} does not match masks {gt.shape}")
    out = base.copy()
    for region, color in ((gt & ~pred, GT_COLOR), (pred & ~gt, PRED_COLOR), (gt & pred, BOTH_COLOR)):
        out[region] = (1 - alpha) * base[region] + alpha * color
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="RGB")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def write_report(out_dir: str | Path, task: str, metrics: dict[str, Any], per_sample: Sequence[dict],
                 overlays: Sequence[Overlay] = (), notes: Sequence[str] = (),
                 inputs: dict[str, Any] | None = None, headline: str | None = None,
                 extras: dict[str, Sequence[dict]] | None = None) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created) and return their paths by kind.

    ``headline`` (a warning such as "recall is lexical, not comparable with published numbers")
    opens ``metrics.md`` and is ``metrics.json``'s ``"headline"``; ``extras`` are written as
    ``<name>.jsonl`` (one file per name, also when empty).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "table": out / "metrics.md",
             "per_sample": out / "per_sample.jsonl"}
    payload = {"task": task, "headline": headline, "metrics": metrics, "notes": list(notes),
               "inputs": inputs or {}}
    paths["metrics"].write_text(json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n")
    table = markdown_table(task, metrics)
    if headline:
        table = f"**{headline}**\n\n" + table
    if notes:
        table += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    paths["table"].write_text(table)
    _write_jsonl(paths["per_sample"], per_sample)
    for name, rows in (extras or {}).items():
        paths[name] = out / f"{_safe_name(name)}.jsonl"
        _write_jsonl(paths[name], rows)
    if overlays:
        worst = out / "worst"
        worst.mkdir(exist_ok=True)
        for rank, ov in enumerate(overlays):
            score = "" if ov.score is None else f"_{ov.score:.3f}"
            render_overlay(ov).save(worst / f"{rank:02d}_{_safe_name(ov.name)}{score}.png")
        paths["worst"] = worst
    return paths


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    """One JSON object per line; rows of plain Python values skip the :func:`json_ready` pass."""
    with path.open("w") as f:
        for row in rows:
            try:
                line = json.dumps(row, allow_nan=False)
            except (TypeError, ValueError):
                line = json.dumps(json_ready(row), allow_nan=False)
            f.write(line + "\n")
