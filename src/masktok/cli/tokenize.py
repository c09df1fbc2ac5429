"""``masktok encode`` / ``masktok decode``: masks ↔ mask words with any tokenizer checkpoint.

    masktok encode --image IMG --masks masks.json   → words JSON
    masktok decode --image IMG --words "…"          → RLE JSON (+ --overlay PNG)

``--masks`` takes JSON (a list of COCO RLEs, of objects with a ``segmentation`` — RLE or COCO
polygons — or ``{"masks": [...]}``) or binary mask PNGs; repeat it to add files. ``--tokenizer``
defaults to the shipped tokenizer (``default``); any other folder or file is opened by
:func:`masktok.tokenizers.load_tokenizer` (SAMTok, or any family named by ``"tokenizer_type"`` in
its ``config.json``). SAMTok needs ``--image``; HiMTok does not read it, but checks it (it must be
an image file, and the masks must have its size).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from masktok.cli.tokenizer_option import (
    DEFAULT_TOKENIZER,
    DEVICE_HELP,
    DTYPE_HELP,
    TOKENIZER_HELP,
    check_device,
    open_tokenizer,
    parse_dtype,
)

app = typer.Typer(no_args_is_help=True)

_EMPTY_MASKS_HELP = ("Masks with no foreground pixel: error (default) | skip (left out) | keep (an entry with "
                     "null codes and words).")


def _segmentation_to_mask(item: Any, size: Optional[tuple[int, int]], where: str):
    from masktok.masks import polygons_to_mask, rle_to_mask

    if isinstance(item, dict) and "counts" in item:
        return rle_to_mask(item, name=where)  # its own size; read_masks compares it with the image's
    if isinstance(item, dict) and "segmentation" in item:
        return _segmentation_to_mask(item["segmentation"], size, where)
    if isinstance(item, list):
        if size is None:
            raise ValueError(f"{where}: polygons need the image size; pass --image")
        return polygons_to_mask(item, size[0], size[1])
    raise ValueError(f"{where}: expected a COCO RLE, an object with 'segmentation', or a polygon list")


def _size_text(size: Any) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def read_masks(paths: list[Path], size: Optional[tuple[int, int]]):
    """Masks from JSON / PNG files → (N, H, W) bool numpy array; every mask must have ``size``
    (the image's (H, W)) when it is given, and all the same size otherwise."""
    import numpy as np

    from masktok.masks import read_mask_png

    masks, sources = [], []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"--masks {path}: no such file")
        if path.suffix.lower() == ".png":
            masks.append(read_mask_png(path))
            sources.append(str(path))
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"--masks {path}: not valid JSON ({err})") from None
        if isinstance(data, dict):
            data = data.get("masks", data.get("annotations", [data]))
        if not isinstance(data, list):
            raise ValueError(f"--masks {path}: expected a list of masks")
        for i, item in enumerate(data):
            masks.append(_segmentation_to_mask(item, size, f"--masks {path}[{i}]"))
            sources.append(f"{path}[{i}]")
    if size is not None:
        for mask, source in zip(masks, sources):
            if mask.shape != tuple(size):
                raise ValueError(f"--masks {source}: the mask is {_size_text(mask.shape)} (HxW) but the "
                                 f"image is {_size_text(size)}; masks must have the image's size")
    if not masks:
        if size is None:
            raise ValueError("--masks: the files hold no mask and there is no --image to size an empty stack")
        return np.zeros((0, *size), dtype=bool)
    shapes = {m.shape for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"--masks: masks of different sizes {sorted(shapes)}")
    return np.stack(masks)


def _parse_size(size: Optional[str]) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise typer.BadParameter(f"expected HxW with two positive integers, e.g. 480x640, got {size!r}",
                                 param_hint="--size")
    return int(parts[0]), int(parts[1])


def _load_image(image: Optional[Path]):
    from masktok.tokenizers.samtok.preprocess import load_rgb

    return load_rgb(image, name="--image") if image is not None else None


