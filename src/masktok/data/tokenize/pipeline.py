"""Dataset-scale tokenization: every mask of a dataset → codes and mask words, one Parquet per shard.

    from masktok.data.tokenize.shards import DatasetSource
    from masktok.data.tokenize.pipeline import TokenizeConfig, tokenize_dataset
    source = DatasetSource("coco", annotations="instances_val2017.json", images="val2017/")
    report = tokenize_dataset(source, tokenizer, TokenizeConfig(output_dir="out/"))

Output folder::

    _manifest.json          source, shard plan, vocabulary and options (a re-run must match it)
    part-00000.parquet      one per input shard (columns: :func:`~masktok.data.tokenize.shards.parquet_schema`)
    …
    _codebook_usage.json    per-position code usage over the whole output
    _SUCCESS                written last, once every shard is present

Work is sharded by image: shards go round robin to ``torchrun`` ranks (``RANK`` /
``WORLD_SIZE``), the images of a rank's shards are loaded (JPEG + RLE decoding) by DataLoader
workers in order, and the tokenizer's ``encode_stream`` reads them as a stream, each image once
for all of its masks, ``images_per_batch`` images per model pass. A shard file appears atomically
(written to ``*.tmp`` then renamed) only when complete, so a re-run skips finished shards and
redoes partial ones, and the output does not depend on where a run was interrupted.

The output folder belongs to one run at a time: each process holds ``_lock.rank<R>.json``
(:mod:`masktok.output_lock`), and a second run into the same folder stops at once with an error
naming the first; a lock left by a killed run is taken over. pyarrow (writing Parquet) is checked
before any work starts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from masktok.data.tokenize.shards import (  # CodebookUsage, codebook_usage, usage_table: re-exported
    FORMAT_VERSION,
    CodebookUsage,
    DatasetSource,
    InputShard,
    ShardPlan,
    assign_shards,
    codebook_usage,
    plan_shards,
    pyarrow_module,
    shard_is_complete,
    shard_path,
    usage_table,
    vocabulary_fields,
    write_shard,
)
from masktok.data.tokenize.config import MISSING_IMAGE_POLICIES, TokenizeConfig  # noqa: F401  (re-exported)
from masktok.data.tokenize.loader import LoadedImageItem, load_images
from masktok.masks import BitMasks
from masktok.output_lock import hold_run_output
from masktok.tokenizers.base import ABSENT_CODE

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
USAGE = "_codebook_usage.json"


@dataclass
class TokenizeReport:
    """What one call did (this rank) and, when the output is complete, the usage summary."""

    output_dir: Path
    rank: int
    world_size: int
    shards_total: int
    shards_written: list[str]
    shards_skipped: list[str]
    shards_redone: list[str]
    images: int
    masks: int
    skipped_empty_masks: int
    skipped_missing_images: int
    seconds: float
    complete: bool
    usage: CodebookUsage | None = None

    @property
    def masks_per_second(self) -> float:
        return self.masks / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Manifest and ranks
# ---------------------------------------------------------------------------------------------
def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    if path.is_file():
        existing = json.loads(path.read_text())
        diff = sorted(k for k in set(existing) | set(manifest) if existing.get(k) != manifest.get(k))
        if diff:
            raise ValueError(f"{path.parent}: holds the output of a different run (manifest keys "
                             f"{diff} differ); use a new output_dir or remove the old one")
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)


def _dist_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValueError("rank and world_size: give both or neither")
    if rank is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world_size  # type: ignore[return-value]


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def tokenize_dataset(source: DatasetSource, tokenizer: Any, config: TokenizeConfig, *,
                     rank: int | None = None, world_size: int | None = None,
                     tokenizer_id: str | None = None) -> TokenizeReport:
    """Tokenize every mask of ``source`` into ``config.output_dir`` (see the module docstring).

    Args:
        tokenizer: a :class:`~masktok.tokenizers.base.MaskTokenizer`.
        rank, world_size: this process's share (default: torch.distributed, else the ``RANK`` /
            ``WORLD_SIZE`` environment variables, else 0 / 1).
        tokenizer_id: how the tokenizer is named in the manifest (e.g. its path), so that a re-run
            with another tokenizer into the same folder is refused.

    Raises:
        ValueError: a malformed source, an output folder holding another run's output, empty
            masks or missing images under the ``"error"`` policy, a tokenizer returning bad codes.
        OutputInUseError: another run is writing into ``config.output_dir``.
        MissingDependencyError: pyarrow is not installed.
    """
    check_dependencies()
    rank, world_size = _dist_rank(rank, world_size)
    if source.images is None and tokenizer.needs_image:
        raise ValueError(f"{source.kind} source: this {tokenizer.vocabulary.name} tokenizer reads the images; "
                         "give the image folder (images=)")
    lock = hold_run_output(config.output_dir, rank=rank, world_size=world_size)
    try:
        return _tokenize(source, tokenizer, config, rank, world_size, tokenizer_id)
    finally:
        lock.release()


def check_dependencies() -> None:
    """Fail now, before any work, when a package the run needs is missing (pyarrow)."""
    pyarrow_module()


def _tokenize(source: DatasetSource, tokenizer: Any, config: TokenizeConfig, rank: int, world_size: int,
              tokenizer_id: str | None) -> TokenizeReport:
    """:func:`tokenize_dataset` once the output folder is this run's."""
    start = time.perf_counter()
    out = config.output_dir
    plan = plan_shards(source, config.images_per_shard)
    vocabulary = tokenizer.vocabulary
    manifest = {
        "format_version": FORMAT_VERSION, "source": source.describe(), "plan": plan.describe(),
        "vocabulary": vocabulary_fields(vocabulary), "tokenizer": tokenizer_id,
        "options": {"num_codes": config.num_codes, "include_crowd": config.include_crowd,
                    "empty_masks": config.empty_masks, "missing_images": config.missing_images},
    }
    if rank == 0:
        _check_manifest(out / MANIFEST, manifest)
    _barrier()
    if rank != 0:
        _check_manifest(out / MANIFEST, manifest)

    mine = assign_shards(plan.shards, rank, world_size)
    pending, skipped, redone = [], [], []
    for shard in mine:
        path = shard_path(out, shard)
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # a partial write
        if shard_is_complete(path):
            skipped.append(shard.name)
            continue
        if path.exists():
            log.warning("%s is damaged or incomplete; tokenizing it again", path)
            path.unlink()
            redone.append(shard.name)
        pending.append(shard)

    written, counts = _run_pending(plan, pending, tokenizer, config, rank)
    _barrier()
    complete = all(shard_is_complete(shard_path(out, s)) for s in plan.shards)
    usage = None
    if complete and (rank == 0 or not torch.distributed.is_initialized()):
        usage = finalize_output(out, [shard_path(out, s) for s in plan.shards], vocabulary)
    return TokenizeReport(
        output_dir=out, rank=rank, world_size=world_size, shards_total=len(plan.shards),
        shards_written=written, shards_skipped=skipped, shards_redone=redone,
        images=counts["images"], masks=counts["masks"],
        skipped_empty_masks=counts["skipped_empty_masks"],
        skipped_missing_images=counts["skipped_missing_images"],
        seconds=time.perf_counter() - start, complete=complete, usage=usage)


