"""Peak memory of ``decode_words`` on texts with many mask spans, chunked and in one call.

Each configuration runs in a fresh process (``ru_maxrss`` only grows): the bundled default
tokenizer decodes a text of N random HiMTok words at H×W; the process reports its peak resident
memory above what it held just before the call, beside the result's own size (N·H·W bytes)::

    python benchmarks/decode_words_memory.py --spans 1000 10000 --size 240 320 --out decode_words_memory.json

``--chunk 0`` decodes every span in one call (the unbounded way: every float map of every span
at once); it is only run for the smallest span count.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def child(spans: int, chunk: int, height: int, width: int) -> dict:
    import numpy as np

    import masktok
    from masktok.words import format_mask_words

    tok = masktok.load_default()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, tok.vocabulary.codebook_size, (spans, tok.max_codes))
    text = " ".join(format_mask_words(row.tolist(), tok.vocabulary) for row in codes)
    tok.decode_words(None, text.split(" ")[0], size=(height, width))  # warm-up: one span
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = tok.decode_words(None, text, size=(height, width), chunk_size=chunk or spans)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.masks.shape == (spans, height, width)
    return {"spans": spans, "chunk": chunk or spans, "size": [height, width],
            "result_mb": spans * height * width / 2 ** 20, "peak_above_start_mb": (peak - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--size", type=int, nargs=2, default=[240, 320])
    parser.add_argument("--chunk", type=int, nargs="+", default=[64, 0], help="0: all spans in one call")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    rows = []
    for spans in args.spans:
        for chunk in args.chunk:
            if chunk == 0 and spans != min(args.spans):
                continue
            out = subprocess.run([sys.executable, __file__, "--child", str(spans), str(chunk), *map(str, args.size)],
                                 check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['spans']:>6} spans, chunk {row['chunk']:>6}: result {row['result_mb']:8.1f} MiB, "
                  f"peak above start {row['peak_above_start_mb']:8.1f} MiB", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
