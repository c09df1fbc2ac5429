"""masktok's default tokenizer: a compact HiMTok model shipped inside the package.

    import masktok
    tok = masktok.load_default()                # CPU, float32
    codes = tok.encode(None, masks)             # (N, H, W) bool → (N, 32) int64
    masks = tok.decode(None, codes[:, :16], size=(H, W))

The weights (``assets/default_tokenizer``: ``config.json`` + fp16 ``model.safetensors``) load
offline; how they were trained and how well they reconstruct masks is in that folder's
``MODEL_CARD.md``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

DEFAULT_TOKENIZER_DIR = "default_tokenizer"


def default_tokenizer_path() -> Path:
    """Folder of the shipped default tokenizer."""
    path = Path(str(resources.files("masktok") / "assets" / DEFAULT_TOKENIZER_DIR))
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"the default tokenizer is missing from the installation: {path} should hold "
                                "config.json and model.safetensors")
    return path


def load_default(device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """The default :class:`~masktok.tokenizers.himtok.HiMTok` tokenizer.

    Args:
        device: where it runs.
        dtype: compute dtype (default: bf16 on CUDA, float32 elsewhere; the file stores fp16).
    """
    from masktok.tokenizers.himtok import HiMTok

    return HiMTok.from_pretrained(default_tokenizer_path(), device=device, dtype=dtype)
