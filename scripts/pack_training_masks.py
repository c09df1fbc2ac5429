"""Pack the real training masks (and the held-out evaluation masks) into compact ``.npz`` files.

The packed files (bit-packed masks, long side ≤ 640 px) travel easily to a training machine and
load straight onto the GPU (``masktok train tokenizer --packed …``). With the shared data folder::

    python scripts/pack_training_masks.py --data-root ../shared/data --out runs/pack

writes ``train_masks.npz`` (coco128_seg polygons, the COCO panoptic sample, the labelme VOC
polygons, the referring-segmentation mask PNGs) and ``val_coco_val2014_100.npz`` (all 839 GT
masks of ``coco_val2014_100``, crowd regions included; used for evaluation only, never trained on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from masktok.data.mask_pools.sources import load_sources, pack_masks


def training_sources(root: Path) -> list[str]:
    return [
        f"yolo:{root}/coco128_seg/images/train2017,{root}/coco128_seg/labels/train2017,orphans=ignore",
        f"panoptic:{root}/coco_panoptic_sample/panoptic_examples.json,{root}/coco_panoptic_sample/panoptic_examples,"
        f"{root}/coco_panoptic_sample/input_images,crowd=include",
        f"labelme:{root}/voc_labelme/data_annotated",
        f"mask_png:{root}/refseg_examples/masks",
    ]


def evaluation_sources(root: Path) -> list[str]:
    return [f"coco:{root}/coco_val2014_100/instances_val2014_100.json,crowd=include"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/pack"))
    parser.add_argument("--max-side", type=int, default=640)
    args = parser.parse_args()
    if not args.data_root.is_dir():
        raise SystemExit(f"data folder not found: {args.data_root}")
    summary = {}
    for name, sources in (("train_masks.npz", training_sources(args.data_root)),
                          ("val_coco_val2014_100.npz", evaluation_sources(args.data_root))):
        records = load_sources(sources)
        counts = pack_masks(records, args.out / name, max_side=args.max_side)
        per_source = {}
        for spec in sources:
            per_source[spec.split(":", 1)[0] + ":" + Path(spec.split(":", 1)[1].split(",")[0]).parent.name] = \
                len(load_sources([spec]))
        summary[name] = {**counts, "sources": per_source}
        print(f"{args.out / name}: {counts['masks']} masks, {counts['bytes'] / 2 ** 20:.2f} MiB  {per_source}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
