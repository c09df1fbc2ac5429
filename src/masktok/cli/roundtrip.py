"""``masktok roundtrip``: the bundled sample masks → mask words → masks, with a report.

For every sample image, each mask is encoded by the tokenizer (default: the shipped one), written
as mask words, decoded back at every prefix length and scored (IoU with the original). Outputs in
``--out``:

- ``words.jsonl``: one line per mask (image, mask index, category, codes, words);
- ``masks/<image>_<k>.png``: the reconstructed masks (all codes);
- ``overlays/<image>.png``: the image with the original masks (left) and the reconstructions (right);
- ``summary.json``: mIoU per prefix length.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from masktok.cli.tokenizer_option import DEFAULT_TOKENIZER, DEVICE_HELP, TOKENIZER_HELP, open_tokenizer

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.float32)


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """image (H, W, 3) uint8, masks (N, H, W) bool → (H, W, 3) uint8 with coloured masks."""
    out = image.astype(np.float32)
    for k, mask in enumerate(masks):
        out[mask] = (1 - alpha) * out[mask] + alpha * PALETTE[k % len(PALETTE)]
    return out.clip(0, 255).astype(np.uint8)


def roundtrip(
    out: Path = typer.Option(Path("roundtrip_out"), "--out", "-o", help="Output folder."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", "-t", help=TOKENIZER_HELP),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    prefix_lengths: str = typer.Option("1,2,4,8,16,32", help="Prefix lengths to score (comma-separated, each "
                                                             "from 1 to the tokenizer's codes per mask)."),
) -> None:
    """Round-trip the bundled sample masks through a tokenizer and report mIoU per prefix length."""
    from PIL import Image

    from masktok.masks import write_mask_png
    from masktok.samples import load_samples
    from masktok.train.tokenizer.validation import mask_iou

    try:
        lengths = [int(v) for v in prefix_lengths.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {prefix_lengths!r}",
                                 param_hint="--prefix-lengths") from None
    if not lengths:
        raise typer.BadParameter("expected at least one prefix length", param_hint="--prefix-lengths")
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    tok = open_tokenizer(tokenizer, device=device)
    import torch

    longest = int(tok.vocabulary.max_codes)  # HiMTok: up to 32; SAMTok: its depth (2)
    bad = [length for length in lengths if not 1 <= length <= longest]
    if bad:
        raise typer.BadParameter(f"{bad} outside 1..{longest}, the codes per mask of this "
                                 f"{tok.vocabulary.name} tokenizer", param_hint="--prefix-lengths")

    out.mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    (out / "overlays").mkdir(exist_ok=True)
    scores: dict[int, list[float]] = {length: [] for length in lengths}
    with (out / "words.jsonl").open("w", encoding="utf-8") as words_file:
        for image, masks, meta in load_samples():
            stem = Path(meta["file"]).stem
            masks_t = torch.from_numpy(masks)
            codes = tok.encode(image, masks_t)
            words = tok.encode_words(image, masks_t)
            for length in lengths:
                decoded = tok.decode(image, codes[:, :length], size=masks.shape[1:])
                scores[length].extend(mask_iou(d.cpu(), m) for d, m in zip(decoded, masks_t))
            full = tok.decode(image, codes, size=masks.shape[1:]).cpu().numpy()
            for k in range(masks.shape[0]):
                record = {"image": meta["file"], "mask": k, "category": meta["categories"][k],
                          "codes": codes[k].tolist(), "words": words[k],
                          "iou": round(mask_iou(torch.from_numpy(full[k]), masks_t[k]), 4)}
                words_file.write(json.dumps(record) + "\n")
                write_mask_png(out / "masks" / f"{stem}_{k}.png", full[k])
            rgb = np.asarray(image.convert("RGB"))
            side = np.concatenate([overlay(rgb, masks), np.full((rgb.shape[0], 8, 3), 255, np.uint8),
                                   overlay(rgb, full)], axis=1)
            Image.fromarray(side).save(out / "overlays" / f"{stem}.png")
    miou = {length: float(np.mean(v)) for length, v in scores.items()}
    count = len(scores[lengths[0]]) if lengths else 0
    (out / "summary.json").write_text(json.dumps({"masks": count, "miou": {str(k): v for k, v in miou.items()}},
                                                 indent=2))
    table = Table(title=f"round trip of {count} sample masks → {out}")
    table.add_column("codes", justify="right")
    table.add_column("mIoU", justify="right")
    for length, value in miou.items():
        table.add_row(str(length), f"{value:.3f}")
    Console().print(table)


app = roundtrip
