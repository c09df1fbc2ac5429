"""``masktok masks``: convert masks between COCO RLE JSON, PNG and polygon JSON.

File formats:

* ``rle`` (``*.rle.json`` or ``*.json``): one COCO RLE ``{"size": [H, W], "counts": ...}`` or a
  list of them (compressed string or uncompressed list counts).
* ``polygons`` (``*.poly.json``, ``*.polygons.json`` or ``*.json``): one mask as
  ``{"size": [H, W], "polygons": [[x1, y1, x2, y2, ...], ...]}`` (COCO convention, pixels) or a
  list of them.
* ``png`` (``*.png``): a binary mask (mode 1 or 8-bit, ``--threshold`` for grey levels), an id
  map (palette / 16-bit: one mask per non-zero id) or a COCO panoptic RGB id map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="Convert masks between COCO RLE JSON, PNG and polygon JSON.",
                  no_args_is_help=True)

FORMATS = ("rle", "png", "polygons")
_err = Console(stderr=True)


def _format_from_suffix(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".png"):
        return "png"
    if name.endswith(".rle.json"):
        return "rle"
    if name.endswith((".poly.json", ".polygons.json")):
        return "polygons"
    return None


def _sniff_json(data: Any) -> str | None:
    items = data if isinstance(data, list) else [data]
    if items and all(isinstance(x, dict) and "counts" in x for x in items):
        return "rle"
    if items and all(isinstance(x, dict) and "polygons" in x for x in items):
        return "polygons"
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _read(path: Path, fmt: str, threshold: int | None, png_kind: str) -> tuple[np.ndarray, bool]:
    """→ (masks (N, H, W) bool, whether the file held a single mask)."""
    from masktok import masks as M

    if fmt == "png":
        if png_kind == "auto":
            from PIL import Image

            try:
                with Image.open(path) as img:
                    mode = img.mode
            except OSError as exc:  # PIL's UnidentifiedImageError too
                raise ValueError(f"{path}: not a readable image ({exc})") from None
            png_kind = {"1": "binary", "L": "binary", "RGB": "panoptic"}.get(mode, "index")
        if png_kind == "binary":
            return M.read_mask_png(path, threshold=threshold)[None], True
        ids = M.read_panoptic_png(path) if png_kind == "panoptic" else M.read_index_png(path)
        masks, _ = M.index_map_to_masks(ids, exclude=(0,))
        return masks, False
    data = _read_json(path)
    single = isinstance(data, dict)
    items = [data] if single else data
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a {fmt} object or a non-empty list of them")
    if fmt == "rle":
        size = M.check_rle(items[0], name=f"{path}[0]")["size"]
        return np.stack([M.rle_to_mask(r, size=size, name=f"{path}[{i}]")
                         for i, r in enumerate(items)]), single
    masks = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "size" not in item or "polygons" not in item:
            raise ValueError(f"{path}[{i}]: expected {{'size': [H, W], 'polygons': [...]}}")
        h, w = M.check_size(item["size"], f"{path}[{i}]['size']")
        masks.append(M.polygons_to_mask(item["polygons"], h, w))
    if len({m.shape for m in masks}) != 1:
        raise ValueError(f"{path}: masks of different sizes {sorted({m.shape for m in masks})}")
    return np.stack(masks), single


def _write(path: Path, fmt: str, masks: np.ndarray, single: bool, png_kind: str,
           uncompressed: bool, holes: str) -> None:
    from masktok import masks as M

    if fmt == "png":
        if png_kind == "auto":
            png_kind = "binary" if single else "index"
        if png_kind == "binary":
            if len(masks) != 1:
                raise ValueError(f"{len(masks)} masks cannot go into one binary PNG; use --png-kind "
                            "index or panoptic")
            M.write_mask_png(path, masks[0])
        elif png_kind == "index":
            M.write_index_png(path, M.masks_to_index_map(masks))
        else:
            M.write_panoptic_png(path, M.masks_to_index_map(masks))
        return
    if fmt == "rle":
        out: list[Any] = M.masks_to_rles(masks, compressed=not uncompressed)
    else:
        h, w = masks.shape[1:]
        out = [{"size": [h, w], "polygons": M.mask_to_polygons(m, holes=holes)} for m in masks]
    path.write_text(json.dumps(out[0] if single and len(out) == 1 else out) + "\n",
                    encoding="utf-8")


@app.command()
def convert(
    input: Path = typer.Argument(..., help="Mask file (.png, .rle.json, .poly.json, .json)."),
    output: Path = typer.Argument(..., help="File to write; its suffix picks the format."),
    from_format: str | None = typer.Option(None, "--from", help="Input format: rle, png, polygons "
                                           "(default: from the suffix, or the JSON's content)."),
    to_format: str | None = typer.Option(None, "--to", help="Output format: rle, png, polygons "
                                         "(default: from the suffix)."),
    threshold: int | None = typer.Option(None, help="8-bit PNG input: foreground is pixel > "
                                         "THRESHOLD (needed when the PNG is not plainly 0/1 or "
                                         "0/255)."),
    png_kind: str = typer.Option("auto", help="PNG layout: auto, binary, index (palette/16-bit "
                                 "ids) or panoptic (RGB ids)."),
    holes: str = typer.Option("error", help="Polygon output for masks with holes: error or fill."),
    uncompressed: bool = typer.Option(False, help="RLE output with list counts."),
) -> None:
    """Convert INPUT to OUTPUT: one mask, or several (a list in JSON, an id map in PNG)."""
    for value, hint in ((from_format, "--from"), (to_format, "--to")):
        if value is not None and value not in FORMATS:
            raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}, got {value!r}",
                                     param_hint=hint)
    if png_kind not in ("auto", "binary", "index", "panoptic"):
        raise typer.BadParameter(f"expected auto, binary, index or panoptic, got {png_kind!r}",
                                 param_hint="--png-kind")
    if holes not in ("error", "fill"):
        raise typer.BadParameter(f"expected error or fill, got {holes!r}", param_hint="--holes")
    if not input.is_file():
        raise ValueError(f"{input}: no such file")
    src = from_format or _format_from_suffix(input)
    if src is None:
        if input.suffix.lower() != ".json":
            raise ValueError(f"{input}: cannot tell the format from the suffix; pass --from")
        src = _sniff_json(_read_json(input))
        if src is None:
            raise ValueError(f"{input}: JSON holds neither RLE ('counts') nor polygons ('polygons'); "
                        "pass --from")
    dst = to_format or _format_from_suffix(output)
    if dst is None:
        raise ValueError(f"{output}: cannot tell the output format from the suffix (use .png, "
                    ".rle.json or .poly.json, or pass --to)")
    masks, single = _read(input, src, threshold, png_kind)
    _write(output, dst, masks, single, png_kind if dst == "png" else "auto", uncompressed, holes)
    _err.print(escape(f"{input} ({src}) → {output} ({dst}): {len(masks)} mask(s) of "
                      f"{masks.shape[1]}x{masks.shape[2]}"), highlight=False, soft_wrap=True)
