"""Tiny random stand-ins of the four published pixel-MLLMs, each written in its official folder
layout, and the round trip every family is tested with (load → chat → SFT → reload → chat).

- ``Qwen3-VL-8B-SAMTok`` / ``Qwen2.5-VL-7B-SAMTok``: the Hugging Face model + processor files,
  ``mask_tokenizer_256x2.pth`` and ``sam2.1_hiera_large.pt`` (the SAMTok README's layout);
- ``PLM-1B-SAMTok``: a native PerceptionLM folder (timm vision tower, Llama text) + the same two
  SAMTok files (the SAMTok repo's ``evaluation/perceptionlm`` loads it with the Auto classes);
- ``InternVL2_5-HiMTok-8B``: the remote-code InternVL layout: ``config.json`` with
  ``model_type: internvl_chat`` and ``auto_map``, InternViT + InternLM2 + HiMTok tensors under
  their official names in two safetensors shards with an index, ``tokenizer.model``
  (SentencePiece BPE) and ``tokenizer_config.json`` with the added tokens (InternVL's image tokens,
  then HiMTok's mask words as special tokens, as its fine-tuning script adds them).
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from masktok.words import format_mask_words
from mllm_fixtures import (CORPUS, ScriptedAnswers, TinyVLMConfig, box_mask, build_tiny_pair,
                           build_tiny_samtok, save_official_samtok, script_ids, tiny_image,
                           tiny_samtok_config)

def tiny_official_himtok_config():
    """HiMTok's official structure (every key of himtok.pth, 32 codes of 1024) at toy widths."""
    from masktok.tokenizers.himtok import PixelDecoderConfig, official_config

    return replace(official_config(), image_size=64, encoder_width=32, encoder_depth=1, encoder_heads=2,
                   decoder_width=32, decoder_depth=1, decoder_heads=2,
                   pixel_decoder=PixelDecoderConfig(z_channels=32, hidden_channels=8, norm_groups=4))


# ---------------------------------------------------------------------------------------------
# Qwen-VL SAMTok folders


def write_samtok_sidecar(folder: Path) -> None:
    """``samtok_config.json``: the tiny Hiera's config beside the official files (the published
    Hiera-L needs none: its preset is read off the tensor shapes)."""
    (folder / "samtok_config.json").write_text(json.dumps(tiny_samtok_config().to_dict()))


def write_qwen_samtok(folder: Path, family: str, *, sidecar: bool = True) -> Path:
    """A Qwen2.5-VL / Qwen3-VL SAMTok folder: HF files + the two official SAMTok files (+ the
    tiny config's sidecar)."""
    from masktok.mllm import add_mask_vocabulary

    tokenizer = build_tiny_samtok()
    model, processor = build_tiny_pair(TinyVLMConfig(family=family))
    add_mask_vocabulary(model, processor, tokenizer.vocabulary)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_official_samtok(tokenizer, folder)
    if sidecar:
        write_samtok_sidecar(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# PerceptionLM SAMTok folder

PLM_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
               "<|eot_id|>", "<|image|>", "<|video|>", "<|object_ref_start|>", "<|object_ref_end|>"]
# The Llama-3 style template of the PerceptionLM folders: images first, then the text.
PLM_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
    "{%- for item in message['content'] %}{%- if item['type'] == 'image' %}{{ '<|image|>' }}{%- endif %}{%- endfor %}"
    "{%- for item in message['content'] %}{%- if item['type'] == 'text' %}{{- item['text'] }}{%- endif %}{%- endfor %}"
    "{%- endif %}{{- '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")


