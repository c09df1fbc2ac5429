"""SAMTok: any mask → 2 words, conditioned on the image (SAM 2 + a mask encoder + residual VQ).

Public entry points::

    from masktok.tokenizers.samtok import SAMTok, samtok_config
    tok = SAMTok.from_pretrained("path/to/mask_tokenizer_256x2.pth", device="cuda")
    tok = SAMTok.from_config(samtok_config("tiny"), seed=0)      # random weights, any Hiera size
    codes = tok.encode(image, masks)                              # (N, H, W) → (N, 2) int64
    masks = tok.decode(image, codes)                              # (N, 2) or (N, 1) → (N, H, W) bool

Training-facing pieces (with gradients) live on :class:`SAMTokModel`: ``image_features``,
``mask_embeddings``, ``quantizer`` and ``decode_logits``.
"""

from masktok.tokenizers.samtok.checkpoint import (
    CheckpointError,
    CheckpointKeyError,
    OfficialLayout,
    save_official_checkpoint,
)
from masktok.tokenizers.samtok.config import (
    HIERA_PRESETS,
    HieraConfig,
    SAMTokConfig,
    samtok_config,
    tiny_test_config,
)
from masktok.tokenizers.samtok.embedding_cache import ImageEmbedding, ImageEmbeddingCache
from masktok.tokenizers.samtok.loading import load_model
from masktok.tokenizers.samtok.model import ImageFeatures, SAMTokModel
from masktok.tokenizers.samtok.tokenizer import SAMTok

__all__ = [
    "HIERA_PRESETS",
    "CheckpointError",
    "CheckpointKeyError",
    "HieraConfig",
    "ImageEmbedding",
    "ImageEmbeddingCache",
    "ImageFeatures",
    "OfficialLayout",
    "SAMTok",
    "SAMTokConfig",
    "SAMTokModel",
    "load_model",
    "samtok_config",
    "save_official_checkpoint",
    "tiny_test_config",
]
