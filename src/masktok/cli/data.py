"""``masktok tokenize-dataset`` and ``masktok build-sft TASK``: mask datasets → words → SFT data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from masktok.cli.dataclass_options import DataclassOptions, with_options
from masktok.cli.tokenizer_option import (DEFAULT_TOKENIZER, TOKENIZER_HELP, check_device, tokenizer_id,
                                          tokenizer_path)
from masktok.data.sft import TASKS
from masktok.data.sft.base import BuildConfig
from masktok.data.tokenize.config import TokenizeConfig

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
console = Console(stderr=True)

SOURCE_HELP = "coco | panoptic | refs | yolo | sa1b | sa1b-tar"


def _device(device: Optional[str]) -> str:
    """``--device``, checked (default: cuda:LOCAL_RANK when a GPU is there, else cpu)."""
    if device is not None:
        check_device(device)
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def _names(path: Optional[Path]) -> Optional[tuple[str, ...]]:
    if path is None:
        return None
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names:
        raise typer.BadParameter(f"{path} lists no class name", param_hint="--names")
    return names


def _source(kind: str, annotations: Optional[Path], images: Optional[Path],
            instances: Optional[Path], panoptic_pngs: Optional[Path], labels: Optional[Path],
            names: Optional[Path], split: Optional[str], tars: Optional[list[Path]],
            orphan_labels: str) -> Any:
    from masktok.data.tokenize.shards import DatasetSource

    return DatasetSource(kind, annotations=annotations, images=images, instances=instances,
                         panoptic_pngs=panoptic_pngs, labels=labels, class_names=_names(names),
                         split=split, tars=tuple(tars or ()), orphan_labels=orphan_labels)


_TOKENIZE_OPTIONS = DataclassOptions(TokenizeConfig, skip=frozenset({"output_dir"}),
                                     flags={"num_workers": "--workers", "include_crowd": "--crowd"})


def tokenize_dataset_command(
    kind: str = typer.Argument(..., help=f"Dataset layout: {SOURCE_HELP}."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, help=TOKENIZER_HELP),
    out: Path = typer.Option(..., help="Output folder (Parquet shards, manifest, _SUCCESS); one run at a time."),
    annotations: Optional[Path] = typer.Option(None, help="COCO / panoptic JSON, or refs file."),
    images: Optional[Path] = typer.Option(None, help="Image folder (sa1b: JSON + JPEG folder); coco, panoptic "
                                                     "and refs need it only for tokenizers that read images "
                                                     "(SAMTok)."),
    instances: Optional[Path] = typer.Option(None, help="refs: the COCO instances JSON."),
    panoptic_pngs: Optional[Path] = typer.Option(None, help="panoptic: the id-PNG folder."),
    labels: Optional[Path] = typer.Option(None, help="yolo: the labels folder."),
    names: Optional[Path] = typer.Option(None, help="yolo: class names, one per line."),
    split: Optional[str] = typer.Option(None, help="refs: keep this split only."),
    tar: Optional[list[Path]] = typer.Option(None, help="sa1b-tar: a tar shard (repeat)."),
    orphan_labels: str = typer.Option("error", help="yolo label files without image: error | ignore."),
    device: Optional[str] = typer.Option(None, help="Default: cuda:LOCAL_RANK when available, else cpu."),
    cuda_graphs: bool = typer.Option(True, help="SAMTok on CUDA: replay the image encoder as a CUDA graph."),
    compile: bool = typer.Option(False, help="SAMTok: torch.compile the image encoder and the mask side (fastest; ~1 % of codes differ from the eager path)."),
    **settings: Any,
) -> None:
    """Encode every mask of a dataset into codes and words: one Parquet per shard, resumable.

    The settings' defaults are TokenizeConfig's (masktok.data.tokenize.config). Run as
    ``torchrun --nproc-per-node N $(which masktok) tokenize-dataset …`` to split the shards over
    N processes (one GPU each).
    """
    import torch

    from masktok.data.tokenize.pipeline import check_dependencies, tokenize_dataset, usage_table
    from masktok.tokenizers import load_tokenizer

    check_dependencies()  # before any work
    tokenizer_folder = tokenizer_path(tokenizer)
    device_name = _device(device)
    started_group = False
    try:
        source = _source(kind, annotations, images, instances, panoptic_pngs, labels, names, split,
                         tar, orphan_labels)
        config = TokenizeConfig(output_dir=out, **_TOKENIZE_OPTIONS.given(settings))
        if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("gloo")
            started_group = True
        mask_tokenizer = load_tokenizer(tokenizer_folder, device=device_name,
                                        **({"compile": True} if compile else {}))
        if source.images is None and mask_tokenizer.needs_image:
            raise typer.BadParameter(f"the {mask_tokenizer.display_name} tokenizer reads the images; pass "
                                     "--images", param_hint="--images")
        if cuda_graphs and mask_tokenizer.device.type == "cuda":
            mask_tokenizer.capture_image_encoder([config.images_per_batch])
        report = tokenize_dataset(source, mask_tokenizer, config,
                                  tokenizer_id=tokenizer_id(tokenizer_folder))
    finally:
        if started_group:
            torch.distributed.destroy_process_group()
    console.print(f"rank {report.rank}/{report.world_size}: {len(report.shards_written)} shard(s) "
                  f"written, {len(report.shards_skipped)} already done, "
                  f"{len(report.shards_redone)} redone; {report.images} images, {report.masks} "
                  f"masks in {report.seconds:.1f} s ({report.masks_per_second:.0f} masks/s); "
                  f"left out: {report.skipped_empty_masks} empty masks, "
                  f"{report.skipped_missing_images} missing images")
    if report.usage is not None:
        console.print(usage_table(report.usage))
        console.print(f"complete: {out}")
    elif not report.complete:
        console.print(f"{out} is not complete yet (other ranks or an interrupted run)")


app.command("tokenize-dataset")(with_options(tokenize_dataset_command, _TOKENIZE_OPTIONS))

TASK_HELP = " | ".join(TASKS)
OUTPUT_FORMATS = ("llava", "trl")


def _words(tokenizer: Optional[str], parquet: Optional[Path], device: Optional[str]) -> Any:
    from masktok.data.sft import ParquetWords, TokenizerWords
    from masktok.tokenizers import load_tokenizer

    if tokenizer is None and parquet is None:
        tokenizer = DEFAULT_TOKENIZER
    mask_tokenizer = load_tokenizer(tokenizer_path(tokenizer), device=_device(device)) if tokenizer else None
    if parquet is not None:
        return ParquetWords(parquet, mask_tokenizer)
    return TokenizerWords(mask_tokenizer)


def _need(value: Any, option: str, task: str) -> Any:
    if value is None:
        raise ValueError(f"{task}: {option} is required")
    return value


def _build(task: str, words: Any, config: Any, o: dict[str, Any]) -> Any:
    """Read the task's inputs from the options and run its builder."""
    from masktok.data import sft
    from masktok.annotations.grandf import read_grandf

    ann, images = o["annotations"], o["images"]
    from masktok.data.sft.himtok_jsonl import (
        build_from_himtok_jsonl,
        is_himtok_sft_jsonl,
        read_himtok_sft_jsonl,
    )

    if ann is not None and is_himtok_sft_jsonl(ann):
        if task not in ("himtok", "res"):
            raise ValueError(f"{ann} is HiMTok's SFT format (one image and one mask PNG per record, "
                             "placeholder mask words in the answers): read it with `masktok build-sft "
                             "himtok` or `res`, or replace its placeholders in place with `masktok "
                             f"convert-sft-masks`; task {task!r} needs other annotations")
        records = read_himtok_sft_jsonl(ann, images)
        return build_from_himtok_jsonl(records, words, config, task=task)

    empty = config.empty_masks

    def refs() -> list:
        return sft.read_refs(_need(ann, "--annotations (refs)", task),
                             _need(o["instances"], "--instances", task),
                             _need(images, "--images", task), split=o["split"])

    def instance_images() -> list:
        kind = o["source"]
        if kind != "yolo":
            _need(images, "--images", task)
        return sft.instance_images(_source(kind, ann, images, o["instances"], o["panoptic_pngs"],
                                           o["labels"], o["names"], o["split"], None,
                                           o["orphan_labels"]))

    def gcg() -> Any:
        path = _need(ann, "--annotations", task)
        if o["captions"] is not None:
            from masktok.eval.datasets import read_glamm_gcg
            items = sft.grounded_from_gcg_samples(read_glamm_gcg(path, o["captions"]))
        elif path.suffix == ".jsonl":
            from masktok.eval.datasets import read_gcg_jsonl
            items = sft.grounded_from_gcg_samples(read_gcg_jsonl(path))
        else:
            items = read_grandf(path)
        return sft.build_gcg(items, _need(images, "--images", task), words, config, o["style"])

    def psg() -> Any:
        from masktok.eval.scene_datasets import read_openpsg
        dataset = read_openpsg(_need(ann, "--annotations", task),
                               _need(o["panoptic_pngs"], "--panoptic-pngs", task), split=o["split"])
        return sft.build_psg(dataset, _need(images, "--images", task), words, config)

    def regions(build: Any) -> Any:
        path = _need(ann, "--annotations", task)
        items = (sft.read_region_jsonl(path, _need(images, "--images", task))
                 if path.suffix == ".jsonl" else sft.regions_from_refs(refs(), empty))
        return build(items, words, config)

    def himtok_formats() -> Any:
        targets = (sft.targets_from_instances(instance_images(), empty) if o["source"] != "refs"
                   else sft.targets_from_refs(refs(), empty))
        from masktok.data.sft.himtok_formats import FORMATS
        formats = tuple(o["himtok_formats"].split(",")) if o["himtok_formats"] else FORMATS
        return sft.build_himtok(targets, words, config, formats=formats)

    builders = {
        "res": lambda: sft.build_res(refs(), words, config),
        "gres": lambda: sft.build_gres(refs(), words, config),
        "gcg": gcg,
        "psg": psg,
        "instance": lambda: sft.build_instance(instance_images(), words, config, negatives=o["negatives"]),
        "multi_round": lambda: sft.build_multi_round(instance_images(), words, config, rounds=o["rounds"]),
        "region_caption": lambda: regions(sft.build_region_caption),
        "region_vqa": lambda: regions(sft.build_region_vqa),
        "himtok": himtok_formats,
    }
    if task not in builders:
        raise ValueError(f"task: expected one of {TASK_HELP.replace(' | ', ', ')}, got {task!r}")
    return builders[task]()