def build_plm_pair():
    """A tiny random ``PerceptionLMForConditionalGeneration`` (timm PE vision tower) + processor."""
    from tokenizers import Tokenizer, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from tokenizers.decoders import ByteLevel as ByteLevelDecoder
    from transformers import (LlamaConfig, PerceptionLMConfig, PerceptionLMForConditionalGeneration,
                              PerceptionLMImageProcessor, PerceptionLMProcessor, PerceptionLMVideoProcessor,
                              PreTrainedTokenizerFast, TimmWrapperConfig)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = ByteLevel(add_prefix_space=False)
    bpe.decoder = ByteLevelDecoder()
    bpe.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=400, initial_alphabet=ByteLevel.alphabet(),
                                                             show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>", pad_token="<|end_of_text|>",
                                        extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"})
    tokenizer.add_tokens(PLM_SPECIAL, special_tokens=True)
    tokenizer.chat_template = PLM_TEMPLATE
    image_processor = PerceptionLMImageProcessor(tile_size=56, max_num_tiles=2, vision_input_type="thumb+tile")
    video_processor = PerceptionLMVideoProcessor(tile_size=56)
    processor = PerceptionLMProcessor(image_processor=image_processor, video_processor=video_processor,
                                      tokenizer=tokenizer, patch_size=14, pooling_ratio=2, chat_template=PLM_TEMPLATE)
    vision = TimmWrapperConfig(architecture="vit_pe_core_large_patch14_336", num_classes=0,
                               model_args=dict(embed_dim=32, depth=1, num_heads=2, img_size=[56, 56],
                                               ref_feat_shape=[4, 4], global_pool=""))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in PLM_SPECIAL}
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|eot_id|>"],
                       pad_token_id=ids["<|end_of_text|>"])
    config = PerceptionLMConfig(vision_config=vision, text_config=text, projector_pooling_ratio=2,
                                image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
                                tie_word_embeddings=False)
    torch.manual_seed(0)
    model = PerceptionLMForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|eot_id|>"]
    model.generation_config.pad_token_id = ids["<|end_of_text|>"]
    model.generation_config.do_sample = False
    return model.eval(), processor


def write_plm_samtok(folder: Path) -> Path:
    """A PLM-1B-SAMTok-style folder: PerceptionLM HF files + the two official SAMTok files."""
    from masktok.mllm import add_mask_vocabulary

    tokenizer = build_tiny_samtok()
    model, processor = build_plm_pair()
    add_mask_vocabulary(model, processor, tokenizer.vocabulary)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_official_samtok(tokenizer, folder)
    write_samtok_sidecar(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# InternVL2.5-HiMTok folder (remote-code layout)

INTERNLM2_USER_SYMBOLS = ["<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>",
                          "<|im_end|>", "<|im_start|>"]
INTERNVL_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
VISION = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=28,
              patch_size=14)
LLM = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, intermediate_size=128)


