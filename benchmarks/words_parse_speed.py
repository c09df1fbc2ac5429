"""Parsing speed of the mask-word grammar: linear in the text length, fast on hostile input.

    python benchmarks/words_parse_speed.py

Prints seconds for 1×, 8× and 64× a unit text (the ratio shows linear growth), and the time of
hostile inputs in strict and lenient mode.
"""

from __future__ import annotations

import time

from masktok.words import SAMTOK_VOCABULARY as S
from masktok.words import MaskWordsError, StreamingMaskParser, format_mask_words, parse_mask_words


def best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    unit = "Here " + format_mask_words((11, 91), S) + " and " + format_mask_words((1, 2), S) + ". "
    base = None
    print("| text | spans | seconds | × time of 1× |")
    print("|---|---|---|---|")
    for scale in (2_000, 16_000, 128_000):
        text = unit * scale
        seconds = best_of(lambda: parse_mask_words(text, S))
        base = base or seconds
        print(f"| {scale // 2_000}× ({len(text) / 1e6:.1f} MB) | {2 * scale} | {seconds:.3f} | {seconds / base:.1f} |")
    hostile = {"open token prefix × 50k": "<|mt_" * 50_000, "'<' × 200k": "<" * 200_000,
               "token prefix + 200k digits": "<|mt_" + "1" * 200_000,
               "start + 30k codes": "<|mt_start|>" + "<|mt_0001|>" * 30_000}
    print("\n| hostile input | strict s | lenient s |\n|---|---|---|")
    for name, text in hostile.items():
        def strict(text=text):
            try:
                parse_mask_words(text, S)
            except MaskWordsError:
                pass
        lenient = best_of(lambda text=text: parse_mask_words(text, S, lenient=True), 1)
        print(f"| {name} | {best_of(strict, 1):.3f} | {lenient:.3f} |")
    stream_text = "x <|mt_start|><|mt_0011|><|mt_0347|><|mt_end|> " * 2_000

    def stream():
        parser = StreamingMaskParser(S, lenient=True)
        for ch in stream_text:
            parser.feed(ch)
        parser.close()
    print(f"\nstreaming {len(stream_text)} characters one at a time: {best_of(stream, 1):.3f} s")


if __name__ == "__main__":
    main()
