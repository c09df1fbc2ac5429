"""InternLM2's SentencePiece tokenizer (remote code ``InternLM2Tokenizer``) → a fast tokenizer
with the same ids, and the native ``InternVLProcessor`` around it.

The official folder holds ``tokenizer.model`` (a SentencePiece BPE model) and, in
``tokenizer_config.json`` (``added_tokens_decoder``) or ``added_tokens.json``, the tokens added on
top: InternVL's ``<img>``, ``</img>``, ``<IMG_CONTEXT>``, ``<ref>``, ``<box>``…, and HiMTok's
``<|mt_start|>``, ``<|mt_end|>``, ``<|mt_0|>``… ``<|mt_1023|>`` (added as *special* tokens by
``internvl/train/internvl_chat_finetune.py``). Here every id stays the same, the mask words become
non-special ``AddedToken``s (``skip_special_tokens=True`` would delete special ones), and the
SentencePiece part is checked against SentencePiece itself on probe texts: a difference refuses
the conversion instead of changing ids silently. Needs ``sentencepiece`` (the ``[mllm]`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from masktok.words import MaskVocabulary

SPIECE_FILE = "tokenizer.model"
# The native processor also names a video placeholder. InternVL2.5-HiMTok has no video token (its
# frames are images), and a new one would reach past the embedding rows: ``<img>``, which a
# rendered prompt never holds before the processor expands its images, stands in (videos are not
# supported by the converted folder).
IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<img>"}
PROBE_TEXTS = (
    "Please segment the dog in this image.", "  two  leading spaces and  doubled  ones  ",
    "Tabs\tand\nnew lines\r\n", "数字 0123456789 和标点，。！", "[[12, 34, 560, 789]] <ref>car</ref>",
    "ÿ€💡 émigré naïve", "",
)


class TokenizerConversionError(ValueError):
    """The SentencePiece tokenizer cannot be reproduced exactly."""


def _read_added_tokens(folder: Path) -> dict[int, dict[str, Any]]:
    """id → {content, special} of every added token the folder declares."""
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    decoder = config.get("added_tokens_decoder")
    if decoder:
        return {int(i): {"content": t["content"], "special": bool(t.get("special", True))}
                for i, t in decoder.items()}
    added_path = folder / "added_tokens.json"
    if added_path.is_file():
        return {int(i): {"content": t, "special": True} for t, i in json.loads(added_path.read_text()).items()}
    return {}


def _sentencepiece_tokenizer(model_file: Path) -> tuple[Tokenizer, Any]:
    """The SentencePiece BPE model as a ``tokenizers.Tokenizer`` (no added tokens yet) and its proto."""
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    extractor = SentencePieceExtractor(str(model_file))
    proto = extractor.proto
    if proto.trainer_spec.model_type != 2:  # 2 = BPE in sentencepiece_model.proto
        raise TokenizerConversionError(f"{model_file}: SentencePiece model type {proto.trainer_spec.model_type} "
                                       "is not BPE (InternLM2 uses BPE)")
    spec = proto.normalizer_spec
    if spec.precompiled_charsmap:
        raise TokenizerConversionError(f"{model_file}: the model normalises text with a character map "
                                       f"({spec.name!r}); InternLM2's does not, and this converter does not")
    parts = extractor.extract(BPE)
    unk = proto.pieces[proto.trainer_spec.unk_id].piece
    tokenizer = Tokenizer(BPE(vocab=parts["vocab"], merges=parts["merges"], unk_token=unk, fuse_unk=True,
                              byte_fallback=proto.trainer_spec.byte_fallback))
    steps = []
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))
    steps.append(normalizers.Replace(" ", "▁"))
    tokenizer.normalizer = normalizers.Sequence(steps)
    decoding = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if spec.add_dummy_prefix:
        decoding.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(decoding)
    return tokenizer, proto


def _check_against_sentencepiece(tokenizer: Tokenizer, model_file: Path) -> None:
    import sentencepiece

    reference = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    for text in PROBE_TEXTS:
        expected, got = reference.encode(text), tokenizer.encode(text, add_special_tokens=False).ids
        if expected != got:
            raise TokenizerConversionError(f"{model_file}: the converted tokenizer gives {got[:12]} for {text!r}, "
                                           f"SentencePiece gives {expected[:12]}; refusing to change token ids")


def convert_tokenizer(folder: str | Path, vocab: MaskVocabulary, *, chat_template: str) -> Any:
    """The official folder's tokenizer as a ``PreTrainedTokenizerFast`` with the same ids, BOS
    added like InternLM2 (``add_bos_token``), mask words non-special, InternVL's image tokens
    named for the processor.

    Raises:
        FileNotFoundError: no ``tokenizer.model``.
        TokenizerConversionError: ids that cannot be kept, or a SentencePiece mismatch.
    """
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    model_file = folder / SPIECE_FILE
    if not model_file.is_file():
        raise FileNotFoundError(f"{folder}: no {SPIECE_FILE} (InternLM2's SentencePiece model)")
    tokenizer, proto = _sentencepiece_tokenizer(model_file)
    _check_against_sentencepiece(tokenizer, model_file)
    base_size = len(proto.pieces)
    mask_words = set(vocab.tokens())
    added = _read_added_tokens(folder)
    for token_id in sorted(added):
        info = added[token_id]
        content, special = info["content"], info["special"] and info["content"] not in mask_words
        if token_id < base_size and proto.pieces[token_id].piece != content:
            raise TokenizerConversionError(f"{folder}: added token {content!r} claims id {token_id}, which is "
                                           f"{proto.pieces[token_id].piece!r} in {SPIECE_FILE}")
        token = AddedToken(content, normalized=False, special=special, lstrip=False, rstrip=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
        if tokenizer.token_to_id(content) != token_id:
            raise TokenizerConversionError(f"{folder}: added token {content!r} would get id "
                                           f"{tokenizer.token_to_id(content)} instead of its official id {token_id} "
                                           "(the added ids are not consecutive)")
    missing = sorted(mask_words - {info["content"] for info in added.values()})
    if missing:
        raise TokenizerConversionError(f"{folder}: the tokenizer lacks {len(missing)} of the {vocab.name} mask "
                                       f"words (first: {missing[:3]}); is this a HiMTok model?")
    bos = proto.pieces[proto.trainer_spec.bos_id].piece
    eos = proto.pieces[proto.trainer_spec.eos_id].piece
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if config.get("add_bos_token", True):
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, proto.trainer_spec.bos_id)])
    absent = [t for t in IMAGE_TOKENS.values() if tokenizer.token_to_id(t) is None]
    if absent:
        raise TokenizerConversionError(f"{folder}: InternVL's image tokens {absent} are not in the tokenizer")
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos,
        unk_token=proto.pieces[proto.trainer_spec.unk_id].piece,
        pad_token=config.get("pad_token") if isinstance(config.get("pad_token"), str) else eos,
        extra_special_tokens=dict(IMAGE_TOKENS), clean_up_tokenization_spaces=False,
        model_max_length=int(config.get("model_max_length", 8192)), padding_side="left")
    if len(fast) != size:
        raise TokenizerConversionError(f"{folder}: building the tokenizer added {len(fast) - size} token(s)")
    fast.chat_template = chat_template
    return fast


def chat_template(system: str | None, *, bos: bool = True) -> str:
    """InternVL's ``internvl2_5`` conversation as a chat template: the BOS InternLM2's tokenizer
    puts first (the rendered text is tokenized without special tokens, as transformers does),
    the default system message unless the conversation brings one, images as ``<IMG_CONTEXT>`` +
    newline (the processor expands it to ``<img>`` + context tokens + ``</img>``, as the official
    ``<image>`` placeholder)."""
    nl = "{{ '\\n' }}"  # newlines as expressions: the template engine trims those after blocks
    text = "{{ bos_token }}" if bos else ""
    if system:
        text += ("{% if messages[0]['role'] != 'system' %}<|im_start|>system" + nl + system
                 + "<|im_end|>" + nl + "{% endif %}")
    return text + (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}" + nl
        + "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for item in message['content'] %}"
        "{% if item['type'] == 'image' %}<IMG_CONTEXT>" + nl
        + "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>" + nl + "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant" + nl + "{% endif %}")


def build_processor(tokenizer: Any, *, tiling: dict[str, Any], image_seq_length: int) -> Any:
    """``InternVLProcessor``: InternVL's tiling (``dynamic_preprocess``: closest aspect-ratio grid
    of ``size``² tiles, min/max tiles, plus a thumbnail) with PIL bicubic resizing and ImageNet
    normalisation, as the official ``load_image``."""
    from transformers import InternVLProcessor, InternVLVideoProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    size = tiling["size"]
    image_processor = GotOcr2ImageProcessorPil(
        do_resize=True, size={"height": size, "width": size}, crop_to_patches=tiling["max_patches"] > 1,
        min_patches=tiling["min_patches"], max_patches=tiling["max_patches"], do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225], do_convert_rgb=True)
    video_processor = InternVLVideoProcessor(size={"height": size, "width": size})
    return InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                             video_processor=video_processor, image_seq_length=image_seq_length,
                             chat_template=tokenizer.chat_template)