def write_sentencepiece(path: Path) -> int:
    """A SentencePiece BPE model like InternLM2's (byte fallback, chat symbols inside); its size."""
    import sentencepiece

    text = CORPUS + ["<|im_start|>user\nSegment <ref>the dog</ref>.<|im_end|>\n<|im_start|>assistant\n",
                     "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text * 20), model_writer=model, vocab_size=500, model_type="bpe",
        byte_fallback=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", user_defined_symbols=INTERNLM2_USER_SYMBOLS, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, character_coverage=1.0, minloglevel=2)
    path.write_bytes(model.getvalue())
    return sentencepiece.SentencePieceProcessor(model_file=str(path)).get_piece_size()


def official_internvl_shapes(vocab_size: int) -> dict[str, tuple[int, ...]]:
    """Every official InternVL (InternViT + mlp1 + InternLM2) tensor name → shape (see
    :mod:`masktok.mllm.internvl.keys` for the modelling code each comes from)."""
    d, i_v, layers_v = VISION["hidden_size"], VISION["intermediate_size"], VISION["num_hidden_layers"]
    n = (VISION["image_size"] // VISION["patch_size"]) ** 2
    h, i_l = LLM["hidden_size"], LLM["intermediate_size"]
    hd = h // LLM["num_attention_heads"]
    qkv_rows = (LLM["num_attention_heads"] + 2 * LLM["num_key_value_heads"]) * hd
    shapes = {"vision_model.embeddings.class_embedding": (1, 1, d),
              "vision_model.embeddings.patch_embedding.weight": (d, 3, VISION["patch_size"], VISION["patch_size"]),
              "vision_model.embeddings.patch_embedding.bias": (d,),
              "vision_model.embeddings.position_embedding": (1, n + 1, d),
              "mlp1.0.weight": (4 * d,), "mlp1.0.bias": (4 * d,), "mlp1.1.weight": (h, 4 * d), "mlp1.1.bias": (h,),
              "mlp1.3.weight": (h, h), "mlp1.3.bias": (h,),
              "language_model.model.tok_embeddings.weight": (vocab_size, h),
              "language_model.model.norm.weight": (h,), "language_model.output.weight": (vocab_size, h)}
    for layer in range(layers_v):
        p = f"vision_model.encoder.layers.{layer}."
        shapes.update({p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,),
                       p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                       p + "mlp.fc1.weight": (i_v, d), p + "mlp.fc1.bias": (i_v,),
                       p + "mlp.fc2.weight": (d, i_v), p + "mlp.fc2.bias": (d,),
                       p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "norm2.weight": (d,),
                       p + "norm2.bias": (d,), p + "ls1": (d,), p + "ls2": (d,)})
    for layer in range(LLM["num_hidden_layers"]):
        p = f"language_model.model.layers.{layer}."
        shapes.update({p + "attention.wqkv.weight": (qkv_rows, h), p + "attention.wo.weight": (h, h),
                       p + "feed_forward.w1.weight": (i_l, h), p + "feed_forward.w3.weight": (i_l, h),
                       p + "feed_forward.w2.weight": (h, i_l), p + "attention_norm.weight": (h,),
                       p + "ffn_norm.weight": (h,)})
    return shapes


def write_internvl_himtok(folder: Path, *, seed: int = 0, sidecar: bool = True) -> Path:
    """The official InternVL2.5-HiMTok layout at toy sizes (see the module docstring), plus
    ``himtok_config.json`` for the toy HiMTok (the published one is the official config)."""
    from safetensors.torch import save_file

    from masktok.tokenizers.himtok import HiMTok

    folder.mkdir(parents=True, exist_ok=True)
    base = write_sentencepiece(folder / "tokenizer.model")
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    decoder = {str(i): {"content": pieces.id_to_piece(i), "special": True} for i in range(3)}
    for symbol in INTERNLM2_USER_SYMBOLS:
        decoder[str(pieces.piece_to_id(symbol))] = {"content": symbol, "special": True}
    added = INTERNVL_TOKENS + ["<|mt_start|>", "<|mt_end|>"] + [f"<|mt_{c}|>" for c in range(1024)]
    for offset, token in enumerate(added):
        decoder[str(base + offset)] = {"content": token, "special": True, "lstrip": False, "rstrip": False,
                                       "normalized": False, "single_word": False}
    vocab_size = base + len(added)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "InternLM2Tokenizer", "auto_map": {"AutoTokenizer": [
            "tokenization_internlm2.InternLM2Tokenizer", "tokenization_internlm2_fast.InternLM2TokenizerFast"]},
        "added_tokens_decoder": decoder, "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "model_max_length": 4096}, indent=1))
    llm = dict(LLM, architectures=["InternLM2ForCausalLM"], model_type="internlm2", vocab_size=vocab_size,
               rms_norm_eps=1e-5, rope_theta=1000000, rope_scaling={"type": "dynamic", "factor": 2.0},
               max_position_embeddings=512, bias=False, bos_token_id=1, eos_token_id=2, pad_token_id=2,
               hidden_act="silu", tie_word_embeddings=False,
               auto_map={"AutoConfig": "configuration_internlm2.InternLM2Config"})
    vision = dict(VISION, architectures=["InternVisionModel"], model_type="intern_vit_6b", qkv_bias=True,
                  qk_normalization=False, norm_type="layer_norm", layer_norm_eps=1e-6, hidden_act="gelu",
                  use_flash_attn=False, drop_path_rate=0.0, initializer_factor=1.0)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["InternVLWithHiMTok"], "model_type": "internvl_chat",
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": 28, "max_dynamic_patch": 2,
        "min_dynamic_patch": 1, "ps_version": "v2", "select_layer": -1, "template": "internvl2_5",
        "use_thumbnail": True, "torch_dtype": "bfloat16", "vision_config": vision, "llm_config": llm}, indent=1))
    generator = torch.Generator().manual_seed(seed)
    tensors = {k: (torch.randn(shape, generator=generator) * 0.05).to(torch.bfloat16)
               for k, shape in official_internvl_shapes(vocab_size).items()}
    for k in tensors:
        if k.endswith(("norm.weight", "norm1.weight", "norm2.weight", "mlp1.0.weight")) or k.endswith(("ls1", "ls2")):
            tensors[k] = torch.ones_like(tensors[k])
    himtok = HiMTok.from_config(tiny_official_himtok_config(), seed=seed)
    tensors.update({f"mask_decoder.{k}": v.detach().to(torch.bfloat16).contiguous()
                    for k, v in himtok.model.state_dict().items()})
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in halves.items():
        save_file({k: tensors[k] for k in keys}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in keys})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if sidecar:
        (folder / "himtok_config.json").write_text(json.dumps(tiny_official_himtok_config().to_dict()))
    return folder


