"""Mask words inside vision-language models: vocabulary surgery, prompts, constrained decoding
and the chat pipeline (masks in and out of Qwen2.5-VL / Qwen3-VL).

Needs the ``[mllm]`` extra (torchvision for the Qwen image processors); ``import masktok`` never
imports this package.
"""

from __future__ import annotations

from typing import Any

# name → module under masktok.mllm; imported on first use, so the settings (which the command
# line reads) load without the VLM stack.
_LAZY = {
    "GenerationSettings": "generation_settings", "MaskChat": "chat",
    "MaskGrammarLogitsProcessor": "constrained", "span_length_range": "constrained",
    "Conversation": "conversation",
    "GroundedPhrase": "grounding", "SceneGraphRelation": "grounding",
    "ChatResult": "results", "MaskPrediction": "results",
    "AnswerDone": "streaming", "MaskReady": "streaming", "TextChunk": "streaming",
    "VocabularySurgery": "vocabulary", "add_mask_vocabulary": "vocabulary", "mask_token_ids": "vocabulary",
}
_ZOOM = ("ZoomConfig", "ZoomCrop", "zoom_in")  # masktok.masks.zoom, offered here too

__all__ = sorted([*_LAZY, *_ZOOM])


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"masktok.mllm.{_LAZY[name]}"), name)
    if name in _ZOOM:
        return getattr(importlib.import_module("masktok.masks.zoom"), name)
    raise AttributeError(f"module 'masktok.mllm' has no attribute {name!r}")
