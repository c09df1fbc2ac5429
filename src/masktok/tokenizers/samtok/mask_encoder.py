"""SAMTok's mask encoder: a SAM two-way transformer read out through one learned query token.

Tokens = [query token, 3 sparse prompt tokens (two box corners + SAM's padding point)]; the image
side is the image embedding (with SAM 2's no-memory embedding) plus the dense mask-prompt
embedding, with the prompt encoder's dense positional encoding. The output is the query token after
the final token→image attention and its LayerNorm: a C-dimensional mask embedding, no projection.
Official key names: ``sam_mask_encoder.transformer.*`` and ``sam_mask_encoder.mask_tokens.weight``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Sam2MaskDecoderConfig
from transformers.models.sam2.modeling_sam2 import Sam2TwoWayTransformer


class MaskEncoder(nn.Module):
    """(image + dense prompt, positional encoding, sparse prompt) → (N, C) mask embedding."""

    def __init__(self, config: Sam2MaskDecoderConfig) -> None:
        super().__init__()
        self.transformer = Sam2TwoWayTransformer(config)
        self.mask_tokens = nn.Embedding(1, config.hidden_size)

    def forward(self, image: torch.Tensor, positional: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image: (N, C, h, w) image embedding + dense mask embedding, one row per mask.
            positional: (1 or N, C, h, w) dense positional encoding.
            sparse: (N, T, C) sparse prompt tokens.

        Returns:
            (N, C) the query token's final state.
        """
        count = sparse.shape[0]
        query = self.mask_tokens.weight.to(sparse.dtype).expand(count, -1, -1)
        tokens = torch.cat([query, sparse], dim=1)[:, None]  # (N, 1, 1 + T, C)
        positional = positional.expand(count, -1, -1, -1)
        queries, _ = self.transformer(point_embeddings=tokens, image_embeddings=image,
                                      image_positional_embeddings=positional, attention_similarity=None)
        return queries[:, 0, 0]
