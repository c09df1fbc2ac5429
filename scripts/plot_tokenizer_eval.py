"""Plot mIoU against code length, one panel per evaluation set, for one or more tokenizers.

    python scripts/plot_tokenizer_eval.py --inputs eval_v1.json eval_v2.json --labels v1 v2 \
        --out docs/img/tokenizer_eval.png

Each input is a summary written by ``scripts/eval_default_tokenizer.py --out``; sets missing from
an input are left out of its curves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=Path, nargs="+", required=True)
    parser.add_argument("--labels", nargs="+", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    labels = args.labels or [path.stem for path in args.inputs]
    if len(labels) != len(args.inputs):
        raise SystemExit(f"--labels needs one label per input ({len(args.inputs)}), got {len(labels)}")
    summaries = [json.loads(path.read_text()) for path in args.inputs]
    sets = []
    for summary in summaries:
        sets += [name for name in summary["sets"] if name not in sets]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(sets))
    rows = -(-len(sets) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, name in zip(axes.flat, sets):
        for label, summary in zip(labels, summaries):
            if name not in summary["sets"]:
                continue
            row = summary["sets"][name]["all"]
            lengths = summary["lengths"]
            axis.plot(lengths, [row["miou"][str(l)] for l in lengths], marker="o", label=label)
        axis.set_title(f"{name} ({row['masks']} masks)", fontsize=10)
        axis.set_xscale("log", base=2)
        axis.set_xticks(lengths, [str(l) for l in lengths])
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.set_xlabel("codes")
        axis.set_ylabel("mIoU")
        axis.legend(fontsize=8, loc="lower right")
    for axis in list(axes.flat)[len(sets):]:
        axis.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
