"""Tiny random Qwen2.5-VL / Qwen3-VL models built offline for the VLM tests.

Everything is made here from configs: a byte-level BPE tokenizer trained on a few sentences with
the ``tokenizers`` library, Qwen's special tokens, a chat template, a processor and a model with
hidden size 64, 2 layers and a one-block vision tower. Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, trainers
from tokenizers.pre_tokenizers import ByteLevel

FAMILIES = ("qwen2_5_vl", "qwen3_vl")


@pytest.fixture(scope="module", autouse=True)
def single_thread_torch():
    """Run a test module's tiny models on one thread (restored afterwards): at these sizes more
    threads only add synchronisation, and with parallel test workers on few cores they thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# A Qwen-style chat template: string or list content, images as vision placeholders.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)

CORPUS = [
    "Please segment the dog in this image.",
    "Describe the masked area comprehensively.",
    "A man is riding a horse near the river, and a woman holds a red umbrella.",
    "Could you please give me a brief description of the image?",
    "The mask appears at the left. No target. person beside elephant on the grass.",
    "What is the object in the region? It is a small cat sitting on a wooden chair.",
    "0123456789 [[12, 34, 56, 78]] <ref>car</ref> <box> tokens",
]


@dataclass(frozen=True)
class TinyVLMConfig:
    """Sizes of a tiny random VLM (everything CPU-fast)."""

    family: str = "qwen2_5_vl"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vision_hidden_size: int = 32
    vision_depth: int = 1
    tie_word_embeddings: bool = False
    bpe_vocab_size: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family: expected one of {FAMILIES}, got {self.family!r}")

    @property
    def patch_size(self) -> int:
        return 14 if self.family == "qwen2_5_vl" else 16


