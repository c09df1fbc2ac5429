"""HiMTok: an image-free hierarchical 1D mask tokenizer.

A mask is stretched to 256×256 and encoded into up to K = 32 coarse-to-fine codes (codebook 1024);
any prefix of them decodes to a mask. Two families of models share one implementation:

- ``official``: the layout of the released ``himtok.pth`` (644 M parameters), loaded strictly;
- ``masktok-s`` / ``masktok-b``: masktok's compact models with real latent causality
  (code k depends only on latents ≤ k), plus FSQ / residual-VQ ablation variants.

Public entry points::

    from masktok.tokenizers.himtok import HiMTok, HiMTokModel, get_config
    tok = HiMTok.from_config("masktok-s")             # random weights
    tok = HiMTok.from_pretrained("path/to/dir")        # config.json + model.safetensors, or himtok.pth
    codes = tok.encode(None, masks)                    # (N, H, W) binary → (N, 32) int64
    masks = tok.decode(None, codes[:, :8], size=(H, W))

Training: ``HiMTokModel.forward_train`` and :mod:`masktok.tokenizers.himtok.loss`.
"""

from masktok.tokenizers.himtok.config import (
    CONFIGS,
    HiMTokConfig,
    PixelDecoderConfig,
    get_config,
    masktok_b_config,
    masktok_box_config,
    masktok_s_config,
    official_config,
)
from masktok.tokenizers.himtok.loss import (
    HierarchicalMaskLoss,
    blur_and_renormalize,
    level_sigma,
    level_targets,
    sample_prefix_lengths,
)
from masktok.tokenizers.himtok.model import HiMTokModel
from masktok.tokenizers.himtok.tokenizer import HiMTok

__all__ = [
    "CONFIGS",
    "HiMTok",
    "HiMTokConfig",
    "HiMTokModel",
    "HierarchicalMaskLoss",
    "PixelDecoderConfig",
    "blur_and_renormalize",
    "get_config",
    "level_sigma",
    "level_targets",
    "masktok_b_config",
    "masktok_box_config",
    "masktok_s_config",
    "official_config",
    "sample_prefix_lengths",
]
