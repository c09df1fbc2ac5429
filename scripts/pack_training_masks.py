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
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from masktok.data.mask_pools.heldout import heldout_records, training_records
from masktok.data.mask_pools.sources import load_source, pack_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/pack"))
    parser.add_argument("--max-side", type=int, default=640)
    args = parser.parse_args()
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
        print(f"{args.out / name}: {counts['masks']} masks, {counts['bytes'] / 2 ** 20:.2f} MiB"
              + (f"  {sources}" if sources else ""))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
