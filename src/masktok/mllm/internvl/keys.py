"""Official InternVL2.5-HiMTok tensor names → transformers' native InternVL names.

Where each official name and shape comes from (the InternVL remote code that the published
checkpoint ships, as copied into github.com/yayafengzi/LMM-HiMTok):

- ``internvl/model/internvl_chat/modeling_intern_vit.py`` (the vision tower, ``vision_model.``):
  ``embeddings.class_embedding`` (1, 1, D), ``embeddings.patch_embedding`` (Conv2d 3→D, p×p),
  ``embeddings.position_embedding`` (1, N+1, D); per layer ``attn.qkv`` (Linear D→3D, bias when
  ``qkv_bias``), ``attn.proj`` (D→D), ``attn.q_norm`` / ``attn.k_norm`` (RMSNorm over D, only
  with ``qk_normalization``), ``mlp.fc1`` / ``mlp.fc2``, ``norm1`` / ``norm2``, ``ls1`` / ``ls2``
  (layer scales, (D,));
- ``internvl/model/internvl_chat/modeling_internvl_chat.py``: the projector ``mlp1`` =
  LayerNorm(4D) (``mlp1.0``), Linear(4D→H) (``mlp1.1``), GELU, Linear(H→H) (``mlp1.3``), and the
  language model under ``language_model.``;
- ``internvl/model/internlm2/modeling_internlm2.py`` (``language_model.``): ``model.tok_embeddings``,
  per layer ``attention.wqkv`` (Linear H → (heads + 2·kv_heads)·head_dim, grouped per kv head as
  [q × heads/kv_heads, k, v]), ``attention.wo``, ``feed_forward.w1`` (gate) / ``w3`` (up) /
  ``w2`` (down), ``attention_norm``, ``ffn_norm``; ``model.norm``; ``output`` (the LM head);
- ``internvl/model/internvl_chat/modeling_internvl_himt.py``: ``mask_decoder`` = the whole HiMTok
  (encoder, quantizer, decoder, pixel decoder), i.e. ``himtok.pth``'s keys under ``mask_decoder.``.

The native names are those of ``transformers.models.internvl.modeling_internvl``
(``InternVLForConditionalGeneration``); the renames follow transformers' own
``convert_internvl_weights_to_hf.py`` (vision ``qkv`` cut into thirds; InternLM2's ``wqkv`` cut per
key/value group). Anything not listed here is not placed, and the converter refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

HIMTOK_PREFIX = "mask_decoder."
# official regex → native replacement (applied to the whole key, first match wins)
VISION_RULES: list[tuple[str, str]] = [
    (r"^vision_model\.embeddings\.class_embedding$", "model.vision_tower.embeddings.cls_token"),
    (r"^vision_model\.embeddings\.position_embedding$", "model.vision_tower.embeddings.position_embeddings"),
    (r"^vision_model\.embeddings\.patch_embedding\.(weight|bias)$",
     r"model.vision_tower.embeddings.patch_embeddings.projection.\1"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.attn\.proj\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.attention.projection_layer.\2"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.weight$",
     r"model.vision_tower.encoder.layer.\1.attention.\2.weight"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.mlp.\2.\3"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.norm1\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.layernorm_before.\2"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.norm2\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.layernorm_after.\2"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.ls1$", r"model.vision_tower.encoder.layer.\1.lambda_1"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.ls2$", r"model.vision_tower.encoder.layer.\1.lambda_2"),
]
PROJECTOR_RULES: list[tuple[str, str]] = [
    (r"^mlp1\.0\.(weight|bias)$", r"model.multi_modal_projector.layer_norm.\1"),
    (r"^mlp1\.1\.(weight|bias)$", r"model.multi_modal_projector.linear_1.\1"),
    (r"^mlp1\.3\.(weight|bias)$", r"model.multi_modal_projector.linear_2.\1"),
]
INTERNLM2_RULES: list[tuple[str, str]] = [
    (r"^language_model\.model\.tok_embeddings\.weight$", "model.language_model.embed_tokens.weight"),
    (r"^language_model\.model\.norm\.weight$", "model.language_model.norm.weight"),
    (r"^language_model\.output\.weight$", "lm_head.weight"),
    (r"^language_model\.model\.layers\.(\d+)\.attention\.wo\.(weight|bias)$",
     r"model.language_model.layers.\1.self_attn.o_proj.\2"),
    (r"^language_model\.model\.layers\.(\d+)\.feed_forward\.w1\.weight$",
     r"model.language_model.layers.\1.mlp.gate_proj.weight"),
    (r"^language_model\.model\.layers\.(\d+)\.feed_forward\.w3\.weight$",
     r"model.language_model.layers.\1.mlp.up_proj.weight"),
    (r"^language_model\.model\.layers\.(\d+)\.feed_forward\.w2\.weight$",
     r"model.language_model.layers.\1.mlp.down_proj.weight"),
    (r"^language_model\.model\.layers\.(\d+)\.attention_norm\.weight$",
     r"model.language_model.layers.\1.input_layernorm.weight"),
    (r"^language_model\.model\.layers\.(\d+)\.ffn_norm\.weight$",
     r"model.language_model.layers.\1.post_attention_layernorm.weight"),
]
VISION_QKV = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$")
INTERNLM2_WQKV = re.compile(r"^language_model\.model\.layers\.(\d+)\.attention\.wqkv\.(weight|bias)$")
# Buffers the official modules register but recompute (never weights): they may sit in a shard.
RECOMPUTED_BUFFERS = re.compile(r"\.rotary_emb\.inv_freq$")


@dataclass(frozen=True)
class AttentionShape:
    """Head layout of InternLM2's fused ``wqkv``."""

    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:
        return self.num_heads // self.num_kv_heads


