"""``masktok eval …``: score prediction files against benchmark ground truth.

Every command writes ``metrics.json``, ``metrics.md``, ``per_sample.jsonl`` and a ``worst/``
folder of overlays into ``--out``. Prediction and annotation formats: ``docs/eval.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from masktok.cli.tokenizer_option import DEFAULT_TOKENIZER, TOKENIZER_HELP, check_device, tokenizer_path

app = typer.Typer(help="Evaluate predictions: RES, GRES, REC, GCG, PSG, open-vocabulary "
                       "segmentation, tokenizer reconstruction, mask perception.",
                  no_args_is_help=True)
console = Console()

PRED = typer.Option(..., "--predictions", "-p", exists=True, dir_okay=False, help="Prediction JSONL.")
OUT = typer.Option(..., "--out", "-o", file_okay=False, help="Report folder (created).")
TOKENIZER = typer.Option(None, "--tokenizer", "-t",
                         help="Tokenizer that decodes the mask words of text answers: the one the predictions "
                              "were made with ('default' for the shipped one, or a folder/file). There is no "
                              "implicit default: another tokenizer's words would decode into wrong masks.")
TOKENIZER_KIND = typer.Option(None, "--tokenizer-kind",
                              help="himtok, samtok or package.module:Class (default: detected).")
IMAGES = typer.Option(None, "--images", exists=True, file_okay=False,
                      help="Image folder (for image-conditioned tokenizers and overlays).")
DEVICE = typer.Option("cpu", "--device", help="Device for the tokenizer (and IoU accumulation).")
LENIENT = typer.Option(False, "--lenient", help="Repair malformed mask words (repairs are reported).")
ALLOW_MISSING = typer.Option(False, "--allow-missing",
                             help="Score samples without a prediction as empty answers.")
REFINE = typer.Option(None, "--refine", help="Refine decoded masks with a SAM 2 refiner: 'sam2' (needs --images).")
REFINER = typer.Option(None, "--refiner", exists=True,
                       help="The refiner for --refine: a masktok refiner folder or a sam2.1_hiera_*.pt file.")
WORST = typer.Option(5, "--worst", min=0, help="How many worst-case overlays to draw.")
PROTOCOL = typer.Option("reference", "--protocol",
                        help="reference: the published evaluation code exactly (comparable with "
                             "papers); strict: masktok's variant (docs/eval.md lists the differences).")


def _tokenizer(path: Optional[str], kind: Optional[str], device: str, refine: Optional[str] = None,
               refiner: Optional[Path] = None) -> Any:
    check_device(device)
    if path is None:
        if refine is not None:
            raise typer.BadParameter("--refine refines decoded mask words: it needs --tokenizer",
                                     param_hint="--refine")
        return None
    from masktok.eval.runner import load_tokenizer
    from masktok.tokenizers.refine import with_refinement

    return with_refinement(load_tokenizer(tokenizer_path(path), kind, device=device), refine, refiner,
                           device=device)


def _show(result: Any) -> None:
    if result.headline:
        console.print(f"[bold red]{result.headline}[/]")
    table = Table(title=f"masktok eval {result.task}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        if isinstance(value, float):
            text = f"{value:.4f}" if value == value else "n/a"
        else:
            text = str(value)
        table.add_row(name, text)
    console.print(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if result.paths:
        console.print(f"report: {result.paths['metrics'].parent}")


def _run(fn: Any, *args: Any, **kwargs: Any) -> None:
    _show(fn(*args, **kwargs))


@app.command("res")
def res(predictions: Path = PRED,
        annotations: Path = typer.Option(..., "--annotations", "-a", exists=True,
                                         help="Referring JSONL, refs(.p/.json) or COCO instances."),
        out: Path = OUT,
        instances: Optional[Path] = typer.Option(None, "--instances", exists=True,
                                                 help="COCO instances JSON for a refs file."),
        split: Optional[str] = typer.Option(None, "--split", help="Refs split (val, testA, …)."),
        tokenizer: Optional[str] = TOKENIZER, tokenizer_kind: Optional[str] = TOKENIZER_KIND,
        refine: Optional[str] = REFINE, refiner: Optional[Path] = REFINER,
        images: Optional[Path] = IMAGES, device: str = DEVICE, lenient: bool = LENIENT,
        allow_missing: bool = ALLOW_MISSING, worst: int = WORST, protocol: str = PROTOCOL) -> None:
    """Referring expression segmentation: cIoU, gIoU, Pr@0.5…0.9."""
    from masktok.eval.runner import run_referring

    _run(run_referring, "res", predictions, annotations, out, protocol=protocol, instances=instances,
         split=split,
         tokenizer=_tokenizer(tokenizer, tokenizer_kind, device, refine, refiner), image_root=images, lenient=lenient,
         allow_missing=allow_missing, worst=worst, device=None if device == "cpu" else device)


@app.command("gres")
def gres(predictions: Path = PRED,
         annotations: Path = typer.Option(..., "--annotations", "-a", exists=True,
                                          help="Referring JSONL, grefs(unc).json or COCO instances."),
         out: Path = OUT,
         instances: Optional[Path] = typer.Option(None, "--instances", exists=True,
                                                  help="COCO instances JSON for a grefs file."),
         split: Optional[str] = typer.Option(None, "--split", help="Refs split (val, testA, …)."),
         tokenizer: Optional[str] = TOKENIZER, tokenizer_kind: Optional[str] = TOKENIZER_KIND,
         refine: Optional[str] = REFINE, refiner: Optional[Path] = REFINER,
         images: Optional[Path] = IMAGES, device: str = DEVICE, lenient: bool = LENIENT,
         allow_missing: bool = ALLOW_MISSING, worst: int = WORST, protocol: str = PROTOCOL) -> None:
    """Generalised RES (gRefCOCO, ReLA's evaluator): cIoU, gIoU, N-acc, T-acc, Pr@0.7…0.9."""
    from masktok.eval.runner import run_referring

    _run(run_referring, "gres", predictions, annotations, out, protocol=protocol, instances=instances,
         split=split,
         tokenizer=_tokenizer(tokenizer, tokenizer_kind, device, refine, refiner), image_root=images, lenient=lenient,
         allow_missing=allow_missing, worst=worst, device=None if device == "cpu" else device)


@app.command("rec")
def rec(predictions: Path = PRED,
        annotations: Path = typer.Option(..., "--annotations", "-a", exists=True,
                                         help="Referring JSONL, refs(.p/.json) or COCO instances."),
        out: Path = OUT,
        box_format: str = typer.Option("internvl", "--box-format",
                                       help="internvl (InternVL, HiMTok), qwen_vl (Qwen-VL), qwen_norm "
                                            "(Qwen2-VL, Qwen3-VL: 0-1000), qwen_abs (Qwen2.5-VL), pixels."),
        input_size: Optional[str] = typer.Option(None, "--input-size",
                                                 help="WxH of the frame qwen_abs boxes refer to."),
        box_from_masks: bool = typer.Option(False, "--box-from-masks",
                                            help="Score the tight box of the answer's masks."),
        instances: Optional[Path] = typer.Option(None, "--instances", exists=True),
        split: Optional[str] = typer.Option(None, "--split"),
        tokenizer: Optional[str] = TOKENIZER, tokenizer_kind: Optional[str] = TOKENIZER_KIND,
        refine: Optional[str] = REFINE, refiner: Optional[Path] = REFINER,
        images: Optional[Path] = IMAGES, device: str = DEVICE, lenient: bool = LENIENT,
        allow_missing: bool = ALLOW_MISSING, worst: int = WORST, protocol: str = PROTOCOL) -> None:
    """Referring expression comprehension: Acc@0.5/0.7/0.9 of boxes."""
    from masktok.eval.runner import run_rec

    frame = None
    if input_size is not None:
        try:
            w, h = (int(v) for v in input_size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(f"expected WxH, e.g. 1288x728, got {input_size!r}",
                                     param_hint="--input-size") from None
        if w <= 0 or h <= 0:
            raise typer.BadParameter(f"expected positive WxH, got {input_size!r}", param_hint="--input-size")
        frame = (w, h)
    _run(run_rec, predictions, annotations, out, box_format=box_format, protocol=protocol,
         input_size=frame,
         box_from_masks=box_from_masks, instances=instances, split=split,
         tokenizer=_tokenizer(tokenizer, tokenizer_kind, device, refine, refiner), image_root=images, lenient=lenient,
         allow_missing=allow_missing, worst=worst)


@app.command("gcg")
def gcg(predictions: Path = PRED,
        annotations: Path = typer.Option(..., "--annotations", "-a", exists=True,
                                         help="masktok GCG JSONL, or GLaMM's *_gcg_coco_mask_gt.json."),
        out: Path = OUT,
        captions: Optional[Path] = typer.Option(None, "--captions", exists=True,
                                                help="GLaMM's *_gcg_coco_caption_gt.json."),
        text_model: Optional[str] = typer.Option(
            None, "--text-model",
            help="Phrase-similarity encoder: a model folder, a model name in the local Hugging Face "
                 "cache, or 'lexical'. Default: bert-base-uncased from the cache (as GLaMM), else "
                 "lexical with a warning that recall is not comparable with published numbers."),
        hf_cache: Optional[Path] = typer.Option(None, "--hf-cache", exists=True, file_okay=False,
                                                help="Hugging Face cache to look in (default: the standard one)."),
        no_caption_metrics: bool = typer.Option(False, "--no-caption-metrics",
                                                help="Skip METEOR/CIDEr."),
        tokenizer: Optional[str] = TOKENIZER, tokenizer_kind: Optional[str] = TOKENIZER_KIND,
        refine: Optional[str] = REFINE, refiner: Optional[Path] = REFINER,
        images: Optional[Path] = IMAGES, device: str = DEVICE, lenient: bool = LENIENT,
        allow_missing: bool = ALLOW_MISSING, worst: int = WORST, protocol: str = PROTOCOL) -> None:
    """Grounded conversation generation: AP50, mIoU, recall, METEOR, CIDEr."""
    from masktok.eval.scene_runner import run_gcg
    from masktok.words.phrase_similarity import glamm_similarity

    _run(lambda: run_gcg(predictions, annotations, out, captions=captions, protocol=protocol,
                         similarity=glamm_similarity(text_model, device, hf_cache),
                         caption_metrics=not no_caption_metrics,
                         tokenizer=_tokenizer(tokenizer, tokenizer_kind, device, refine, refiner), image_root=images,
                         lenient=lenient, allow_missing=allow_missing, worst=worst))


@app.command("psg")
def psg(predictions: Path = PRED,
        annotations: Path = typer.Option(..., "--annotations", "-a", exists=True, help="OpenPSG psg.json."),
        out: Path = OUT,
        panoptic_root: Path = typer.Option(..., "--panoptic-root", exists=True, file_okay=False,
                                           help="Folder the pan_seg_file_name paths are relative to."),
        split: str = typer.Option("test", "--split", help="test, train, or all."),
        tokenizer: Optional[str] = TOKENIZER, tokenizer_kind: Optional[str] = TOKENIZER_KIND,
        refine: Optional[str] = REFINE, refiner: Optional[Path] = REFINER,
        images: Optional[Path] = IMAGES, device: str = DEVICE, lenient: bool = LENIENT,
        allow_missing: bool = ALLOW_MISSING, protocol: str = PROTOCOL) -> None:
    """Panoptic scene graphs: R@K and mR@K (OpenPSG's protocol, or masktok's strict one)."""
    from masktok.eval.scene_runner import run_psg

    _run(run_psg, predictions, annotations, out, panoptic_root=panoptic_root, protocol=protocol,
         split=None if split == "all" else split, tokenizer=_tokenizer(tokenizer, tokenizer_kind, device, refine, refiner),
         image_root=images, lenient=lenient, allow_missing=allow_missing)


@app.command("ovseg")
def ovseg(predictions: Path = PRED,
          annotations: Path = typer.Option(..., "--annotations", "-a", exists=True,
                                           help="Semantic JSON index, or a folder of label PNGs."),
          out: Path = OUT,
          classes: Optional[Path] = typer.Option(None, "--classes", exists=True, dir_okay=False,
                                                 help="Class names file (with a label folder)."),
          reduce_zero_label: bool = typer.Option(False, "--reduce-zero-label",
                                                 help="Label 0 is background: ignore it, shift the rest."),
          tokenizer: Optional[str] = TOKENIZER, tokenizer_kind: Optional[str] = TOKENIZER_KIND,
          refine: Optional[str] = REFINE, refiner: Optional[Path] = REFINER,
          images: Optional[Path] = IMAGES, device: str = DEVICE, lenient: bool = LENIENT,
          allow_missing: bool = ALLOW_MISSING, worst: int = WORST) -> None:
    """Open-vocabulary semantic segmentation: mIoU (smaller area wins overlaps)."""
    from masktok.eval.scene_runner import run_ovseg

    if annotations.is_dir() and classes is None:
        raise typer.BadParameter(f"{annotations} is a label folder, which needs --classes",
                                 param_hint="--annotations")
    _run(run_ovseg, predictions, annotations, out, classes=classes, reduce_zero_label=reduce_zero_label,
         tokenizer=_tokenizer(tokenizer, tokenizer_kind, device, refine, refiner), image_root=images, lenient=lenient,
         allow_missing=allow_missing, worst=worst)


@app.command("recon")
def recon(annotations: Path = typer.Option(..., "--annotations", "-a", exists=True,
                                           help="COCO instances JSON whose masks are reconstructed."),
          tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", "-t", help="Tokenizer to test: " + TOKENIZER_HELP),
          out: Path = OUT, tokenizer_kind: Optional[str] = TOKENIZER_KIND,
        refine: Optional[str] = REFINE, refiner: Optional[Path] = REFINER,
          images: Optional[Path] = IMAGES, device: str = DEVICE,
          prefix_lengths: Optional[str] = typer.Option(None, "--prefix-lengths",
                                                       help="Comma-separated code lengths (default: all)."),
          max_images: Optional[int] = typer.Option(None, "--max-images", min=1),
          worst: int = WORST) -> None:
    """Tokenizer reconstruction r-Acc (mean IoU of encode → decode), per prefix length."""
    from masktok.eval.scene_runner import run_recon

    lengths = None
    if prefix_lengths:
        try:
            lengths = [int(v) for v in prefix_lengths.split(",")]
        except ValueError:
            raise typer.BadParameter(f"expected comma-separated integers, got {prefix_lengths!r}",
                                     param_hint="--prefix-lengths") from None
        if any(length < 1 for length in lengths):
            raise typer.BadParameter(f"code lengths start at 1, got {prefix_lengths!r}", param_hint="--prefix-lengths")
    _run(run_recon, annotations, _tokenizer(tokenizer, tokenizer_kind, device, refine, refiner), out, image_root=images,
         prefix_lengths=lengths, max_images=max_images, worst=worst)


@app.command("perception")
def perception(predictions: Path = PRED,
               annotations: Path = typer.Option(..., "--annotations", "-a", exists=True,
                                                help="Multiple-choice JSONL."),
               out: Path = OUT, allow_missing: bool = ALLOW_MISSING) -> None:
    """Mask perception multiple-choice accuracy."""
    from masktok.eval.scene_runner import run_perception

    _run(run_perception, predictions, annotations, out, allow_missing=allow_missing)