def iter_encoded(plan: ShardPlan, shards: list[InputShard], tokenizer: Any, config: TokenizeConfig,
                 rank: int = 0) -> Iterator[tuple[LoadedImageItem, torch.Tensor | None]]:
    """Every image of ``shards`` in order, loaded by DataLoader workers and encoded → (item, codes
    (N, L) or None when the image has no mask to encode). Progress is shown per rank.

    The tokenizer's ``encode_stream`` reads the loaded images as a stream (masks bit-packed,
    pinned for a CUDA device), so the device never waits between calls; pixels are loaded only
    for tokenizers that read them (``needs_image``)."""
    items = [(k, ref) for k, shard in enumerate(shards) for ref in plan.images(shard)]
    # one worker task per model batch; prefetch_images kept ready
    loaded = load_images(items, config, load_pixels=tokenizer.needs_image, pack_masks=True,
                         pin_memory=tokenizer.device.type == "cuda", group_size=config.images_per_batch,
                         prefetch_images=config.prefetch_images)
    encoded = _streamed(loaded, tokenizer, config)
    bar = tqdm(total=len(items), desc=f"tokenize (rank {rank})", unit="img",
               disable=not config.progress, position=rank, leave=rank == 0)
    masks_done = 0
    try:
        for item, codes in encoded:
            if codes is not None and (codes.ndim != 2 or codes.shape[0] != item.masks.shape[0]):
                raise ValueError(f"tokenizer returned codes of shape {tuple(codes.shape)} for "
                                 f"{item.masks.shape[0]} masks")
            yield item, codes
            masks_done += int(item.masks.shape[0])
            bar.update(1)
            bar.set_postfix(masks=masks_done, refresh=False)
    finally:
        encoded.close()
        bar.close()


