"""CUDA-graph replay of the image encoder for fixed batch sizes (the latency mode).

A batch-1 Hiera-L pass launches a few thousand small kernels; run eagerly it is bound by launch
overhead (≈ 44 ms on an H100) rather than by the GPU. Capturing the whole encoder once per batch
size into a CUDA graph and replaying it removes that overhead. Inputs are copied into the graph's
static buffer and outputs are cloned out, so callers may keep them.
"""

from __future__ import annotations

from typing import Callable

import torch

from masktok.tokenizers.samtok.model import ImageFeatures

EncoderFn = Callable[[torch.Tensor], ImageFeatures]


class GraphedImageEncoder:
    """Captured graphs of ``encoder`` (pixels (B, 3, S, S) float32 → :class:`ImageFeatures`)."""

    def __init__(self, encoder: EncoderFn, image_size: int, device: torch.device, warmup_steps: int = 2) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the model is on {device}")
        self.encoder = encoder
        self.image_size = image_size
        self.device = device
        self.warmup_steps = warmup_steps
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, ImageFeatures]] = {}

    @property
    def batch_sizes(self) -> list[int]:
        return sorted(self._graphs)

    @torch.inference_mode()
    def capture(self, batch_size: int, encoder: EncoderFn | None = None) -> None:
        """Warm up on a side stream, then record one pass of ``encoder`` (default: the one given at
        construction, e.g. eager or ``torch.compile``-d) for ``batch_size`` images."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        encoder = encoder or self.encoder
        static_in = torch.randn(batch_size, 3, self.image_size, self.image_size, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup_steps):
                encoder(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = encoder(static_in)
        self._graphs[batch_size] = (graph, static_in, static_out)

    def __call__(self, pixels: torch.Tensor) -> ImageFeatures | None:
        """Replay the graph of ``pixels.shape[0]`` images; None when that size was not captured."""
        if pixels.device != self.device:
            raise ValueError(f"pixels are on {pixels.device}, the captured encoder on {self.device}")
        entry = self._graphs.get(pixels.shape[0])
        if entry is None:
            return None
        graph, static_in, static_out = entry
        static_in.copy_(pixels)
        graph.replay()
        return ImageFeatures(static_out.embedding.clone(), tuple(t.clone() for t in static_out.high_res))
