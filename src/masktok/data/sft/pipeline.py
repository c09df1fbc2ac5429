"""Check, write and describe a build: the files ``masktok build-sft`` produces.

``{out}/{task}.llava.json``, ``{out}/{task}.trl.jsonl``, ``{out}/card/{task}/card.{json,md}``
and ``{out}/card/{task}/sample_{k}.png``; the card is printed to the console.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masktok.data.sft.base import BuildResult, check_sample
from masktok.data.sft.card import DataCard, render_samples, task_card, write_card
from masktok.data.sft.writers import write_llava_json, write_trl_jsonl

OUTPUT_FORMATS = ("llava", "trl")


@dataclass
class WrittenBuild:
    """Where a build went."""

    files: dict[str, Path]
    card: DataCard
    rendered: list[Path]


def write_build(result: BuildResult, vocabulary: Any, out_dir: str | Path, *,
                formats: tuple[str, ...] = OUTPUT_FORMATS, render: int = 4, seed: int = 0,
                relative_to: str | Path | None = None,
                count_tokens: Callable[[str], int] | None = None,
                console: Any = None) -> WrittenBuild:
    """Check every sample against the grammar, write ``formats``, the card and ``render``
    rendered samples; print the card on ``console`` (a rich Console) when given.

    Raises:
        masktok.words.MaskWordsError / ValueError: a sample whose text does not parse or whose
            recorded masks disagree with its text (nothing is written then).
        ValueError: an unknown output format, or a build without samples.
    """
    unknown = [f for f in formats if f not in OUTPUT_FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: expected a non-empty subset of {OUTPUT_FORMATS}, got {list(formats)}")
    if not result.samples:
        raise ValueError(f"{result.task}: the build produced no sample (left out: {result.skipped})")
    ids = [s.sample_id for s in result.samples]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{result.task}: sample ids are not unique")
    for sample in result.samples:
        check_sample(sample, vocabulary)
    out_dir = Path(out_dir)
    files = {}
    if "llava" in formats:
        files["llava"] = write_llava_json(result.samples, out_dir / f"{result.task}.llava.json",
                                          relative_to)
    if "trl" in formats:
        files["trl"] = write_trl_jsonl(result.samples, out_dir / f"{result.task}.trl.jsonl",
                                       relative_to)
    card = DataCard([task_card(result, vocabulary, count_tokens)])
    rendered = render_samples(result.samples, vocabulary, out_dir / "card" / result.task,
                              render, seed) \
        if render > 0 else []
    write_card(card, out_dir / "card" / result.task, rendered)
    if console is not None:
        console.print(card.table())
    return WrittenBuild(files, card, rendered)