def build_tiny_tokenizer(config: TinyVLMConfig = TinyVLMConfig()):
    """A Qwen2 tokenizer over a byte-level BPE trained here, with Qwen's special tokens."""
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=config.bpe_vocab_size,
                                  initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(CORPUS * 4, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=dict(model["vocab"]), merges=merges, unk_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_tokens(QWEN_SPECIAL_TOKENS, special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_processor(config: TinyVLMConfig = TinyVLMConfig(), tokenizer=None):
    """The family's processor over the tiny tokenizer; images become a few dozen patches."""
    from transformers import Qwen2VLImageProcessor

    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer(config)
    unit = config.patch_size * 2
    sizes = dict(min_pixels=unit * unit * 4, max_pixels=unit * unit * 16,
                 patch_size=config.patch_size, merge_size=2, temporal_patch_size=2)
    image_processor = Qwen2VLImageProcessor(**sizes)
    if config.family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor(patch_size=config.patch_size, merge_size=2,
                                                temporal_patch_size=2)
        return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   video_processor=video_processor, chat_template=CHAT_TEMPLATE)
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    video_processor = Qwen3VLVideoProcessor(patch_size=config.patch_size, merge_size=2,
                                            temporal_patch_size=2)
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def build_tiny_vlm(config: TinyVLMConfig, tokenizer):
    """A random ``Qwen2_5_VLForConditionalGeneration`` / ``Qwen3VLForConditionalGeneration``."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    head_dim = config.hidden_size // config.num_heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(vocab_size=len(tokenizer), hidden_size=config.hidden_size,
                intermediate_size=2 * config.hidden_size, num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
                max_position_embeddings=1024, pad_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"])
    vision = dict(depth=config.vision_depth, hidden_size=config.vision_hidden_size,
                  intermediate_size=2 * config.vision_hidden_size, num_heads=2,
                  out_hidden_size=config.hidden_size, patch_size=config.patch_size,
                  spatial_merge_size=2, temporal_patch_size=2)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"],
                  vision_end_token_id=ids["<|vision_end|>"],
                  tie_word_embeddings=config.tie_word_embeddings)
    torch.manual_seed(config.seed)
    if config.family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                   "mrope_section": mrope}
        text["bos_token_id"] = None
        vision.update(window_size=2 * config.patch_size * 2, fullatt_block_indexes=[0])
        model_config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
        model = Qwen2_5_VLForConditionalGeneration(model_config)
    else:
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        text.update(head_dim=head_dim, rope_parameters={
            "rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope,
            "mrope_interleaved": True})
        vision.update(num_position_embeddings=64, deepstack_visual_indexes=[0])
        model_config = Qwen3VLConfig(text_config=text, vision_config=vision, **common)
        model = Qwen3VLForConditionalGeneration(model_config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.do_sample = False
    return model.eval()


def build_tiny_pair(config: TinyVLMConfig = TinyVLMConfig()):
    """(model, processor): a tiny random VLM and its processor, without mask words."""
    processor = build_tiny_processor(config)
    return build_tiny_vlm(config, processor.tokenizer), processor


def tiny_image(height: int = 48, width: int = 64, seed: int = 0) -> Image.Image:
    """A small random RGB image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A bool (H, W) mask that is True inside the inclusive xyxy ``box``."""
    x1, y1, x2, y2 = box
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2 + 1, x1:x2 + 1] = True
    return mask


def build_tiny_himtok(seed: int = 0, max_codes: int = 8, codebook_size: int = 1024):
    """A random HiMTok (masktok-s structure at toy widths), by default with the full 1024-code vocabulary."""
    from dataclasses import replace

    from masktok.tokenizers.himtok import HiMTok, PixelDecoderConfig, masktok_s_config

    config = replace(
        masktok_s_config(), name="tiny", image_size=64, patch_size=16, num_latent_tokens=max_codes,
        encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
        decoder_heads=2, token_dim=4, codebook_size=codebook_size,
        pixel_decoder=PixelDecoderConfig(z_channels=16, hidden_channels=8,
                                         channel_mult=(1, 1, 1, 1, 2), num_res_blocks=1,
                                         out_channels=1, norm_groups=4, legacy_shortcut=False))
    return HiMTok.from_config(config, seed=seed)


def build_tiny_chat(mask_tokenizer, config: TinyVLMConfig = TinyVLMConfig(), **kwargs):
    """A ``MaskChat`` over a tiny random VLM extended with the tokenizer's vocabulary."""
    from masktok.mllm import MaskChat, add_mask_vocabulary

    model, processor = build_tiny_pair(config)
    add_mask_vocabulary(model, processor, mask_tokenizer.vocabulary)
    return MaskChat(model, processor, mask_tokenizer, **kwargs)


class ScriptedAnswers:
    """A logits processor that makes row i generate ``scripts[i]`` (token ids), then ``eos_id``.

    It stands for a trained model: tests choose the exact answer, well formed or malformed.
    """

    def __init__(self, scripts: list[list[int]], eos_id: int):
        self.scripts = scripts
        self.eos_id = eos_id
        self.prompt_length: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        step = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            script = self.scripts[row % len(self.scripts)]
            token = script[step] if step < len(script) else self.eos_id
            forced[row, token] = 0.0
        return forced


def script_ids(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` (mask words become their single ids)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tiny_samtok_config():
    """A CPU-fast SAMTok (128² input, width 32) with the official 256 × 2 codebooks (514 words)."""
    from masktok.tokenizers.samtok.config import tiny_test_config

    return tiny_test_config(codebook_size=256)


def build_tiny_samtok(seed: int = 0):
    """A random tiny SAMTok."""
    from masktok.tokenizers.samtok import SAMTok

    return SAMTok.from_config(tiny_samtok_config(), seed=seed)


def save_official_samtok(tokenizer, folder) -> None:
    """Write ``tokenizer`` as an official VLM folder would hold it: ``mask_tokenizer_256x2.pth``
    plus ``sam2.1_hiera_large.pt`` (Meta's ``{"model": …}`` dict of the SAM 2 tensors)."""
    from pathlib import Path

    from masktok.tokenizers.samtok.checkpoint import TOKENIZER_SAM2_PREFIX

    folder = Path(folder)
    tokenizer.save_pretrained(folder, layout="official")
    state = torch.load(folder / "mask_tokenizer_256x2.pth", weights_only=True)
    sam2 = {k[len(TOKENIZER_SAM2_PREFIX):]: v for k, v in state.items()
            if k.startswith(TOKENIZER_SAM2_PREFIX) and ".sam_mask_encoder." not in "." + k}
    torch.save({"model": sam2}, folder / "sam2.1_hiera_large.pt")