_BUILD_OPTIONS = DataclassOptions(BuildConfig, skip=frozenset({"zoom", "crops_dir"}))


def build_sft_command(
    task: str = typer.Argument(..., help=TASK_HELP),
    out: Path = typer.Option(..., help="Output folder."),
    tokenizer: Optional[str] = typer.Option(None, help="Mask tokenizer for words on the fly (and zoom crops): "
                                                       "'default' (the shipped one; the default without "
                                                       "--parquet) or a tokenizer folder or file."),
    parquet: Optional[Path] = typer.Option(None, help="A finished tokenize-dataset output to read words from."),
    annotations: Optional[Path] = typer.Option(None, help="The task's annotation file (see the docs)."),
    images: Optional[Path] = typer.Option(None, help="Image folder (HiMTok SFT JSONL: the root its image/mask paths are relative to; default the JSONL's folder)."),
    instances: Optional[Path] = typer.Option(None, help="COCO instances JSON the refs point into."),
    captions: Optional[Path] = typer.Option(None, help="gcg: GLaMM caption GT (with --annotations = mask GT)."),
    source: str = typer.Option("coco", help="instance / multi_round / himtok input: coco | panoptic | yolo | refs."),
    panoptic_pngs: Optional[Path] = typer.Option(None, help="Panoptic id-PNG folder (panoptic, psg)."),
    labels: Optional[Path] = typer.Option(None, help="yolo: the labels folder."),
    names: Optional[Path] = typer.Option(None, help="yolo: class names, one per line."),
    orphan_labels: str = typer.Option("error", help="yolo label files without image: error | ignore."),
    split: Optional[str] = typer.Option(None, help="Keep this split only (refs, psg)."),
    style: str = typer.Option("detailed", help="gcg prompt: detailed | brief."),
    negatives: int = typer.Option(1, help="instance: absent categories listed per sample."),
    rounds: int = typer.Option(3, help="multi_round: turns per conversation."),
    himtok_formats: Optional[str] = typer.Option(None, help="himtok: comma-separated formats (default all)."),
    zoom: bool = typer.Option(True, help="Zoom-in crops for small regions (region tasks)."),
    formats: str = typer.Option("llava,trl", help="Output formats: llava, trl."),
    render: int = typer.Option(4, help="Sample conversations rendered with overlays."),
    relative_to: Optional[Path] = typer.Option(None, help="Write image paths relative to this folder."),
    text_tokenizer: Optional[Path] = typer.Option(None, help="HF tokenizer for token lengths in the card."),
    device: Optional[str] = typer.Option(None, help="Tokenizer device (default cuda when available)."),
    **settings: Any,
) -> None:
    """Build one task's SFT conversations (LLaVA JSON + TRL JSONL), its data card and renders.

    The builders' settings (seed, missing images, empty masks, sample cap) default to
    BuildConfig's (masktok.data.sft.base)."""
    from masktok.output_lock import OutputLock
    from masktok.masks.zoom import ZoomConfig

    if task not in TASKS:
        raise typer.BadParameter(f"expected one of {', '.join(TASKS)}, got {task!r}", param_hint="TASK")
    output_formats = tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = [f for f in output_formats if f not in OUTPUT_FORMATS]
    if unknown or not output_formats:
        raise typer.BadParameter(f"expected a comma-separated list of {', '.join(OUTPUT_FORMATS)}, got "
                                 f"{formats!r}", param_hint="--formats")
    if text_tokenizer is not None and not text_tokenizer.is_dir():
        raise typer.BadParameter(f"{text_tokenizer}: no such folder (a local Hugging Face tokenizer)",
                                 param_hint="--text-tokenizer")
    if parquet is not None:
        from masktok.data.tokenize.pipeline import check_dependencies

        check_dependencies()  # reading Parquet needs pyarrow
    config = BuildConfig(zoom=ZoomConfig() if zoom else None, crops_dir=out / "crops",
                         **_BUILD_OPTIONS.given(settings))
    with OutputLock(out, command=f"masktok build-sft {task}"):
        written = _build_and_write(task, tokenizer, parquet, device, out, config, output_formats, render,
                                   relative_to, text_tokenizer, dict(
                                       annotations=annotations, images=images, instances=instances,
                                       captions=captions, source=source, panoptic_pngs=panoptic_pngs,
                                       labels=labels, names=names, orphan_labels=orphan_labels,
                                       split=split, style=style, negatives=negatives, rounds=rounds,
                                       himtok_formats=himtok_formats))
    for name, path in written.files.items():
        console.print(f"{name}: {path}")
    for path in written.rendered:
        console.print(f"rendered: {path}")