def split_vision_qkv(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """InternViT ``attn.qkv`` (3D, D) or (3D,) → q, k, v: consecutive thirds of the rows."""
    if tensor.shape[0] % 3:
        raise ValueError(f"vision qkv: {tuple(tensor.shape)} rows are not a multiple of 3")
    return tuple(t.contiguous() for t in tensor.chunk(3, dim=0))  # type: ignore[return-value]


def split_internlm2_wqkv(tensor: torch.Tensor, shape: AttentionShape
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """InternLM2 ``wqkv`` ((heads + 2·kv)·hd, H) or its bias → q (heads·hd, …), k, v (kv·hd, …).

    Rows are grouped per key/value head: [q_0 … q_{g−1}, k, v] with g = heads / kv_heads, each
    block ``head_dim`` rows, so query head j·g + i lives in group j, slot i.
    """
    rows = (shape.num_heads + 2 * shape.num_kv_heads) * shape.head_dim
    if tensor.shape[0] != rows:
        raise ValueError(f"wqkv: {tensor.shape[0]} rows, expected (heads {shape.num_heads} + 2 × kv heads "
                         f"{shape.num_kv_heads}) × head_dim {shape.head_dim} = {rows}")
    rest = tensor.shape[1:]
    grouped = tensor.reshape(shape.num_kv_heads, shape.group + 2, shape.head_dim, *rest)
    q = grouped[:, :shape.group].reshape(shape.num_heads * shape.head_dim, *rest)
    k = grouped[:, shape.group].reshape(shape.num_kv_heads * shape.head_dim, *rest)
    v = grouped[:, shape.group + 1].reshape(shape.num_kv_heads * shape.head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


@dataclass
class MappedState:
    """The official tensors sorted out: ``native`` (the VLM's state, native names), ``himtok``
    (HiMTok's state without the ``mask_decoder.`` prefix), ``unplaced`` (names that have no place)
    and ``skipped`` (recomputed buffers, listed for the record)."""

    native: dict[str, torch.Tensor]
    himtok: dict[str, torch.Tensor]
    unplaced: list[str]
    skipped: list[str]


def map_official_tensor(key: str, tensor: torch.Tensor, attention: AttentionShape, out: MappedState) -> None:
    """Place one official tensor into ``out`` (see :class:`MappedState`)."""
    if key.startswith(HIMTOK_PREFIX):
        out.himtok[key[len(HIMTOK_PREFIX):]] = tensor
        return
    if RECOMPUTED_BUFFERS.search(key):
        out.skipped.append(key)
        return
    match = VISION_QKV.match(key)
    if match:
        base = f"model.vision_tower.encoder.layer.{match.group(1)}.attention"
        for name, part in zip(("q_proj", "k_proj", "v_proj"), split_vision_qkv(tensor)):
            out.native[f"{base}.{name}.{match.group(2)}"] = part
        return
    match = INTERNLM2_WQKV.match(key)
    if match:
        base = f"model.language_model.layers.{match.group(1)}.self_attn"
        for name, part in zip(("q_proj", "k_proj", "v_proj"), split_internlm2_wqkv(tensor, attention)):
            out.native[f"{base}.{name}.{match.group(2)}"] = part
        return
    native = _rename(key, VISION_RULES) or _rename(key, PROJECTOR_RULES) or _rename(key, INTERNLM2_RULES)
    if native is None:
        out.unplaced.append(key)
    else:
        out.native[native] = tensor