def _check_image_needed(tok: Any, rgb: Any) -> None:
    if rgb is None and tok.needs_image:
        raise typer.BadParameter(f"this {tok.display_name} tokenizer reads the image; pass --image",
                                 param_hint="--image")


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
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", "-t", help=TOKENIZER_HELP),
    image: Optional[Path] = typer.Option(None, "--image", "-i", help="The image the masks belong to (SAMTok needs it)."),
    masks: list[Path] = typer.Option(..., "--masks", "-m", help="Masks: JSON (RLE / polygons) or binary PNG; repeatable."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON here instead of stdout."),
    empty_masks: str = typer.Option("error", "--empty-masks", help=_EMPTY_MASKS_HELP),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
) -> None:
    """Tokenize masks into mask words; prints JSON with each mask's codes and words."""
    from masktok.tokenizers import ABSENT_CODE, check_empty_masks
    from masktok.words import format_mask_words

    check_device(device)
    parse_dtype(dtype)
    check_empty_masks(empty_masks, "--empty-masks")
    rgb = _load_image(image)
    size = rgb.shape[:2] if rgb is not None else None
    stack = read_masks(list(masks), size)
    tok = open_tokenizer(tokenizer, device=device, dtype=dtype)
    _check_image_needed(tok, rgb)
    present = stack.any(axis=(1, 2))
    codes = tok.encode(rgb, stack, empty_masks=empty_masks)  # zero masks: (0, L) codes
    indices = [i for i in range(len(stack)) if present[i] or empty_masks != "skip"]
    rows = [None if bool((row == ABSENT_CODE).all()) else [int(c) for c in row] for row in codes]
    words = [None if row is None else format_mask_words(row, tok.vocabulary) for row in rows]
    entries = [{"index": i, "codes": row, "words": w} for i, row, w in zip(indices, rows, words)]
    _emit({"tokenizer": str(tokenizer), "image": str(image) if image else None,
           "size": [int(s) for s in stack.shape[1:]], "masks": entries,
           "text": "".join(w for w in words if w is not None)}, output)


@app.command("decode")
def decode(
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", "-t", help=TOKENIZER_HELP),
    image: Optional[Path] = typer.Option(None, "--image", "-i", help="The image the words refer to (SAMTok needs it)."),
    words: str = typer.Option(..., "--words", "-w", help="Text holding mask words ('-': read stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the RLE JSON here instead of stdout."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write the image with the masks drawn (PNG)."),
    lenient: bool = typer.Option(False, "--lenient", help="Decode what malformed spans allow (reported) instead of failing."),
    size: Optional[str] = typer.Option(None, help="Output size HxW (default: the image's; without --image the "
                                                  "tokenizer's frame)."),
    threshold: Optional[float] = typer.Option(None, help="Mask threshold (default: the tokenizer's): SAMTok on the "
                                                         "logit (official 0.5), HiMTok on the probability, in (0, 1) "
                                                         "(0.5)."),
    refine: Optional[str] = typer.Option(None, "--refine", help="Refine the decoded masks with a SAM 2 refiner: 'sam2' "
                                         "(needs --image and --refiner)."),
    refiner: Optional[Path] = typer.Option(None, "--refiner", help="Refiner for --refine: a masktok refiner folder or "
                                           "a sam2.1_hiera_*.pt file."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
) -> None:
    """Decode every mask span of the words into masks: COCO RLE JSON (+ an overlay PNG)."""
    from masktok.masks import masks_to_rles

    check_device(device)
    parse_dtype(dtype)
    out_size = _parse_size(size)
    if overlay is not None and image is None:
        raise typer.BadParameter("--overlay draws the masks on the image; pass --image", param_hint="--overlay")
    rgb = _load_image(image)
    if rgb is not None:
        if out_size is None:
            out_size = tuple(int(v) for v in rgb.shape[:2])
        elif overlay is not None and out_size != rgb.shape[:2]:
            raise typer.BadParameter(f"{size} differs from the image's {_size_text(rgb.shape[:2])}, and --overlay "
                                     "draws the masks on the image; leave --size out", param_hint="--size")
    text = sys.stdin.read() if words == "-" else words
    from masktok.tokenizers.refine import with_refinement

    if refine is not None and rgb is None:
        raise typer.BadParameter("the refiner reads the image; pass --image", param_hint="--refine")
    tok = with_refinement(open_tokenizer(tokenizer, device=device, dtype=dtype), refine, refiner, device=device)
    _check_image_needed(tok, rgb)
    result = tok.decode_words(rgb, text, size=out_size, lenient=lenient, threshold=threshold)
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
