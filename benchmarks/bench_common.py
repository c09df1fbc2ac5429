"""What the SAMTok benchmarks share: logging, device synchronisation, median timing and random
ellipse masks. (Benchmarks run as ``python benchmarks/NAME.py``, so this folder is on the path.)"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import torch

from masktok.tokenizers.samtok import SAMTokModel, samtok_config, tiny_test_config


def log(*parts: object) -> None:
    print(*parts, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn`` (device synchronised) after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ellipse_masks(rng: np.random.Generator, count: int, height: int, width: int,
                  min_radius: float = 6) -> np.ndarray:
    """(count, H, W) bool random ellipses (radii from ``min_radius`` to a third of the side), each
    with its centre pixel set so that none is empty."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    stack = np.zeros((count, height, width), dtype=bool)
    for mask in stack:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(min_radius, height / 3), rng.uniform(min_radius, width / 3)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        mask[int(min(cy, height - 1)), int(min(cx, width - 1))] = True
    return stack


def random_samtok_model(size: str, device: torch.device) -> SAMTokModel:
    """A SAMTok network with random weights (seed 0), built on ``device``: Hiera ``size``
    (tiny, small, base_plus, large) or ``"test"`` (the tiny test config)."""
    config = tiny_test_config() if size == "test" else samtok_config(size)
    torch.manual_seed(0)
    with torch.device(device):
        return SAMTokModel(config).eval()
