"""The data card of an SFT build, and rendered sample conversations for eyeballing.

The card gives, per task: samples, what was left out and why, turns, images (scene + crops),
masks per sample, mask words per answer, text words per answer, mask tokens per sample and —
with a Hugging Face text tokenizer — the token length of each conversation. :func:`render_sample`
draws a sample's images with its masks overlaid (mask ``j`` of image ``i`` labelled ``j`` on the
image and ``[i.j]`` in the text) above the conversation.
"""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from masktok.data.sft.base import BuildResult, SFTSample


@dataclass
class Stats:
    """Summary of one per-sample quantity."""

    mean: float
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stats":
        if not values:
            return cls(0.0, 0.0, 0.0, 0.0)
        arr = np.asarray(values, dtype=np.float64)
        return cls(float(arr.mean()), float(arr.min()), float(np.median(arr)), float(arr.max()))

    def __str__(self) -> str:
        return f"{self.mean:.1f} ({self.min:g}–{self.max:g}, median {self.median:g})"


@dataclass
class TaskCard:
    task: str
    samples: int
    skipped: dict[str, int]
    turns: Stats
    images: Stats
    masks_per_sample: Stats
    mask_words_per_answer: Stats
    text_words_per_answer: Stats
    mask_tokens_per_sample: Stats
    tokens_per_sample: Stats | None = None


@dataclass
class DataCard:
    """Cards of every task of a build."""

    tasks: list[TaskCard] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": [asdict(t) for t in self.tasks]}

    def table(self) -> Any:
        """A rich table for the console."""
        from rich.table import Table

        table = Table(title="SFT data card")
        table.add_column("")
        for card in self.tasks:
            table.add_column(card.task)
        rows = [("samples", lambda c: str(c.samples)),
                ("left out", lambda c: ", ".join(f"{k}: {v}" for k, v in c.skipped.items()) or "-"),
                ("turns / sample", lambda c: str(c.turns)),
                ("images / sample", lambda c: str(c.images)),
                ("masks / sample", lambda c: str(c.masks_per_sample)),
                ("mask words / answer", lambda c: str(c.mask_words_per_answer)),
                ("text words / answer", lambda c: str(c.text_words_per_answer)),
                ("mask tokens / sample", lambda c: str(c.mask_tokens_per_sample)),
                ("tokens / sample", lambda c: str(c.tokens_per_sample or "-"))]
        for name, get in rows:
            table.add_row(name, *(get(c) for c in self.tasks))
        return table

    def to_markdown(self) -> str:
        lines = ["| | " + " | ".join(c.task for c in self.tasks) + " |",
                 "|---" * (len(self.tasks) + 1) + "|"]
        for name in ("samples", "turns", "images", "masks_per_sample", "mask_words_per_answer",
                     "text_words_per_answer", "mask_tokens_per_sample", "tokens_per_sample"):
            lines.append(f"| {name.replace('_', ' ')} | "
                         + " | ".join(str(getattr(c, name) if getattr(c, name) is not None else "-")
                                      for c in self.tasks) + " |")
        return "\n".join(lines)