# ---------------------------------------------------------------------------------------------
# The round trip


def chat_with_masks(chat, *, seed: int = 0):
    """One turn with a user mask in (as words) and a scripted answer holding one mask out,
    grammar-constrained decoding on. Returns (result, the user turn's text)."""
    image = tiny_image(seed=seed)
    mask = box_mask(48, 64, (5, 5, 30, 30))
    words = chat.mask_tokenizer.encode_words(image, mask[None])[0]
    processors = (ScriptedAnswers([script_ids(chat.tokenizer, f"It is {words}")], chat.eos_ids[0]),)
    conversation = chat.start(image)
    chat.add_user_turn(conversation, "What is <mask>? Please segment it.", mask[None])
    result = chat.generate([conversation], logits_processors=processors, constrained=True,
                           max_new_tokens=len(words) + 12)[0]
    user_text = "".join(item.get("text", "") for item in conversation.messages[0]["content"])
    assert words in user_text
    assert len(result.masks) == 1 and result.masks[0].span.ok, result.text
    assert result.decoded_masks.shape == (1, 48, 64) and result.decoded_masks.dtype == np.bool_
    return result, words


def sft_jsonl(folder: Path, vocab, *, num_samples: int = 2, seed: int = 0) -> Path:
    """A few RES samples answered with random words of ``vocab``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(num_samples):
        image = folder / f"img_{i}.png"
        tiny_image(seed=seed + i).save(image)
        length = vocab.num_levels if vocab.name == "samtok" else 8
        codes = tuple(rng.randrange(vocab.codebook_size) for _ in range(length))
        answer = f"It is {format_mask_words(codes, vocab)}."
        rows.append({"id": str(i), "images": [str(image)], "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Please segment the dog."}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]}]})
    path = folder / "res.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_few_sft_steps(folder: Path, out: Path, vocab, steps: int = 2):
    """A few SFT steps from ``folder`` through the public recipe; returns its RecipeResult."""
    from masktok.train.vlm.config import ModelSettings, SFTRecipe, TrainSettings
    from masktok.train.vlm.sft import run_sft

    data = sft_jsonl(out / "data", vocab)
    train = TrainSettings(str(out / "run"), max_steps=steps, learning_rate=1e-3, batch_size=1, warmup_ratio=0.0,
                          lr_scheduler="constant", logging_steps=1, save_steps=0, precision="fp32",
                          extra={"disable_tqdm": True})
    return run_sft(SFTRecipe(model=ModelSettings(str(folder)), train=train, data=(str(data),), max_length=512))


def run_few_grpo_steps(folder: Path, out: Path, vocab, steps: int = 1):
    """A GRPO step from ``folder`` through the public recipe (constrained rollouts)."""
    from masktok.train.vlm.config import GRPORecipe, ModelSettings, TrainSettings
    from masktok.train.vlm.grpo import run_grpo

    data = sft_jsonl(out / "grpo_data", vocab)
    train = TrainSettings(str(out / "grpo"), max_steps=steps, learning_rate=1e-4, batch_size=2, warmup_ratio=0.0,
                          lr_scheduler="constant", logging_steps=1, save_steps=0, precision="fp32",
                          extra={"disable_tqdm": True})
    max_codes = 2 if vocab.name == "samtok" else 8
    return run_grpo(GRPORecipe(model=ModelSettings(str(folder)), train=train, data=(str(data),), num_generations=2,
                               max_completion_length=max_codes + 8))


def samtok_spec_shapes(shared_specs: Path) -> dict[str, tuple[int, ...]]:
    """Key → shape of the official SAMTok checkpoint, from its key list in the specs folder."""
    import ast

    shapes = {}
    for line in (shared_specs / "samtok_vq_sam2_state_dict.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, _ = line.split("\t")
            shapes[key] = tuple(ast.literal_eval(shape))
    return shapes
