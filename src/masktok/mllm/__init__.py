"""Mask words inside vision-language models: vocabulary surgery, prompts, constrained decoding
and the chat pipeline (masks in and out of Qwen2.5-VL / Qwen3-VL).

Needs the ``[mllm]`` extra (torchvision for the Qwen image processors); ``import masktok`` never
imports this package.
"""

from masktok.mllm.chat import GenerationSettings, MaskChat
from masktok.mllm.constrained import MaskGrammarLogitsProcessor, span_length_range
from masktok.mllm.conversation import Conversation
from masktok.mllm.grounding import GroundedPhrase, SceneGraphRelation
from masktok.mllm.results import ChatResult, MaskPrediction
from masktok.mllm.streaming import AnswerDone, MaskReady, TextChunk
from masktok.mllm.vocabulary import VocabularySurgery, add_mask_vocabulary, mask_token_ids
from masktok.masks.zoom import ZoomConfig, ZoomCrop, zoom_in

__all__ = [
    "AnswerDone", "ChatResult", "Conversation", "GenerationSettings", "GroundedPhrase",
    "MaskChat", "MaskGrammarLogitsProcessor", "MaskPrediction", "MaskReady", "SceneGraphRelation",
    "TextChunk", "VocabularySurgery", "ZoomConfig", "ZoomCrop", "add_mask_vocabulary",
    "mask_token_ids", "span_length_range", "zoom_in",
]
