"""SAMTok configuration: a small dataclass for the Hiera image encoder and one for the tokenizer.

Every SAM 2.1 size is a preset (``tiny``, ``small``, ``base_plus``, ``large``; the official SAMTok
uses ``large``), and :func:`tiny_test_config` gives a model small enough for CPU tests (128² input).
:meth:`SAMTokConfig.to_sam2_config` turns a config into the ``transformers`` ``Sam2Config`` the
model is built from (transformers 5 configs are strict dataclasses: lists, not tuples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
)

TOKENIZER_TYPE = "samtok"


@dataclass(frozen=True)
class HieraConfig:
    """The Hiera trunk of SAM 2 (Meta's names; dims and heads double at every stage).

    Attributes:
        embed_dim: channels of stage 1 (stage s has ``embed_dim · 2^s``).
        num_heads: attention heads of stage 1 (doubled per stage).
        stages: blocks per stage (4 stages).
        global_attention_blocks: indices of the blocks that attend globally instead of in windows.
        window_spec: window size per stage.
        window_pos_embed_background: spatial size of the background positional embedding.
        query_pool_stages: how many stage transitions pool the queries (stride 2).
        mlp_ratio: MLP hidden size over block width.
    """

    embed_dim: int = 144
    num_heads: int = 2
    stages: tuple[int, ...] = (2, 6, 36, 4)
    global_attention_blocks: tuple[int, ...] = (23, 33, 43)
    window_spec: tuple[int, ...] = (8, 4, 16, 8)
    window_pos_embed_background: tuple[int, int] = (7, 7)
    query_pool_stages: int = 3
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if len(self.stages) != 4 or len(self.window_spec) != 4:
            raise ValueError(f"Hiera needs 4 stages and 4 window sizes, got stages={self.stages}, "
                             f"window_spec={self.window_spec}")
        if any(b >= sum(self.stages) or b < 0 for b in self.global_attention_blocks):
            raise ValueError(f"global_attention_blocks {self.global_attention_blocks} must index the "
                             f"{sum(self.stages)} blocks")
        for name in ("stages", "global_attention_blocks", "window_spec", "window_pos_embed_background"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def stage_dims(self) -> list[int]:
        """Channels of stages 1–4."""
        return [self.embed_dim * 2 ** i for i in range(4)]

    @property
    def num_blocks(self) -> int:
        return sum(self.stages)


HIERA_PRESETS: dict[str, HieraConfig] = {
    "tiny": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_attention_blocks=(5, 7, 9),
                        window_spec=(8, 4, 14, 7), window_pos_embed_background=(7, 7)),
    "small": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_attention_blocks=(7, 10, 13),
                         window_spec=(8, 4, 14, 7), window_pos_embed_background=(7, 7)),
    "base_plus": HieraConfig(embed_dim=112, num_heads=2, stages=(2, 3, 16, 3),
                             global_attention_blocks=(12, 16, 20), window_spec=(8, 4, 14, 7),
                             window_pos_embed_background=(14, 14)),
    "large": HieraConfig(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_attention_blocks=(23, 33, 43),
                         window_spec=(8, 4, 16, 8), window_pos_embed_background=(7, 7)),
}


@dataclass(frozen=True)
class SAMTokConfig:
    """The whole tokenizer: SAM 2 image encoder + prompt encoder + mask decoder, the mask encoder
    (two-way transformer, one learned query token) and the residual quantizer.

    Attributes:
        hiera: the image encoder trunk.
        image_size: model input side S (images are stretched to S×S); a multiple of 32.
        hidden_size: width C of the neck, prompt encoder, mask encoder and mask decoder.
        mlp_dim, num_attention_heads, attention_downsample_rate, transformer_depth: the two-way
            transformers (mask decoder and mask encoder share these).
        memory_dim: width of SAM 2's video-memory tensors; only shapes the official checkpoint
            layout (those tensors are not used for images).
        codebook_size, codebook_depth, shared_codebook: the residual quantizer.
        mask_threshold: default logit threshold of decoded masks (official: logit > 0.5).
        attn_implementation: "sdpa" or "eager" for the transformers attention layers.
    """

    hiera: HieraConfig = field(default_factory=lambda: HIERA_PRESETS["large"])
    image_size: int = 1024
    hidden_size: int = 256
    mlp_dim: int = 2048
    num_attention_heads: int = 8
    attention_downsample_rate: int = 2
    transformer_depth: int = 2
    memory_dim: int = 64
    codebook_size: int = 256
    codebook_depth: int = 2
    shared_codebook: bool = False
    mask_threshold: float = 0.5
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        if isinstance(self.hiera, dict):
            object.__setattr__(self, "hiera", HieraConfig(**self.hiera))
        if self.image_size % 32 != 0 or self.image_size <= 0:
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if (self.image_size // 4) % self.hiera.window_spec[0] != 0:
            raise ValueError(f"image_size / 4 = {self.image_size // 4} must be a multiple of the first "
                             f"window size {self.hiera.window_spec[0]}")
        if self.hidden_size % 8 != 0:
            raise ValueError(f"hidden_size must be a multiple of 8, got {self.hidden_size}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {self.attn_implementation!r}")

    # Derived sizes -----------------------------------------------------------------------
    @property
    def embedding_size(self) -> int:
        """Side of the image embedding (S / 16; 64 for 1024² inputs)."""
        return self.image_size // 16

    @property
    def mask_size(self) -> int:
        """Side of the mask prompt and of the decoded low-resolution logits (S / 4; 256)."""
        return self.image_size // 4

    # transformers configs ----------------------------------------------------------------
    def mask_decoder_config(self) -> Sam2MaskDecoderConfig:
        """Config of the mask decoder; the mask encoder's two-way transformer uses it too."""
        config = Sam2MaskDecoderConfig(
            hidden_size=self.hidden_size, mlp_dim=self.mlp_dim, num_hidden_layers=self.transformer_depth,
            num_attention_heads=self.num_attention_heads,
            attention_downsample_rate=self.attention_downsample_rate, num_multimask_outputs=3,
            iou_head_depth=3, iou_head_hidden_dim=self.hidden_size)
        config._attn_implementation = self.attn_implementation
        return config

    def to_sam2_config(self) -> Sam2Config:
        """The ``transformers`` Sam2Config of the SAM 2 part."""
        h, s = self.hiera, self.image_size
        backbone = Sam2HieraDetConfig(
            hidden_size=h.embed_dim, num_attention_heads=h.num_heads, image_size=[s, s],
            blocks_per_stage=list(h.stages), embed_dim_per_stage=h.stage_dims,
            num_attention_heads_per_stage=[h.num_heads * 2 ** i for i in range(4)],
            window_size_per_stage=list(h.window_spec), global_attention_blocks=list(h.global_attention_blocks),
            window_positional_embedding_background_size=list(h.window_pos_embed_background),
            num_query_pool_stages=h.query_pool_stages, mlp_ratio=h.mlp_ratio)
        vision = Sam2VisionConfig(
            backbone_config=backbone, backbone_channel_list=h.stage_dims[::-1],
            backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
            fpn_hidden_size=self.hidden_size, fpn_top_down_levels=[2, 3], num_feature_levels=3)
        prompt = Sam2PromptEncoderConfig(hidden_size=self.hidden_size, image_size=s, patch_size=16,
                                         mask_input_channels=16, num_point_embeddings=4)
        config = Sam2Config(vision_config=vision, prompt_encoder_config=prompt,
                            mask_decoder_config=self.mask_decoder_config())
        config._attn_implementation = self.attn_implementation
        return config

    # Serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hiera"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["hiera"].items()}
        return {"tokenizer_type": TOKENIZER_TYPE, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SAMTokConfig":
        data = dict(data)
        kind = data.pop("tokenizer_type", TOKENIZER_TYPE)
        if kind != TOKENIZER_TYPE:
            raise ValueError(f"config is for tokenizer_type {kind!r}, not {TOKENIZER_TYPE!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SAMTok config fields: {unknown}")
        hiera = data.pop("hiera", None)
        hiera_cfg = HieraConfig(**hiera) if isinstance(hiera, dict) else HIERA_PRESETS["large"]
        return cls(hiera=hiera_cfg, **data)


def samtok_config(size: str = "large", **overrides: Any) -> SAMTokConfig:
    """The SAMTok config with the SAM 2.1 Hiera ``size`` (tiny, small, base_plus, large)."""
    if size not in HIERA_PRESETS:
        raise ValueError(f"unknown Hiera size {size!r}; choose one of {sorted(HIERA_PRESETS)}")
    return SAMTokConfig(hiera=HIERA_PRESETS[size], **overrides)


def tiny_test_config(**overrides: Any) -> SAMTokConfig:
    """A few-thousand-parameter SAMTok for fast CPU tests: 128² input, 5 Hiera blocks, width 32."""
    hiera = HieraConfig(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_attention_blocks=(3,),
                        window_spec=(8, 4, 4, 4), window_pos_embed_background=(4, 4))
    base = SAMTokConfig(hiera=hiera, image_size=128, hidden_size=32, mlp_dim=64, num_attention_heads=2,
                        memory_dim=16, codebook_size=16, codebook_depth=2)
    return replace(base, **overrides)
