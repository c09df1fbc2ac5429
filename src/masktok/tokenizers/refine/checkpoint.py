"""Meta's ``sam2.1_hiera_*.pt`` (``{"model": state dict}``, Meta names) → the state of
transformers' ``Sam2Model``, strictly: the renames are SAMTok's (:mod:`masktok.tokenizers.samtok.
checkpoint`, derived from the model itself), video-memory tensors are dropped after a shape check,
anything else missing, extra or mis-shaped is an error naming it."""

from __future__ import annotations

import re

import torch
from torch import nn

from masktok.tokenizers.samtok import checkpoint as samtok_checkpoint
from masktok.tokenizers.samtok.checkpoint import CheckpointError, CheckpointKeyError
from masktok.tokenizers.samtok.config import HIERA_PRESETS, SAMTokConfig

PREFIX = samtok_checkpoint.TOKENIZER_SAM2_PREFIX


class _Holder(nn.Module):
    """``sam2`` as a submodule, so keys read ``sam2.*`` as in a SAMTok model."""

    def __init__(self, sam2: nn.Module) -> None:
        super().__init__()
        self.sam2 = sam2


def infer_sam2_config(state: dict[str, torch.Tensor], source: str) -> SAMTokConfig:
    """The SAM 2.1 size of a Meta state dict, from its tensor shapes (Hiera width, block count,
    background positional size)."""
    key = "image_encoder.trunk.pos_embed"
    if key not in state:
        raise CheckpointError(f"{source}: no {key}: not a SAM 2 checkpoint")
    embed_dim, background = state[key].shape[1], tuple(state[key].shape[2:])
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))}
    for hiera in HIERA_PRESETS.values():
        if (hiera.embed_dim, hiera.num_blocks, hiera.window_pos_embed_background) == (embed_dim, len(blocks), background):
            return SAMTokConfig(hiera=hiera)
    raise CheckpointError(f"{source}: a Hiera with embed_dim {embed_dim}, {len(blocks)} blocks and background "
                          f"{background} matches no SAM 2.1 preset; pass config=SAMTokConfig(...)")


def sam2_state_from_meta(model: nn.Module, config: SAMTokConfig, state: dict[str, torch.Tensor],
                         source: str) -> dict[str, torch.Tensor]:
    """Meta-named SAM 2 tensors → ``model`` (a ``Sam2Model``) state."""
    holder = _Holder(model)
    shapes = {k: tuple(v.shape) for k, v in holder.state_dict().items()}
    depths = samtok_checkpoint._feedforward_depths(holder)
    renamed: dict[str, str] = {}
    for key in shapes:
        if key in samtok_checkpoint.POSITIONAL_HF_KEYS or key == samtok_checkpoint.POINT_EMBED_HF_KEY:
            continue
        renamed[samtok_checkpoint._meta_name(key, depths)[len(PREFIX):]] = key
    points = shapes[samtok_checkpoint.POINT_EMBED_HF_KEY][0]
    point_keys = [f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in range(points)]
    positional = samtok_checkpoint.POSITIONAL_META_KEY
    video = {k[len(PREFIX):]: v for k, v in samtok_checkpoint.video_only_shapes(config).items()}
    expected = {meta: shapes[hf] for meta, hf in renamed.items()}
    expected.update({k: (1, shapes[samtok_checkpoint.POINT_EMBED_HF_KEY][1]) for k in point_keys})
    expected[positional] = shapes[samtok_checkpoint.POSITIONAL_HF_KEYS[0]]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in video]
    mismatched = [(k, tuple(state[k].shape), s) for k, s in {**expected, **video}.items()
                  if k in state and tuple(state[k].shape) != tuple(s)]
    if missing or unexpected or mismatched:
        raise CheckpointKeyError(source, missing, unexpected, mismatched)
    out = {hf[len("sam2."):]: state[meta] for meta, hf in renamed.items()}
    out[samtok_checkpoint.POINT_EMBED_HF_KEY[len("sam2."):]] = torch.cat([state[k] for k in point_keys])
    for key in samtok_checkpoint.POSITIONAL_HF_KEYS:
        out[key[len("sam2."):]] = state[positional]
    return out


def sam2_state_to_meta(model: nn.Module, config: SAMTokConfig) -> dict[str, torch.Tensor]:
    """``Sam2Model`` state → Meta names (video-memory tensors as zeros), the inverse of
    :func:`sam2_state_from_meta`; used to write test files in Meta's layout."""
    holder = _Holder(model)
    state = holder.state_dict()
    depths = samtok_checkpoint._feedforward_depths(holder)
    out = {}
    for key, value in state.items():
        if key in samtok_checkpoint.POSITIONAL_HF_KEYS or key == samtok_checkpoint.POINT_EMBED_HF_KEY:
            continue
        out[samtok_checkpoint._meta_name(key, depths)[len(PREFIX):]] = value
    for i, row in enumerate(state[samtok_checkpoint.POINT_EMBED_HF_KEY]):
        out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = row[None]
    out[samtok_checkpoint.POSITIONAL_META_KEY] = state[samtok_checkpoint.POSITIONAL_HF_KEYS[0]]
    out.update({k[len(PREFIX):]: torch.zeros(s) for k, s in samtok_checkpoint.video_only_shapes(config).items()})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}
