"""``masktok encode`` / ``masktok decode``: masks ↔ mask words with any tokenizer checkpoint.

    masktok encode --tokenizer PATH --image IMG --masks masks.json   → words JSON
    masktok decode --tokenizer PATH --image IMG --words "…"          → RLE JSON (+ --overlay PNG)

``--masks`` takes JSON (a list of COCO RLEs, of objects with a ``segmentation`` — RLE or COCO
polygons — or ``{"masks": [...]}``) or binary mask PNGs; repeat it to add files. The tokenizer
folder or file is opened by :func:`masktok.tokenizers.load_tokenizer` (SAMTok, or any family named
by ``"tokenizer_type"`` in its ``config.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(no_args_is_help=True)

_TOKENIZER_HELP = "Tokenizer folder or file (masktok folder, mask_tokenizer_256x2.pth, official VLM folder, …)."
_DEVICE_HELP = "Device to run on (cpu, cuda, cuda:1, …)."
_DTYPE_HELP = "Compute dtype: float32, bfloat16 or float16 (default: bf16 on CUDA, float32 on CPU)."


def _fail(error: Exception | str) -> None:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(code=1)


def _dtype(name: Optional[str]):
    import torch

    if name is None:
        return None
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise typer.BadParameter(f"expected one of {sorted(table)}, got {name!r}", param_hint="--dtype")
    return table[name]


def _segmentation_to_mask(item: Any, size: Optional[tuple[int, int]], where: str):
    from masktok.masks import polygons_to_mask, rle_to_mask

    if isinstance(item, dict) and "counts" in item:
        return rle_to_mask(item, size=size)
    if isinstance(item, dict) and "segmentation" in item:
        return _segmentation_to_mask(item["segmentation"], size, where)
    if isinstance(item, list):
        if size is None:
            raise ValueError(f"{where}: polygons need the image size; pass --image")
        return polygons_to_mask(item, size[0], size[1])
    raise ValueError(f"{where}: expected a COCO RLE, an object with 'segmentation', or a polygon list")


def read_masks(paths: list[Path], size: Optional[tuple[int, int]]):
    """Masks from JSON / PNG files → (N, H, W) bool numpy array."""
    import numpy as np

    from masktok.masks import read_mask_png

    masks = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"masks file not found: {path}")
        if path.suffix.lower() == ".png":
            masks.append(read_mask_png(path))
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if isinstance(data, dict):
            data = data.get("masks", data.get("annotations", [data]))
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of masks")
        masks.extend(_segmentation_to_mask(item, size, f"{path}[{i}]") for i, item in enumerate(data))
    if not masks:
        if size is None:
            raise ValueError("no masks given and no image to size an empty mask stack")
        return np.zeros((0, *size), dtype=bool)
    shapes = {m.shape for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"masks have different sizes: {sorted(shapes)}")
    return np.stack(masks)


def overlay_image(image: Any, masks: Any, alpha: float = 0.5):
    """An RGB PIL image with each mask blended in its own colour."""
    import colorsys

    import numpy as np
    from PIL import Image

    from masktok.tokenizers.samtok.preprocess import load_rgb

    canvas = load_rgb(image).astype(np.float32)
    for i, mask in enumerate(np.asarray(masks, dtype=bool)):
        colour = np.array(colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0), dtype=np.float32) * 255
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * colour
    return Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8))


def _emit(payload: dict, output: Optional[Path]) -> None:
    text = json.dumps(payload, indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text + "\n")


@app.command("encode")
def encode(
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help=_TOKENIZER_HELP),
    image: Optional[Path] = typer.Option(None, "--image", "-i", help="The image the masks belong to."),
    masks: list[Path] = typer.Option(..., "--masks", "-m", help="Masks: JSON (RLE / polygons) or binary PNG; repeatable."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON here instead of stdout."),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=_DTYPE_HELP),
) -> None:
    """Tokenize masks into mask words; prints JSON with each mask's codes and words."""
    from masktok.tokenizers import load_tokenizer
    from masktok.tokenizers.samtok.preprocess import load_rgb
    from masktok.words import format_mask_words

    try:
        rgb = load_rgb(image) if image is not None else None
        size = rgb.shape[:2] if rgb is not None else None
        stack = read_masks(list(masks), size)
        tok = load_tokenizer(tokenizer, device=device, dtype=_dtype(dtype))
        codes = tok.encode(rgb, stack)
        words = [format_mask_words(row.tolist(), tok.vocabulary) for row in codes]
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    entries = [{"index": i, "codes": [int(c) for c in row], "words": w} for i, (row, w) in enumerate(zip(codes, words))]
    _emit({"tokenizer": str(tokenizer), "image": str(image) if image else None,
           "size": [int(s) for s in stack.shape[1:]], "masks": entries, "text": "".join(words)}, output)