def _streamed(loader: Iterator[LoadedImageItem], tokenizer: Any, config: TokenizeConfig
              ) -> Iterator[tuple[LoadedImageItem, torch.Tensor | None]]:
    """Loaded images → ``encode_stream`` (images with masks only) → (item, codes) in loader order."""
    waiting: deque[LoadedImageItem] = deque()

    def pairs() -> Iterator[tuple[torch.Tensor | None, torch.Tensor | BitMasks]]:
        for item in loader:
            waiting.append(item)
            if item.masks.shape[0]:
                yield item.pixels, item.masks

    codes_stream = tokenizer.encode_stream(pairs(), num_codes=config.num_codes, batch_size=config.images_per_batch,
                                           empty_masks=config.empty_masks)
    try:
        for codes in codes_stream:
            while not waiting[0].masks.shape[0]:
                yield waiting.popleft(), None
            yield waiting.popleft(), codes.cpu()
        while waiting:
            yield waiting.popleft(), None
    finally:
        codes_stream.close()


def _run_pending(plan: ShardPlan, pending: list[InputShard], tokenizer: Any,
                 config: TokenizeConfig, rank: int) -> tuple[list[str], dict[str, int]]:
    counts = {"images": 0, "masks": 0, "skipped_empty_masks": 0, "skipped_missing_images": 0}
    remaining = [shard.num_images for shard in pending]
    if any(n is None for n in remaining):  # tar shards: count their members now
        remaining = [len(plan.images(shard)) for shard in pending]
    rows: list[list[dict]] = [[] for _ in pending]
    stats = [{"num_images": 0, "skipped_empty_masks": 0, "skipped_missing_images": 0}
             for _ in pending]
    written: list[str] = []
    for item, codes in iter_encoded(plan, pending, tokenizer, config, rank):
        _add_rows(rows[item.shard], item, codes, tokenizer.vocabulary)
        for record in (stats[item.shard], counts):
            record["skipped_empty_masks"] += item.skipped_empty
            record["skipped_missing_images"] += int(item.missing_image)
        stats[item.shard]["num_images"] += 1
        counts["images"] += 1
        counts["masks"] += int(item.masks.shape[0])
        remaining[item.shard] -= 1
        if remaining[item.shard] == 0:
            write_shard(shard_path(config.output_dir, pending[item.shard]), rows[item.shard],
                        stats[item.shard], tokenizer.vocabulary)
            rows[item.shard] = []
            written.append(pending[item.shard].name)
    return written, counts


def _add_rows(rows: list[dict], item: LoadedImageItem, codes: torch.Tensor | None, vocabulary: Any) -> None:
    if codes is None:
        return
    from masktok.words import format_mask_words

    limit = np.iinfo(np.uint16).max
    for inst, row in zip(item.instances, codes.tolist()):
        if all(code == ABSENT_CODE for code in row):  # an empty mask kept as an absent entry
            rows.append({**item.meta, **inst, "codes": None, "words": None})
            continue
        if min(row) < 0 or max(row) > limit:
            raise ValueError(f"image {item.meta['image_id']!r}: codes {row} do not fit uint16")
        rows.append({**item.meta, **inst, "codes": row, "words": format_mask_words(row, vocabulary)})


def finalize_output(output_dir: Path, paths: list[Path], vocabulary: Any) -> CodebookUsage:
    """Write ``_codebook_usage.json`` over every shard, then ``_SUCCESS`` (last)."""
    pq = pyarrow_module().parquet
    usage = codebook_usage((pq.read_table(p, columns=["codes"]).column("codes").to_pylist()
                            for p in paths), vocabulary)
    skipped = {"skipped_empty_masks": 0, "skipped_missing_images": 0, "num_images": 0}
    for p in paths:
        metadata = pq.read_schema(p).metadata or {}
        for key in skipped:
            skipped[key] += int(metadata.get(f"masktok.{key}".encode(), b"0"))
    summary = {**asdict(usage), **skipped, "num_shards": len(paths)}
    (output_dir / USAGE).write_text(json.dumps(summary, indent=2))
    (output_dir / SUCCESS).write_text("")
    return usage