def hf_token_counter(tokenizer: Any, vocabulary: Any) -> Callable[[str], int]:
    """Count tokens with a Hugging Face tokenizer; mask tokens it lacks are added (in memory)
    as non-special tokens, as ``masktok vlm add-vocab`` adds them."""
    from transformers import AddedToken

    missing = [t for t in vocabulary.tokens() if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return count


def task_card(result: BuildResult, vocabulary: Any,
              count_tokens: Callable[[str], int] | None = None) -> TaskCard:
    """Statistics of one builder's output."""
    from masktok.words import parse_mask_words

    mask_words, text_words, mask_tokens, tokens = [], [], [], []
    for sample in result.samples:
        total_mask_tokens = 0
        for turn in sample.turns:
            for text, is_answer in ((turn.user, False), (turn.assistant, True)):
                spans = parse_mask_words(text, vocabulary)
                total_mask_tokens += sum(len(s.codes) + 2 for s in spans)
                if is_answer:
                    mask_words.append(len(spans))
                    plain = text
                    for span in reversed(spans):
                        plain = plain[:span.start] + " " + plain[span.end:]
                    text_words.append(len(plain.split()))
        mask_tokens.append(total_mask_tokens)
        if count_tokens is not None:
            tokens.append(sum(count_tokens(t) for t in sample.texts()))
    samples = result.samples
    return TaskCard(
        task=result.task, samples=len(samples), skipped=dict(result.skipped),
        turns=Stats.of([len(s.turns) for s in samples]),
        images=Stats.of([len(s.images) for s in samples]),
        masks_per_sample=Stats.of([len(s.masks) for s in samples]),
        mask_words_per_answer=Stats.of(mask_words), text_words_per_answer=Stats.of(text_words),
        mask_tokens_per_sample=Stats.of(mask_tokens),
        tokens_per_sample=Stats.of(tokens) if count_tokens is not None else None)


def _labelled_text(sample: SFTSample, vocabulary: Any) -> tuple[list[str], list[list[dict]]]:
    """Texts with spans replaced by ``[image.mask]`` labels, and each image's distinct masks."""
    from masktok.words import parse_mask_words, replace_mask_spans

    per_image: list[list[dict]] = [[] for _ in sample.images]
    keys: list[list[str]] = [[] for _ in sample.images]
    labels = []
    for mask in sample.masks:
        counts = mask.rle["counts"]
        key = counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
        if key not in keys[mask.image_index]:
            keys[mask.image_index].append(key)
            per_image[mask.image_index].append(mask.rle)
        labels.append(f"[{mask.image_index}.{keys[mask.image_index].index(key)}]")
    texts, cursor = [], 0
    for text in sample.texts():
        count = len(parse_mask_words(text, vocabulary))
        texts.append(replace_mask_spans(text, vocabulary, _labeller(labels[cursor:cursor + count])))
        cursor += count
    return texts, per_image


def _labeller(labels: list[str]) -> Callable[[int, Any], str]:
    def label(index: int, span: Any) -> str:
        return labels[index]
    return label


def render_sample(sample: SFTSample, vocabulary: Any, height: int = 320,
                  wrap: int = 110) -> Image.Image:
    """The sample's images with their masks overlaid, above its labelled conversation."""
    from masktok.masks import rles_to_masks
    from masktok.masks.render import render_masks

    texts, per_image = _labelled_text(sample, vocabulary)
    tiles = []
    for i, (path, size) in enumerate(zip(sample.images, sample.image_sizes)):
        with Image.open(path) as img:
            image = img.convert("RGB")
        if (image.height, image.width) != tuple(size):
            raise ValueError(f"sample {sample.sample_id}: {path} is {image.height}x{image.width}, "
                             f"expected {size}")
        masks = rles_to_masks(per_image[i], size=size)
        tile = render_masks(image, masks)
        scale = height / tile.height
        tiles.append(tile.resize((max(1, round(tile.width * scale)), height)))
    font = ImageFont.load_default()
    lines = [f"{sample.sample_id}  ({len(sample.images)} image(s), {len(sample.masks)} mask spans)"]
    for k, text in enumerate(texts):
        who = "USER" if k % 2 == 0 else "ASSISTANT"
        for n, paragraph in enumerate(text.split("\n")):
            prefix = f"{who}: " if n == 0 else "    "
            lines += textwrap.wrap(prefix + paragraph, wrap) or [prefix]
    line_height = 14
    width = max(sum(t.width for t in tiles) + 8 * (len(tiles) - 1), 8 * wrap)
    canvas = Image.new("RGB", (width, height + 10 + line_height * len(lines) + 10), "white")
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 8
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((6, height + 10 + k * line_height), line, fill="black", font=font)
    return canvas


def render_samples(samples: Sequence[SFTSample], vocabulary: Any, out_dir: str | Path,
                   count: int = 4, seed: int = 0) -> list[Path]:
    """Render ``count`` samples (a seeded pick) to ``out_dir/sample_{k}.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    picks = random.Random(seed).sample(range(len(samples)), min(count, len(samples)))
    paths = []
    for k, index in enumerate(sorted(picks)):
        path = out_dir / f"sample_{k}.png"
        render_sample(samples[index], vocabulary).save(path)
        paths.append(path)
    return paths


def write_card(card: DataCard, out_dir: str | Path, rendered: Sequence[Path] = ()) -> Path:
    """``card.json`` and ``card.md`` (table + links to the rendered samples) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "card.json").write_text(json.dumps(card.to_dict(), indent=2))
    md = ["# SFT data card", "", card.to_markdown(), ""]
    md += [f"![{p.stem}]({p.relative_to(out_dir) if p.is_relative_to(out_dir) else p})"
           for p in rendered]
    path = out_dir / "card.md"
    path.write_text("\n".join(md) + "\n")
    return path