def _build_and_write(task: str, tokenizer: Optional[str], parquet: Optional[Path], device: Optional[str],
                     out: Path, config: Any, output_formats: tuple[str, ...], render: int,
                     relative_to: Optional[Path], text_tokenizer: Optional[Path], options: dict[str, Any]) -> Any:
    from masktok.data.sft import write_build
    from masktok.data.sft.card import hf_token_counter

    words = _words(tokenizer, parquet, device)
    result = _build(task, words, config, options)
    counter = None
    if text_tokenizer is not None:
        from transformers import AutoTokenizer
        counter = hf_token_counter(AutoTokenizer.from_pretrained(text_tokenizer),
                                   words.vocabulary)
    return write_build(result, words.vocabulary, out, formats=output_formats, render=render, seed=config.seed,
                       relative_to=relative_to, count_tokens=counter, console=console)


app.command("build-sft")(with_options(build_sft_command, _BUILD_OPTIONS))


@app.command("convert-sft-masks")
def convert_sft_masks_command(
    source: Path = typer.Argument(..., help="A HiMTok SFT JSONL, or a folder searched for them (recursively)."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, help=TOKENIZER_HELP),
    out: Path = typer.Option(..., help="Output folder (the same relative layout)."),
    root: Optional[Path] = typer.Option(None, help="Folder the 'image'/'mask' paths are relative to "
                                                   "(default: SOURCE if a folder, else the JSONL's folder)."),
    threshold: int = typer.Option(127, min=0, max=254, help="Mask PNG foreground: grey level > threshold."),
    skip_missing: bool = typer.Option(False, help="Leave out (and count) records whose image or mask is missing."),
    batch: int = typer.Option(64, min=1, help="Records between progress updates and flushes."),
    device: Optional[str] = typer.Option(None, help="Tokenizer device (default cuda when available)."),
) -> None:
    """Replace the placeholder mask words of HiMTok SFT data with real words (resumable)."""
    from rich.progress import track

    from masktok.data.sft import TokenizerWords
    from masktok.data.sft.himtok_jsonl import convert_himtok_sft
    from masktok.tokenizers import load_tokenizer

    words = TokenizerWords(load_tokenizer(tokenizer_path(tokenizer), device=_device(device)))
    report = convert_himtok_sft(source, out, words, root=root, threshold=threshold,
                                skip_missing=skip_missing, batch=batch,
                                progress=lambda it, name, n: track(it, description=name, total=n,
                                                                   console=console))
    for name, counts in report.files.items():
        console.print(f"{name}: {counts['converted']} converted, {counts['already_done']} already done, "
                      f"{counts['missing_files']} skipped (missing image or mask)")
    console.print(report.summary())
