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
workers in order, and the tokenizer encodes each image once for all of its masks, several images
per call when it offers :func:`encode_many`'s batched path. A shard file appears atomically
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
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from masktok.data.tokenize.loader import LoadedImageItem, load_images
from masktok.errors import OutputInUseError
from masktok.masks import BitMasks
from masktok.output_lock import OutputLock, live_holders

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
USAGE = "_codebook_usage.json"
POLICIES = ("error", "skip")


@dataclass(frozen=True)
class TokenizeConfig:
    """How a dataset is tokenized.

    Attributes:
        output_dir: where shards, manifest, usage summary and ``_SUCCESS`` go.
        images_per_shard: images per output file (ignored for SA-1B tars: one file per tar).
        images_per_batch: images per image-encoder pass (tokenizers with ``encode_batch``).
        images_per_call: images handed to the tokenizer per call, for tokenizers without
            ``encode_stream`` (a multiple of ``images_per_batch`` lets their host preprocessing
            overlap the device); also sets how many images the DataLoader keeps ready.
        num_workers: DataLoader workers decoding images and masks.
        num_codes: HiMTok only: keep this many leading codes per mask (None = all).
        include_crowd: tokenize COCO crowd regions too (flagged in ``iscrowd``).
        empty_masks: ``"error"`` (default) or ``"skip"`` (counted in the shard's metadata).
        missing_images: same, for images the tokenizer needs that are not on disk.
        overlap: for tokenizers without ``encode_stream``, run the tokenizer on a background
            thread while the next images are collected (the output is the same either way).
        progress: show progress bars (rank 0 and each rank's own bar).
    """

    output_dir: Path
    images_per_shard: int = 1000
    images_per_batch: int = 8
    images_per_call: int = 32
    num_workers: int = 2
    num_codes: int | None = None
    include_crowd: bool = True
    empty_masks: str = "error"
    missing_images: str = "error"
    overlap: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        for name in ("images_per_shard", "images_per_batch", "images_per_call"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) \
                or self.num_workers < 0:
            raise ValueError(f"num_workers: expected an int >= 0, got {self.num_workers!r}")
        if self.num_codes is not None and (isinstance(self.num_codes, bool)
                                           or not isinstance(self.num_codes, int)
                                           or self.num_codes < 1):
            raise ValueError(f"num_codes: expected a positive int or None, got {self.num_codes!r}")
        for name in ("empty_masks", "missing_images"):
            if getattr(self, name) not in POLICIES:
                raise ValueError(f"{name}: expected one of {POLICIES}, got {getattr(self, name)!r}")


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
# Tokenizer calls
# ---------------------------------------------------------------------------------------------
def needs_image(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` needs the pixels (SAMTok) or encodes masks alone (HiMTok)."""
    explicit = getattr(tokenizer, "needs_image", None)
    if isinstance(explicit, bool):
        return explicit
    return tokenizer.vocabulary.name != "himtok"


def _check_num_codes(tokenizer: Any, num_codes: int | None) -> None:
    if num_codes is not None and tokenizer.vocabulary.name != "himtok":
        raise ValueError(f"num_codes: only HiMTok keeps a prefix of its codes; this tokenizer is "
                         f"{tokenizer.vocabulary.name}")


def encode_many(tokenizer: Any, images: Sequence[Any], masks: Sequence[Any],
                num_codes: int | None = None, batch_size: int = 8) -> list[torch.Tensor]:
    """Codes of several images' masks: images[i] (H_i, W_i, 3) uint8 array or tensor (None for
    image-free tokenizers), masks[i] (N_i, H_i, W_i) bool → one (N_i, L) int64 tensor per image.

    Uses the tokenizer's ``encode_batch(images, masks, batch_size=…)`` when it has one (image
    encoder passes of ``batch_size`` images), else one ``encode`` call per image (still once per
    image, never per mask).
    """
    _check_num_codes(tokenizer, num_codes)
    kwargs = {} if num_codes is None else {"num_codes": num_codes}
    batch = getattr(tokenizer, "encode_batch", None)
    if callable(batch) and len(images) > 1:
        out = list(batch(list(images), list(masks), batch_size=batch_size, **kwargs))
    else:
        out = [tokenizer.encode(image, mask_stack, **kwargs)
               for image, mask_stack in zip(images, masks)]
    for codes, mask_stack in zip(out, masks):
        if codes.ndim != 2 or codes.shape[0] != mask_stack.shape[0]:
            raise ValueError(f"tokenizer returned codes of shape {tuple(codes.shape)} for "
                             f"{mask_stack.shape[0]} masks")
    return [codes.cpu() for codes in out]


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
    if source.images is None and needs_image(tokenizer):
        raise ValueError(f"{source.kind} source: this {tokenizer.vocabulary.name} tokenizer reads the images; "
                         "give the image folder (images=)")
    lock = _take_output(config.output_dir, rank, world_size)
    try:
        return _tokenize(source, tokenizer, config, rank, world_size, tokenizer_id)
    finally:
        lock.release()


def check_dependencies() -> None:
    """Fail now, before any work, when a package the run needs is missing (pyarrow)."""
    pyarrow_module()


def _take_output(out: Path, rank: int, world_size: int) -> OutputLock:
    """This process's lock on ``out``; the other live locks must be this run's other ranks (the
    same world size): both runs check after locking, so two runs never both go on."""
    lock = OutputLock(out, part=f"rank{rank}", info={"rank": rank, "world_size": world_size}).acquire()
    others = {path: holder for path, holder in live_holders(out).items()
              if path != lock.path and holder.info.get("world_size") != world_size}
    if others:
        lock.release()
        path, holder = next(iter(others.items()))
        raise OutputInUseError(f"{out} is being written by another run: {holder.describe()} ({path.name}, "
                               f"{holder.info.get('world_size')} process(es)); wait for it to finish or "
                               "choose another output folder")
    return lock


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

    A tokenizer with ``encode_stream`` (SAMTok) reads the loaded images as a stream, so the device
    never waits between calls; otherwise ``config.images_per_call`` images go to each
    :func:`encode_many` call, on a background thread (``config.overlap``) while the next images
    are collected."""
    items = [(k, ref) for k, shard in enumerate(shards) for ref in plan.images(shard)]
    stream = getattr(tokenizer, "encode_stream", None)
    streaming = callable(stream)
    on_gpu = getattr(getattr(tokenizer, "device", None), "type", None) == "cuda"
    # one worker task per image-encoder batch; two calls' worth of images kept ready
    loaded = load_images(items, config, load_pixels=needs_image(tokenizer), pack_masks=streaming,
                         pin_memory=streaming and on_gpu, group_size=config.images_per_batch,
                         prefetch_images=2 * config.images_per_call)
    if streaming:
        _check_num_codes(tokenizer, config.num_codes)
        encoded = _streamed(loaded, stream, config)
    else:
        encoded = _called(loaded, tokenizer, config)
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


def _streamed(loader: Iterator[LoadedImageItem], encode_stream: Any, config: TokenizeConfig
              ) -> Iterator[tuple[LoadedImageItem, torch.Tensor | None]]:
    """Loaded images → ``encode_stream`` (images with masks only) → (item, codes) in loader order."""
    waiting: deque[LoadedImageItem] = deque()

    def pairs() -> Iterator[tuple[torch.Tensor | None, torch.Tensor | BitMasks]]:
        for item in loader:
            waiting.append(item)
            if item.masks.shape[0]:
                yield item.pixels, item.masks

    codes_stream = encode_stream(pairs(), batch_size=config.images_per_batch)
    try:
        for codes in codes_stream:
            while not waiting[0].masks.shape[0]:
                yield waiting.popleft(), None
            yield waiting.popleft(), codes.cpu()
        while waiting:
            yield waiting.popleft(), None
    finally:
        codes_stream.close()


def _called(loader: Iterator[LoadedImageItem], tokenizer: Any, config: TokenizeConfig
            ) -> Iterator[tuple[LoadedImageItem, torch.Tensor | None]]:
    """Loaded images in groups of ``config.images_per_call`` → :func:`encode_many` → (item, codes)."""

    def encode(batch: list[LoadedImageItem]) -> dict[int, torch.Tensor]:
        to_encode = [i for i, item in enumerate(batch) if item.masks.shape[0]]
        codes = encode_many(tokenizer, [batch[i].pixels for i in to_encode],
                            [batch[i].masks for i in to_encode], config.num_codes,
                            config.images_per_batch) if to_encode else []
        return dict(zip(to_encode, codes))

    def finish(batch: list[LoadedImageItem], job: Any) -> Iterator[tuple[LoadedImageItem, Any]]:
        codes = job.result() if isinstance(job, Future) else job
        for i, item in enumerate(batch):
            yield item, codes.get(i)

    pool = ThreadPoolExecutor(max_workers=1) if config.overlap else None
    submit = (lambda batch: pool.submit(encode, batch)) if pool is not None else encode
    in_flight: tuple[list[LoadedImageItem], Any] | None = None
    buffer: list[LoadedImageItem] = []
    try:
        for item in loader:
            buffer.append(item)
            if len(buffer) >= config.images_per_call:
                job, buffer = (buffer, submit(buffer)), []
                if in_flight is not None:
                    yield from finish(*in_flight)
                in_flight = job
        if buffer:
            job = (buffer, submit(buffer))
            if in_flight is not None:
                yield from finish(*in_flight)
            in_flight = job
        if in_flight is not None:
            yield from finish(*in_flight)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


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
