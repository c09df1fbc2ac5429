"""The HiMTok network: encoder, quantizer, latent decoder and pixel decoder as one module.

Module and parameter names follow the official checkpoint (``latent_tokens``, ``encoder.*``,
``quantize.*``, ``decoder.*``, ``pixel_decoder.*``). This module works on tensors already in the
model's frame; mask validation, resizing and batching live in :class:`masktok.tokenizers.himtok.HiMTok`.

Training entry point::

    model = HiMTokModel(masktok_s_config())
    out = model.forward_train(masks_256, prefix_lengths)   # masks (B, 1, 256, 256) float in [0, 1]
    out["logits"]      # (B, n, 256, 256) logits, one map per requested prefix length
    out["quant_loss"]  # scalar quantizer loss (commitment + codebook)
    out["codes"]       # (B, max_codes) int64

The logits are pre-sigmoid (probability = sigmoid(logits)); the codes are the ones a tokenizer
would emit. ``prefix_lengths`` is (B,) or (B, n) int, each in [1, K], counted in latent slots (for
the residual-VQ variant a kept slot keeps all its levels); see
:func:`masktok.tokenizers.himtok.loss.sample_prefix_lengths` and
:class:`masktok.tokenizers.himtok.loss.HierarchicalMaskLoss` for the hierarchical recipe.
"""

from __future__ import annotations

import torch
from torch import nn

from masktok.tokenizers.himtok.config import HiMTokConfig
from masktok.tokenizers.himtok.decoder import LatentDecoder
from masktok.tokenizers.himtok.encoder import MaskEncoder
from masktok.tokenizers.himtok.pixel_decoder import PixelDecoder
from masktok.tokenizers.himtok.quantizer import build_quantizer
from masktok.tokenizers.quantizers.vq import QuantizerOutput


class HiMTokModel(nn.Module):
    """Mask (B, C, S, S) ⇄ codes (B, ≤ max_codes)."""

    def __init__(self, config: HiMTokConfig):
        super().__init__()
        self.config = config
        scale = config.encoder_width ** -0.5
        self.latent_tokens = nn.Parameter(scale * torch.randn(config.num_latent_tokens, config.encoder_width))
        self.encoder = MaskEncoder(config)
        self.quantize = build_quantizer(config)
        self.decoder = LatentDecoder(config)
        self.pixel_decoder = PixelDecoder(config.pixel_decoder)

    # ---- encoding -------------------------------------------------------------------------
    def encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, C, S, S) → pre-quantization tokens (B, K, token_dim)."""
        return self.encoder(pixels, self.latent_tokens)

    def encode(self, pixels: torch.Tensor) -> QuantizerOutput:
        """pixels (B, C, S, S) → :class:`QuantizerOutput` (quantized (B, K, D), codes (B, max_codes), loss)."""
        return self.quantize(self.encode_latents(pixels))

    # ---- decoding -------------------------------------------------------------------------
    def decode_tokens(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Quantized vectors (B, P, D), P ≤ K, kept lengths (B,) or None → logits (B, 1, S, S)."""
        out = self.pixel_decoder(self.decoder(tokens.to(self.decoder.decoder_embed.weight.dtype), lengths))
        return self.config.output_scale * (out.mean(dim=1, keepdim=True) - self.config.output_offset)

    def decode_codes(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, T) int, T ≤ max_codes, kept code counts (B,) or None → logits (B, 1, S, S)."""
        per_slot = self.config.codes_per_position
        if per_slot == 1:
            return self.decode_tokens(self.quantize.lookup(codes), lengths)
        tokens = self.quantize.lookup(codes, lengths)
        slots = None if lengths is None else torch.div(lengths + per_slot - 1, per_slot, rounding_mode="floor")
        return self.decode_tokens(tokens, slots)

    def decode_code_probs(self, probs: torch.Tensor, renormalize: bool = True) -> torch.Tensor:
        """Per-position code probabilities (B, T, V) → logits (B, 1, S, S) (soft decoding)."""
        return self.decode_tokens(self.quantize.soft_lookup(probs, renormalize=renormalize))

    # ---- training -------------------------------------------------------------------------
    def forward_train(self, masks: torch.Tensor, prefix_lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode once, decode every requested prefix length.

        Args:
            masks: (B, 1, S, S) float in [0, 1] (S = config.image_size).
            prefix_lengths: (B,) or (B, n) int, each in [1, K] latent slots.

        Returns:
            dict with ``logits`` (B, n, S, S) (n = 1 for 1-D prefix_lengths), ``quant_loss``
            (scalar), ``codes`` (B, max_codes) int64 and ``prefix_lengths`` (B, n).
        """
        size, slots = self.config.image_size, self.config.num_latent_tokens
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[2:] != (size, size):
            raise ValueError(f"masks must have shape (B, 1, {size}, {size}), got {tuple(masks.shape)}")
        if not masks.dtype.is_floating_point:
            raise ValueError(f"masks must be a float tensor in [0, 1], got dtype {masks.dtype}")
        lengths = prefix_lengths.reshape(masks.shape[0], -1) if prefix_lengths.ndim == 1 else prefix_lengths
        if lengths.ndim != 2 or lengths.shape[0] != masks.shape[0] or lengths.dtype.is_floating_point:
            raise ValueError(f"prefix_lengths must be int (B,) or (B, n) with B = {masks.shape[0]}, "
                             f"got {tuple(prefix_lengths.shape)} {prefix_lengths.dtype}")
        if int(lengths.min()) < 1 or int(lengths.max()) > slots:
            raise ValueError(f"prefix_lengths must lie in [1, {slots}], got [{int(lengths.min())}, "
                             f"{int(lengths.max())}]")
        weight_dtype = self.encoder.patch_embed.weight.dtype
        pixels = masks.to(weight_dtype).expand(-1, self.config.in_channels, -1, -1)
        quant = self.encode(pixels)
        n = lengths.shape[1]
        tokens = quant.quantized.repeat_interleave(n, dim=0) if n > 1 else quant.quantized
        logits = self.decode_tokens(tokens, lengths.reshape(-1).to(tokens.device))
        return {
            "logits": logits.view(masks.shape[0], n, size, size),
            "quant_loss": quant.loss,
            "codes": quant.codes,
            "prefix_lengths": lengths,
        }
