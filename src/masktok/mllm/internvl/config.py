"""The official InternVL chat ``config.json`` (``model_type: internvl_chat``, InternLM2 language
model) → transformers' ``InternVLConfig`` (InternVL vision + Llama text).

Field sources: ``configuration_internvl_chat.py``, ``configuration_intern_vit.py`` and
``configuration_internlm2.py`` of the InternVL remote code (as in github.com/yayafengzi/LMM-HiMTok,
``internvl/model/...``). Settings the native classes cannot reproduce are refused by name:
another pixel-shuffle version than ``v2``, another language model than InternLM2, an RoPE
scaling other than ``dynamic`` / ``linear``.
"""

from __future__ import annotations

from typing import Any

OFFICIAL_MODEL_TYPE = "internvl_chat"
# The system message of InternVL's "internvl2_5" conversation template
# (internvl/conversation.py, template name ``internvl2_5``).
INTERNVL2_5_SYSTEM = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位"
                      "联合开发的多模态大语言模型。")
SYSTEM_MESSAGES = {"internvl2_5": INTERNVL2_5_SYSTEM}


class ConfigError(ValueError):
    """An official config the native classes cannot reproduce."""


def _require(section: dict[str, Any], name: str, where: str) -> Any:
    if name not in section:
        raise ConfigError(f"{where}: field {name!r} is missing")
    return section[name]


def text_config(llm: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """InternLM2 ``llm_config`` → a Llama text config (dict) with ``vocab_size`` rows."""
    where = "config.json llm_config"
    kind = llm.get("model_type")
    if kind != "internlm2":
        raise ConfigError(f"{where}: model_type {kind!r}; only InternLM2 language models are converted")
    hidden = int(_require(llm, "hidden_size", where))
    heads = int(_require(llm, "num_attention_heads", where))
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(llm.get("rope_theta", 10000.0))}
    scaling = llm.get("rope_scaling")
    if scaling:
        kind = scaling.get("type") or scaling.get("rope_type")
        if kind not in ("dynamic", "linear"):
            raise ConfigError(f"{where}: rope_scaling type {kind!r}; InternLM2 only defines dynamic and linear")
        rope.update(rope_type=kind, factor=float(scaling["factor"]))
    return dict(
        model_type="llama", vocab_size=vocab_size, hidden_size=hidden,
        intermediate_size=int(_require(llm, "intermediate_size", where)),
        num_hidden_layers=int(_require(llm, "num_hidden_layers", where)),
        num_attention_heads=heads, num_key_value_heads=int(llm.get("num_key_value_heads", heads)),
        head_dim=hidden // heads, hidden_act=llm.get("hidden_act", "silu"),
        max_position_embeddings=int(llm.get("max_position_embeddings", 32768)),
        rms_norm_eps=float(llm.get("rms_norm_eps", 1e-6)), rope_parameters=rope,
        attention_bias=bool(llm.get("bias", False)), mlp_bias=False,
        tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
        bos_token_id=llm.get("bos_token_id", 1), eos_token_id=llm.get("eos_token_id", 2),
        pad_token_id=llm.get("pad_token_id", 2), use_cache=True)


def vision_config(vision: dict[str, Any]) -> dict[str, Any]:
    """InternViT ``vision_config`` → an ``InternVLVisionConfig`` (dict)."""
    where = "config.json vision_config"
    size, patch = int(_require(vision, "image_size", where)), int(_require(vision, "patch_size", where))
    norm = vision.get("norm_type", "rms_norm")
    if norm not in ("layer_norm", "rms_norm"):
        raise ConfigError(f"{where}: norm_type {norm!r} is neither layer_norm nor rms_norm")
    return dict(
        hidden_size=int(_require(vision, "hidden_size", where)),
        num_hidden_layers=int(_require(vision, "num_hidden_layers", where)),
        num_attention_heads=int(_require(vision, "num_attention_heads", where)),
        intermediate_size=int(_require(vision, "intermediate_size", where)),
        hidden_act=vision.get("hidden_act", "gelu"), layer_norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
        norm_type=norm, image_size=[size, size], patch_size=[patch, patch],
        num_channels=int(vision.get("num_channels", 3)), attention_bias=bool(vision.get("qkv_bias", True)),
        use_qk_norm=bool(vision.get("qk_normalization", False)), attention_dropout=0.0,
        projection_dropout=0.0, hidden_dropout_prob=0.0, use_absolute_position_embeddings=True,
        use_mask_token=False, use_mean_pooling=True)  # True: no final LayerNorm, as InternViT


def native_config(official: dict[str, Any], *, vocab_size: int, image_token_id: int) -> Any:
    """The ``InternVLConfig`` of an official InternVL chat config.

    Raises:
        ConfigError: not an InternVL chat config, or settings the native model cannot reproduce.
    """
    from transformers import InternVLConfig

    if official.get("model_type") != OFFICIAL_MODEL_TYPE:
        raise ConfigError(f"config.json: model_type {official.get('model_type')!r}, expected {OFFICIAL_MODEL_TYPE!r}")
    version = official.get("ps_version", "v1")
    if version != "v2":
        raise ConfigError(f"config.json: ps_version {version!r}; the native InternVL pixel shuffle is v2")
    vision = vision_config(_require(official, "vision_config", "config.json"))
    ratio = float(official.get("downsample_ratio", 0.5))
    tokens = int((vision["image_size"][0] // vision["patch_size"][0]) ** 2 * ratio ** 2)
    return InternVLConfig(
        vision_config=vision, text_config=text_config(_require(official, "llm_config", "config.json"), vocab_size),
        image_token_id=image_token_id, image_seq_length=tokens, downsample_ratio=ratio,
        projector_hidden_act="gelu", vision_feature_layer=int(official.get("select_layer", -1)),
        vision_feature_select_strategy="default",
        tie_word_embeddings=bool(official["llm_config"].get("tie_word_embeddings", False)))


def system_message(official: dict[str, Any]) -> str | None:
    """The default system message of the official chat template (None: the template has none)."""
    if "system_message" in official:
        return official["system_message"]
    return SYSTEM_MESSAGES.get(official.get("template", ""))


def tiling(official: dict[str, Any]) -> dict[str, Any]:
    """Image tiling of the official preprocessing (InternVL's ``dynamic_preprocess``)."""
    size = int(official.get("force_image_size") or official["vision_config"]["image_size"])
    return dict(size=size, min_patches=int(official.get("min_dynamic_patch", 1)),
                max_patches=int(official.get("max_dynamic_patch", 12)) if official.get("dynamic_image_size", True) else 1,
                use_thumbnail=bool(official.get("use_thumbnail", True)))
