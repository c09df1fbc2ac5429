"""Picture of a tokenizer's coarse-to-fine decoding on the bundled sample images.

    python scripts/plot_coarse_to_fine.py --out docs/img/default_tokenizer_prefixes.png [--tokenizer DIR]

One row per sample image: the original masks, then the masks decoded from the first l codes of
each (l = 4, 8, 16, 32 by default), each panel titled with its mIoU over the image's masks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from masktok.cli.roundtrip import overlay
from masktok.samples import load_samples
from masktok.train.tokenizer.validation import mask_iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: the shipped one)")
    parser.add_argument("--lengths", default="4,8,16,32")
    parser.add_argument("--rows", type=int, default=3, help="sample images to show")
    parser.add_argument("--height", type=int, default=200, help="panel height in pixels")
    args = parser.parse_args()
    from masktok.tokenizers.registry import load_tokenizer

    if args.tokenizer is None:
        from masktok import load_default

        tok = load_default()
    else:
        tok = load_tokenizer(args.tokenizer)
    lengths = [int(v) for v in args.lengths.split(",")]
    rows = []
    for image, masks, meta in load_samples()[: args.rows]:
        rgb = np.asarray(image.convert("RGB"))
        codes = tok.encode(image, masks)
        panels = [("original", overlay(rgb, masks))]
        for length in lengths:
            decoded = tok.decode(image, codes[:, :length], size=masks.shape[1:]).numpy()
            score = np.mean([mask_iou(torch.from_numpy(d), torch.from_numpy(m)) for d, m in zip(decoded, masks)])
            panels.append((f"{length} codes · mIoU {score:.2f}", overlay(rgb, decoded)))
        scale = args.height / rgb.shape[0]
        width = round(rgb.shape[1] * scale)
        row = Image.new("RGB", (len(panels) * (width + 6), args.height + 22), "white")
        draw = ImageDraw.Draw(row)
        for k, (title, picture) in enumerate(panels):
            row.paste(Image.fromarray(picture).resize((width, args.height)), (k * (width + 6), 22))
            draw.text((k * (width + 6) + 4, 4), title, fill="black")
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 6 for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 6
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}×{sheet.height})")


if __name__ == "__main__":
    main()
