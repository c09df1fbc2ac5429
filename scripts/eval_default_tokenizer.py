"""Reconstruction mIoU of the default tokenizer on the 839 ``coco_val2014_100`` GT masks.

    python scripts/eval_default_tokenizer.py [--data-root tests/data] [--tokenizer DIR] [--device cpu]

Every instance mask of ``instances_val2014_100.json`` (830 polygons and 9 crowd RLEs) is encoded
at its image size, decoded from its first 4, 8, 16 and 32 codes back to that size, and compared
with the original (IoU); the script prints the mean per prefix length and writes a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from masktok.annotations import read_coco_instances
from masktok.train.tokenizer.validation import tokenizer_reconstruction_miou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data",
                        help="folder holding coco_val2014_100/ (default: the copy in tests/data)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: the shipped one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", default="1,2,4,8,16,32")
    parser.add_argument("--out", type=Path, default=None, help="write the summary JSON here")
    args = parser.parse_args()
    from masktok import load_default
    from masktok.tokenizers.himtok import HiMTok

    tok = load_default(device=args.device) if args.tokenizer is None else HiMTok.from_pretrained(args.tokenizer, device=args.device)
    images = read_coco_instances(args.data_root / "coco_val2014_100" / "instances_val2014_100.json")
    lengths = [int(v) for v in args.lengths.split(",")]
    start = time.perf_counter()
    with torch.inference_mode():
        scores, count = tokenizer_reconstruction_miou(tok, ((None, img.masks()) for img in images), lengths)
    summary = {"masks": count, "miou": {str(k): round(v, 4) for k, v in scores.items()},
               "device": args.device, "seconds": round(time.perf_counter() - start, 1)}
    for length, value in scores.items():
        print(f"mIoU@{length:<3d} {value:.4f}")
    print(f"{count} masks, {summary['seconds']} s on {args.device}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
