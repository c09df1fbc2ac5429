"""Build the token quantizer a HiMTok config asks for.

Every quantizer here maps latent tokens (B, K, D) to a :class:`QuantizerOutput` whose codes are
(B, K · codes_per_position), and offers ``lookup(codes (B, T)) → (B, ⌈T / c⌉, D)`` and
``soft_lookup(probs (B, T, V)) → (B, ⌈T / c⌉, D)``:

- ``vq``: :class:`CosineVectorQuantizer` (official; module keys ``quantize.embedding.weight``,
  ``quantize.embedding_proj.weight``);
- ``fsq``: :class:`FiniteScalarQuantizer`;
- ``rvq``: :class:`ResidualTokenQuantizer`, the shared residual VQ with its ``depth`` codes per
  latent slot laid out slot-major (slot 0 level 0, slot 0 level 1, slot 1 level 0, …).
"""

from __future__ import annotations

from torch import nn

from masktok.tokenizers.himtok.config import HiMTokConfig
from masktok.tokenizers.quantizers.fsq import FiniteScalarQuantizer
from masktok.tokenizers.quantizers.vq import CosineVectorQuantizer


def build_quantizer(config: HiMTokConfig) -> nn.Module:
    """The quantizer module for ``config.quantizer``."""
    if config.quantizer == "vq":
        return CosineVectorQuantizer(config.codebook_size, config.token_dim, config.commitment_cost)
    if config.quantizer == "fsq":
        return FiniteScalarQuantizer(config.fsq_levels)
    from masktok.tokenizers.himtok.residual import ResidualTokenQuantizer

    return ResidualTokenQuantizer(config.codebook_size, config.token_dim, config.rvq_depth,
                                  config.commitment_cost)
