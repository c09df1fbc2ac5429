"""Pack the real training masks and the held-out validation masks into compact ``.npz`` files.

The packed files (bit-packed masks, long side ≤ 640 px) travel easily to a training machine and
load straight onto the GPU (``masktok train tokenizer --packed …``). With the shared data folder::

    python scripts/pack_training_masks.py --data-root ../shared/data --out runs/pack

writes

- ``train_masks.npz``: the COCO 2017 masks of the images *not* held out
  (:func:`masktok.data.mask_pools.heldout.is_held_out`; crowd regions included), the coco128 YOLO
  polygons of images that are neither in the COCO 2017 files nor in ``coco_val2014_100``, the
  COCO panoptic sample, the labelme VOC polygons and the referring-segmentation mask PNGs;
- ``val_coco2017_heldout.npz``: every mask of the held-out COCO 2017 images (validation during
  training; never trained on);
- ``val_coco_val2014_100.npz``: the 839 GT masks of ``coco_val2014_100`` (never trained on).

``--repeat-thin K`` stores each training mask whose box is less than ``--thin-fill`` filled K
times in ``train_masks.npz`` (thin and sparse masks are rare in COCO and the hardest to code);
the validation files are never repeated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from masktok.data.mask_pools.heldout import heldout_records, training_records
from masktok.data.mask_pools.sources import load_source, pack_masks


def box_fill(bits: np.ndarray, offsets: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Share of each packed mask's tight box that the mask covers, (N,) float."""
    fills = np.empty(len(shapes))
    for i, (h, w) in enumerate(shapes):
        mask = np.unpackbits(bits[offsets[i]:offsets[i + 1]])[: h * w].reshape(h, w).astype(bool)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        fills[i] = mask.sum() / box
    return fills


def repeat_thin(path: Path, times: int, below: float) -> int:
    """Rewrite the packed file ``path`` with every mask of box fill < ``below`` stored ``times``
    times in all; returns how many masks were repeated."""
    with np.load(path) as packed:
        bits, offsets, shapes, names = (packed[k] for k in ("bits", "offsets", "shapes", "names"))
    thin = np.flatnonzero(box_fill(bits, offsets, shapes) < below)
    order = np.concatenate([np.arange(len(shapes))] + [thin] * (times - 1))
    chunks = [bits[offsets[i]:offsets[i + 1]] for i in order]
    new_offsets = np.concatenate([[0], np.cumsum([c.size for c in chunks])]).astype(np.int64)
    np.savez_compressed(path, bits=np.concatenate(chunks), offsets=new_offsets, shapes=shapes[order],
                        names=names[order])
    return int(thin.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/pack"))
    parser.add_argument("--max-side", type=int, default=640)
    parser.add_argument("--repeat-thin", type=int, default=1, help="store thin training masks this many times")
    parser.add_argument("--thin-fill", type=float, default=0.2, help="box fill below which a mask counts as thin")
    args = parser.parse_args()
    if args.repeat_thin < 1:
        raise SystemExit(f"--repeat-thin must be ≥ 1, got {args.repeat_thin}")
    if not args.data_root.is_dir():
        raise SystemExit(f"data folder not found: {args.data_root}")
    train, per_source = training_records(args.data_root)
    val2014 = load_source(f"coco:{args.data_root}/coco_val2014_100/instances_val2014_100.json,crowd=include")
    summary = {}
    for name, records, sources in (("train_masks.npz", train, per_source),
                                   ("val_coco2017_heldout.npz", heldout_records(args.data_root), None),
                                   ("val_coco_val2014_100.npz", val2014, None)):
        counts = pack_masks(records, args.out / name, max_side=args.max_side)
        summary[name] = {**counts, **({"sources": sources} if sources else {})}
        if sources and args.repeat_thin > 1:
            thin = repeat_thin(args.out / name, args.repeat_thin, args.thin_fill)
            summary[name]["thin_repeated"] = {"masks": thin, "times": args.repeat_thin, "fill_below": args.thin_fill}
            print(f"  {thin} masks with box fill < {args.thin_fill} stored {args.repeat_thin}× each")
        print(f"{args.out / name}: {counts['masks']} masks, {counts['bytes'] / 2 ** 20:.2f} MiB"
              + (f"  {sources}" if sources else ""))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