@app.command("decode")
def decode(
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help=_TOKENIZER_HELP),
    image: Optional[Path] = typer.Option(None, "--image", "-i", help="The image the words refer to."),
    words: str = typer.Option(..., "--words", "-w", help="Text holding mask words ('-': read stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the RLE JSON here instead of stdout."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write the image with the masks drawn (PNG)."),
    lenient: bool = typer.Option(False, "--lenient", help="Decode what malformed spans allow (reported) instead of failing."),
    size: Optional[str] = typer.Option(None, help="Output size HxW (default: the image's)."),
    threshold: Optional[float] = typer.Option(None, help="Mask logit threshold (default: the tokenizer's; SAMTok 0.5)."),
    refine: Optional[str] = typer.Option(None, "--refine", help="Refine the decoded masks with a SAM 2 refiner: 'sam2' "
                                         "(needs --image and --refiner)."),
    refiner: Optional[Path] = typer.Option(None, "--refiner", help="Refiner for --refine: a masktok refiner folder or "
                                           "a sam2.1_hiera_*.pt file."),
    device: str = typer.Option("cpu", help=_DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=_DTYPE_HELP),
) -> None:
    """Decode every mask span of the words into masks: COCO RLE JSON (+ an overlay PNG)."""
    from masktok.masks import masks_to_rles
    from masktok.tokenizers import load_tokenizer
    from masktok.tokenizers.samtok.preprocess import load_rgb

    text = sys.stdin.read() if words == "-" else words
    try:
        out_size = None
        if size is not None:
            parts = size.lower().split("x")
            if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise ValueError(f"--size must look like 480x640 (H x W), got {size!r}")
            out_size = (int(parts[0]), int(parts[1]))
        rgb = load_rgb(image) if image is not None else None
        if out_size is None and rgb is not None:  # the image's size, for image-free tokenizers too
            out_size = tuple(rgb.shape[:2])
        if overlay is not None and rgb is None:
            raise ValueError("--overlay needs --image")
        from masktok.tokenizers.refine import with_refinement

        if refine is not None and rgb is None:
            raise ValueError("--refine needs --image: the refiner reads the image")
        tok = with_refinement(load_tokenizer(tokenizer, device=device, dtype=_dtype(dtype)), refine, refiner,
                              device=device)
        extra = {} if threshold is None else {"threshold": threshold}
        result = tok.decode_words(rgb, text, size=out_size, lenient=lenient, **extra)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    masks = result.masks.cpu().numpy()
    rles = masks_to_rles(masks)
    decoded = {span_index: row for row, span_index in enumerate(result.decoded_span_indices)}
    entries = []
    for i, span in enumerate(result.spans):
        entry = span.to_dict()
        entry["words"] = text[span.start: span.end]
        entry["rle"] = rles[decoded[i]] if i in decoded else None
        entries.append(entry)
    _emit({"tokenizer": str(tokenizer), "image": str(image) if image else None,
           "size": [int(s) for s in masks.shape[1:]], "spans": entries}, output)
    if overlay is not None:
        overlay_image(rgb, masks).save(overlay)
