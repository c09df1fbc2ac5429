"""masktok's shipped tokenizers: compact HiMTok models inside the package, loadable by name.

    import masktok
    tok = masktok.load_default()                          # the default (masktok-box-v2), CPU, float32
    old = masktok.load_default(name="masktok-box-v1")     # the first shipped model
    codes = tok.encode(None, masks)                       # (N, H, W) bool → (N, 32) int64
    masks = tok.decode(None, codes[:, :16], size=(H, W))

Each model is a folder ``assets/tokenizers/<name>`` holding ``config.json``, fp16
``model.safetensors`` and ``MODEL_CARD.md`` (how it was trained and how well it reconstructs
masks). They load offline.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

SHIPPED_TOKENIZERS = ("masktok-box-v2", "masktok-box-v1")
DEFAULT_TOKENIZER = "masktok-box-v2"


def shipped_tokenizer_path(name: str | None = None) -> Path:
    """Folder of a shipped tokenizer (default: :data:`DEFAULT_TOKENIZER`)."""
    name = DEFAULT_TOKENIZER if name is None else name
    if name not in SHIPPED_TOKENIZERS:
        raise ValueError(f"no shipped tokenizer is named {name!r}; shipped: {list(SHIPPED_TOKENIZERS)}")
    path = Path(str(resources.files("masktok") / "assets" / "tokenizers" / name))
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"the shipped tokenizer {name!r} is missing from the installation: {path} should "
                                "hold config.json and model.safetensors")
    return path


def default_tokenizer_path() -> Path:
    """Folder of the default tokenizer."""
    return shipped_tokenizer_path(DEFAULT_TOKENIZER)


def load_default(device: str | torch.device = "cpu", dtype: torch.dtype | None = None, name: str | None = None):
    """A shipped tokenizer (each a :class:`~masktok.tokenizers.himtok.HiMTok`), opened by
    :func:`~masktok.tokenizers.load_tokenizer` like any other tokenizer folder.

    Args:
        device: where it runs.
        dtype: compute dtype (default: bf16 on CUDA, float32 elsewhere; the files store fp16).
        name: one of :data:`SHIPPED_TOKENIZERS` (default: :data:`DEFAULT_TOKENIZER`).
    """
    from masktok.tokenizers import load_tokenizer

    return load_tokenizer(shipped_tokenizer_path(name), device=device, dtype=dtype)
