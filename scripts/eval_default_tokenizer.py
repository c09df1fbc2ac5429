"""Reconstruction mIoU of a tokenizer (default: the shipped default) on the held-out evaluation sets.

    python scripts/eval_default_tokenizer.py --data-root ../shared/data [--name masktok-box-v1 | --tokenizer DIR]
        [--device cpu] [--sets coco_val2014_100,thin_sparse] [--lengths 1,2,4,8,16,32] [--out eval.json]

Sets (:mod:`masktok.data.mask_pools.heldout`): ``coco_val2014_100`` (839 GT masks), ``coco2017_heldout``
(the held-out COCO 2017 images), ``scaled_2k_4k`` / ``canvas_2k_4k`` (held-out polygons on 2–4K
canvases, scaled with the image or at their own scale), ``thin_sparse`` (boxes < 20 % filled).
Every mask is encoded at its image size and decoded from its first l codes back to that size (as
COCO RLE); the table gives the mean IoU per set and length (native sets also per COCO area range)
and the share of masks whose IoU drops from one length to the next. Float32 compute (TF32 off).
``--frame-bound S`` scores no tokenizer but the resolution bound of an S² box frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    from masktok.data.mask_pools.heldout import SET_NAMES, evaluation_sets
    from masktok.eval.tokenizer_sets import set_ious, summarize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data",
                        help="folder holding coco_val2014_100/ (default: the copy in tests/data) and, for the "
                             "other sets, coco2017_masks/ and coco128_seg/ (e.g. ../shared/data)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder")
    parser.add_argument("--name", default=None, help="a shipped tokenizer (default: the default one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sets", default=",".join(SET_NAMES))
    parser.add_argument("--lengths", default="1,2,4,8,12,16,24,32")
    parser.add_argument("--out", type=Path, default=None, help="write the summary JSON here")
    parser.add_argument("--max-images", type=int, default=0, help="only the first N images of each set (0: all)")
    parser.add_argument("--frame-bound", type=int, default=0, metavar="S",
                        help="score no tokenizer: the resolution bound of an S² box frame (column '0')")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.tokenizer is not None and args.name is not None:
        raise SystemExit("give --tokenizer or --name, not both")
    from masktok import load_default
    from masktok.tokenizers.himtok import HiMTok

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.frame_bound:
        tok = None
    elif args.tokenizer is None:
        tok = load_default(device=args.device, dtype=torch.float32, name=args.name)
    else:
        tok = HiMTok.from_pretrained(args.tokenizer, device=args.device, dtype=torch.float32)
    lengths = [0] if args.frame_bound else sorted({int(v) for v in args.lengths.split(",")})
    names = tuple(s for s in args.sets.split(",") if s)
    try:
        sets = evaluation_sets(args.data_root, names)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    name = f"frame bound {args.frame_bound}²" if args.frame_bound else str(args.tokenizer or args.name or "default")
    summary = {"tokenizer": name, "device": args.device, "lengths": lengths, "sets": {}}
    start = time.perf_counter()
    for name in names:
        images = sets[name][:args.max_images] if args.max_images else sets[name]
        bar = None
        if not args.no_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), desc=name, dynamic_ncols=True)
        scores = set_ious(tok, images, lengths, progress=bar.update if bar else None, frame_bound=args.frame_bound)
        if bar is not None:
            bar.close()
        summary["sets"][name] = summarize(scores, by_area=name in ("coco_val2014_100", "coco2017_heldout"))
        summary["seconds"] = round(time.perf_counter() - start, 1)
        if args.out:  # after every set, so a long run that is stopped keeps what it measured
            args.out.write_text(json.dumps(summary, indent=2))
    print(table(summary))
    print(f"{summary['seconds']} s on {args.device}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


def table(summary: dict) -> str:
    """Markdown: one row per set (and area range), mean IoU per length, then the drop shares."""
    lengths = summary["lengths"]
    lines = ["| set | masks | " + " | ".join(f"@{l}" if l else "frame bound" for l in lengths)
             + " | longer prefix worse (any step) |",
             "|---|---|" + "---|" * len(lengths) + "---|"]
    for name, rows in summary["sets"].items():
        for row, values in rows.items():
            label = name if row == "all" else f"{name} ({row})"
            cells = " | ".join(f"{values['miou'][str(l)]:.4f}" for l in lengths)
            worse = values["worse"].get("any", float("nan"))
            lines.append(f"| {label} | {values['masks']} | {cells} | {100 * worse:.1f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
