"""HiMTok model configurations: the official layout and masktok's compact models.

``official``   the layout of the released ``himtok.pth`` (TiTok-L encoder/decoder, 1024 × 12 SimVQ
               codebook, MaskGIT-VQGAN pixel decoder; 693 tensors, 644 M parameters), including
               TiTok's "legacy" latent reshape, which mixes every latent slot into every token.
``masktok-s``  7.2 M parameters (14.4 MB in fp16), width 256, 4 + 4 layers, 1-channel input, a light
               pixel decoder (16² → 64² convolutions, then a ×4 sub-pixel output); ~1 % of the
               official decode FLOPs. The latent causality is real (token k depends only on latents ≤ k).
``masktok-b``  27 M parameters, width 384, 6 + 8 layers (~3 % of the official decode FLOPs).
``masktok-s-fsq``  masktok-s with FSQ (4,4,4,4,4) = 1024 codes, for quantizer ablations.
``masktok-s-rvq``  masktok-s with a 2-level residual VQ (EMA codebooks): 64 codes per mask (32 slots × 2).
``masktok-box``  box-first (the first shipped tokenizer, v1): 4 box codes, then 28 shape codes of
               the mask's box stretched to a 64² frame (see :mod:`masktok.tokenizers.himtok.box_frame`);
               2.9 M parameters, width 192, 3 + 3 layers, patch 8; box codes rounded to nearest.
``masktok-box-v2``  masktok-box with outward-rounded box codes (the frame is the decoded box).
``masktok-box-v2-96``  masktok-box-v2 with a 96² frame (patch 12, ×6 sub-pixel output).

All sizes are in the config, so tests build the official structure at tiny widths with
``dataclasses.replace``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

QUANTIZERS = ("vq", "fsq", "rvq")
BOX_ROUNDINGS = ("nearest", "outward")
MASK_RESIZES = ("bilinear", "pil_bicubic")


@dataclass(frozen=True)
class PixelDecoderConfig:
    """MaskGIT-VQGAN style convolutional decoder from the (grid × grid) map to the full image.

    Resolution doubles after every stage but the first of ``channel_mult`` (stage i runs at
    grid · 2^(n−1−i) and has ``hidden_channels · channel_mult[i]`` channels).

    ``legacy_shortcut`` reproduces the official residual block, whose 1×1 shortcut is applied to
    the block's *output* (an (out, out) conv) instead of its input; masktok's own models use the
    usual input shortcut.

    ``pixel_shuffle`` = s > 1 makes ``conv_out`` predict s² sub-pixels per output cell, rearranged
    to an s× larger map (sub-pixel convolution): the last, most expensive resolutions are never
    materialised as feature maps (masktok's compact models; the official layout uses 1).
    """

    z_channels: int = 1024
    hidden_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    out_channels: int = 3
    norm_groups: int = 32
    legacy_shortcut: bool = True
    pixel_shuffle: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        for width in [self.hidden_channels * m for m in self.channel_mult]:
            if width % self.norm_groups:
                raise ValueError(f"pixel decoder width {width} is not divisible by norm_groups="
                                 f"{self.norm_groups}")
        if self.num_res_blocks < 1 or self.out_channels < 1 or not self.channel_mult or self.pixel_shuffle < 1:
            raise ValueError("pixel decoder needs num_res_blocks ≥ 1, out_channels ≥ 1, pixel_shuffle ≥ 1 "
                             "and a channel_mult")

    @property
    def upsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1) * self.pixel_shuffle


@dataclass(frozen=True)
class HiMTokConfig:
    """Every size of a HiMTok model.

    Attributes:
        name: config name, stored in ``config.json``.
        image_size: side of the square mask frame (masks are stretched to it).
        in_channels: input channels (the official model copies the mask to 3).
        patch_size: ViT patch size of encoder and decoder; grid = image_size / patch_size.
        num_latent_tokens: K, latent slots (= max codes per mask for VQ/FSQ).
        encoder_width / encoder_depth / encoder_heads, decoder_width / ...: the two ViTs.
        mlp_ratio: transformer MLP width / model width.
        token_dim: dimension of a quantized token (FSQ: len(fsq_levels)).
        quantizer: "vq" (cosine SimVQ), "fsq", or "rvq" (residual VQ, ``rvq_depth`` codes per slot).
        codebook_size: V.
        commitment_cost: β of the VQ commitment term.
        legacy_latent_reshape: TiTok's reshape (official only) instead of a causal-preserving permute.
        pixel_decoder: the convolutional upsampler; its z_channels is the decoder head's output.
        output_scale, output_offset: logits = output_scale · (mean over output channels − output_offset)
            (official: sigmoid((mean − 0.5) · 5)).
        box_prefix: box-first codes: 4 box codes (the mask's box, ``codebook_size`` levels per
            coordinate) precede the latent codes, and the frame is the mask's box instead of the
            whole mask (:mod:`masktok.tokenizers.himtok.box_frame`).
        box_rounding: "nearest" (the tight box, each coordinate rounded to the nearest level: v1)
            or "outward" (near edges down, far edges up; the frame is the decoded box, which
            always contains the mask).
        mask_resize: how a binary mask is stretched to the frame: ``"bilinear"`` (the 0/1 map,
            no antialias) or ``"pil_bicubic"`` (the official data path and ``convert_mask2tokens``:
            an 8-bit image resized with PIL bicubic, then / 255; up to 0.35 apart at edges).
        soft_renormalize: default of :meth:`HiMTok.decode_soft`: L2-normalise the probability-
            weighted code vector (one-hot rows then decode exactly as hard codes) or, False, feed
            the raw mixture as the official LMM does.
    """

    name: str = "official"
    image_size: int = 256
    in_channels: int = 3
    patch_size: int = 16
    num_latent_tokens: int = 32
    encoder_width: int = 1024
    encoder_depth: int = 24
    encoder_heads: int = 16
    decoder_width: int = 1024
    decoder_depth: int = 24
    decoder_heads: int = 16
    mlp_ratio: float = 4.0
    token_dim: int = 12
    quantizer: str = "vq"
    codebook_size: int = 1024
    commitment_cost: float = 0.01
    fsq_levels: tuple[int, ...] = (4, 4, 4, 4, 4)
    rvq_depth: int = 2
    legacy_latent_reshape: bool = True
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    output_scale: float = 5.0
    output_offset: float = 0.5
    box_prefix: bool = False
    box_rounding: str = "nearest"
    mask_resize: str = "bilinear"
    soft_renormalize: bool = True

    def __post_init__(self) -> None:
        if self.mask_resize not in MASK_RESIZES:
            raise ValueError(f"mask_resize must be one of {MASK_RESIZES}, got {self.mask_resize!r}")
        object.__setattr__(self, "fsq_levels", tuple(int(level) for level in self.fsq_levels))
        if isinstance(self.pixel_decoder, dict):
            object.__setattr__(self, "pixel_decoder", PixelDecoderConfig(**self.pixel_decoder))
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for part in ("encoder", "decoder"):
            width, heads = getattr(self, f"{part}_width"), getattr(self, f"{part}_heads")
            if width % heads:
                raise ValueError(f"{part}_width {width} is not divisible by {part}_heads {heads}")
        if self.box_rounding not in BOX_ROUNDINGS:
            raise ValueError(f"box_rounding must be one of {BOX_ROUNDINGS}, got {self.box_rounding!r}")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.quantizer == "fsq":
            if self.token_dim != len(self.fsq_levels):
                raise ValueError(f"FSQ needs token_dim == len(fsq_levels) = {len(self.fsq_levels)}, "
                                 f"got {self.token_dim}")
            if self.codebook_size != math.prod(self.fsq_levels):
                raise ValueError(f"FSQ codebook_size must be prod(fsq_levels) = {math.prod(self.fsq_levels)}, "
                                 f"got {self.codebook_size}")
        if self.rvq_depth < 1 or self.num_latent_tokens < 1:
            raise ValueError("rvq_depth and num_latent_tokens must be ≥ 1")
        if self.pixel_decoder.upsample_factor * self.grid_size != self.image_size:
            raise ValueError(f"the pixel decoder upsamples ×{self.pixel_decoder.upsample_factor} but the "
                             f"grid ({self.grid_size}) must reach image_size {self.image_size}")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def codes_per_position(self) -> int:
        return self.rvq_depth if self.quantizer == "rvq" else 1

    @property
    def box_codes(self) -> int:
        """Box codes before the latent codes (4 for box-first models, else 0)."""
        return 4 if self.box_prefix else 0

    @property
    def latent_codes(self) -> int:
        """Codes of the latent slots (K for VQ/FSQ, K · depth for RVQ)."""
        return self.num_latent_tokens * self.codes_per_position

    @property
    def max_codes(self) -> int:
        """Longest code sequence per mask: box codes + latent codes."""
        return self.box_codes + self.latent_codes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fsq_levels"] = list(self.fsq_levels)
        data["pixel_decoder"]["channel_mult"] = list(self.pixel_decoder.channel_mult)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HiMTokConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown HiMTok config keys: {unknown}")
        data = dict(data)
        if "pixel_decoder" in data:
            data["pixel_decoder"] = PixelDecoderConfig(**data["pixel_decoder"])
        return cls(**data)


def official_config() -> HiMTokConfig:
    """The released ``himtok.pth`` layout (TiTok-L/16, 32 latents, 1024 × 12 SimVQ) with the
    official preprocessing (PIL bicubic on 8-bit masks) and soft decoding (raw mixture)."""
    return HiMTokConfig(mask_resize="pil_bicubic", soft_renormalize=False)


def masktok_s_config() -> HiMTokConfig:
    """Compact model for fast training on 256² masks (7.2 M parameters, ~1 % of official decode FLOPs)."""
    return HiMTokConfig(
        name="masktok-s", in_channels=1, patch_size=16,
        encoder_width=256, encoder_depth=4, encoder_heads=4,
        decoder_width=256, decoder_depth=4, decoder_heads=4,
        token_dim=12, codebook_size=1024, legacy_latent_reshape=False,
        pixel_decoder=PixelDecoderConfig(z_channels=128, hidden_channels=64, channel_mult=(1, 1, 1),
                                         num_res_blocks=1, out_channels=1, norm_groups=8,
                                         legacy_shortcut=False, pixel_shuffle=4),
        output_scale=1.0, output_offset=0.0,
    )


def masktok_b_config() -> HiMTokConfig:
    """Larger compact model (27 M parameters, ~3 % of official decode FLOPs)."""
    return replace(
        masktok_s_config(), name="masktok-b",
        encoder_width=384, encoder_depth=6, encoder_heads=6,
        decoder_width=384, decoder_depth=8, decoder_heads=6,
        pixel_decoder=PixelDecoderConfig(z_channels=192, hidden_channels=64, channel_mult=(1, 2, 2),
                                         num_res_blocks=1, out_channels=1, norm_groups=8,
                                         legacy_shortcut=False, pixel_shuffle=4),
    )


def masktok_s_fsq_config() -> HiMTokConfig:
    """masktok-s with FSQ levels (4, 4, 4, 4, 4) = 1024 implicit codes."""
    return replace(masktok_s_config(), name="masktok-s-fsq", quantizer="fsq",
                   fsq_levels=(4, 4, 4, 4, 4), token_dim=5, codebook_size=1024)


def masktok_s_rvq_config() -> HiMTokConfig:
    """masktok-s with a 2-level residual VQ (two 1024-code levels per latent slot)."""
    return replace(masktok_s_config(), name="masktok-s-rvq", quantizer="rvq", rvq_depth=2)


def masktok_box_config() -> HiMTokConfig:
    """Box-first compact model: 4 box codes + 28 shape codes of a 64² box frame (2.9 M parameters)."""
    return replace(
        masktok_s_config(), name="masktok-box", image_size=64, patch_size=8, num_latent_tokens=28,
        encoder_width=192, encoder_depth=3, encoder_heads=3,
        decoder_width=192, decoder_depth=3, decoder_heads=3, box_prefix=True,
        pixel_decoder=PixelDecoderConfig(z_channels=64, hidden_channels=32, channel_mult=(1, 1),
                                         num_res_blocks=1, out_channels=1, norm_groups=8,
                                         legacy_shortcut=False, pixel_shuffle=4),
    )


def masktok_box_v2_config() -> HiMTokConfig:
    """masktok-box with outward-rounded box codes: the frame is the decoded box, which always holds
    the mask, so the box codes lose nothing at any image size (2.9 M parameters)."""
    return replace(masktok_box_config(), name="masktok-box-v2", box_rounding="outward")


def masktok_box_v2_96_config() -> HiMTokConfig:
    """masktok-box-v2 with a 96² frame (patch 12, the same 8×8 token grid, ×6 sub-pixel output):
    finer frames for thin masks at almost the same decode cost."""
    return replace(
        masktok_box_v2_config(), name="masktok-box-v2-96", image_size=96, patch_size=12,
        pixel_decoder=replace(masktok_box_config().pixel_decoder, pixel_shuffle=6),
    )


CONFIGS = {
    "official": official_config,
    "masktok-s": masktok_s_config,
    "masktok-b": masktok_b_config,
    "masktok-s-fsq": masktok_s_fsq_config,
    "masktok-s-rvq": masktok_s_rvq_config,
    "masktok-box": masktok_box_config,
    "masktok-box-v2": masktok_box_v2_config,
    "masktok-box-v2-96": masktok_box_v2_96_config,
}


def get_config(name: str) -> HiMTokConfig:
    """A named config (see ``CONFIGS``)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown HiMTok config {name!r}; known: {sorted(CONFIGS)}")
    return CONFIGS[name]()
