"""The official InternVL2.5-HiMTok folder → transformers' native InternVL model, processor and
masktok's HiMTok, in memory or written as a masktok chat folder.

    masktok convert internvl-himtok InternVL2_5-HiMTok-8B/ internvl-himtok-hf/

The official folder (remote code, refused by transformers without ``trust_remote_code``) holds
``config.json`` (``model_type: internvl_chat``), the weights as ``model.safetensors`` or shards
listed in ``model.safetensors.index.json``, ``tokenizer.model`` + ``tokenizer_config.json``, and
HiMTok's weights *inside* the shards (``mask_decoder.*``). Every tensor is placed by
:mod:`.keys`; a tensor without a place, a missing or mis-shaped one, a missing or truncated
shard: each refuses the whole conversion with the names involved. Nothing loads partially.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from masktok.json_files import read_json_object
from masktok.mllm.internvl.config import OFFICIAL_MODEL_TYPE, native_config, system_message, tiling
from masktok.mllm.internvl.keys import AttentionShape, MappedState, map_official_tensor
from masktok.mllm.internvl.tokenizer import build_processor, chat_template, convert_tokenizer

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
OFFICIAL_REFINER_FILE = "sam.pth"  # the fine-tuned SAM the HiMTok authors publish beside the model
# The official LMM decodes mask words softly from its logits (``get_train_tt_probs`` +
# ``decode_prob``): the chat default of a converted folder. That the mixture is not renormalised
# is the official HiMTok config's own default (``soft_renormalize=False``).
OFFICIAL_CHAT_SETTINGS = {"soft_decoding": True}


class ConversionError(ValueError):
    """The official checkpoint cannot be converted exactly; the message lists what is wrong."""


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``ConversionError`` naming the file otherwise."""
    try:
        return read_json_object(path, error=ConversionError)
    except FileNotFoundError as error:
        raise ConversionError(str(error)) from None


def is_official_internvl(folder: str | Path) -> bool:
    """Whether ``folder`` is an official (remote-code) InternVL chat folder."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("model_type") == OFFICIAL_MODEL_TYPE
    except ValueError:
        return False


def weight_files(folder: Path) -> dict[Path, list[str] | None]:
    """Shard → the keys the index promises in it (None: a single file, keys not listed).

    Raises:
        ConversionError: no weights, or a shard the index names is missing.
    """
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{index}: no weight_map")
        shards: dict[Path, list[str]] = {}
        for key, name in weight_map.items():
            shards.setdefault(folder / name, []).append(key)
        missing = sorted(p.name for p in shards if not p.is_file())
        if missing:
            raise ConversionError(f"{folder}: {INDEX_FILE} names shard(s) that are missing: {missing}")
        return dict(shards)
    if (folder / SINGLE_FILE).is_file():
        return {folder / SINGLE_FILE: None}
    found = sorted(p.name for p in folder.glob("*.bin"))
    hint = f" (found {found}: PyTorch pickles are not read; save the model as safetensors)" if found else ""
    raise ConversionError(f"{folder}: no {INDEX_FILE} or {SINGLE_FILE}{hint}")


def read_mapped_state(folder: Path, attention: AttentionShape) -> MappedState:
    """Every tensor of every shard, placed (see :func:`masktok.mllm.internvl.keys.map_official_tensor`)."""
    from safetensors import safe_open

    out = MappedState({}, {}, [], [])
    for shard, promised in weight_files(folder).items():
        try:
            with safe_open(str(shard), framework="pt") as handle:
                keys = list(handle.keys())
                absent = sorted(set(promised or []) - set(keys))
                if absent:
                    raise ConversionError(f"{shard.name}: the index lists {len(absent)} tensor(s) this shard lacks "
                                          f"(first: {absent[:5]}); is the download complete?")
                for key in keys:
                    map_official_tensor(key, handle.get_tensor(key), attention, out)
        except ConversionError:
            raise
        except Exception as error:  # safetensors raises its own errors for truncated files
            raise ConversionError(f"{shard}: cannot read the shard (truncated or corrupted?): "
                                  f"{type(error).__name__}: {error}") from error
    return out


def check_native_state(model: torch.nn.Module, mapped: MappedState, source: Path) -> None:
    """Refuse unless the mapped tensors fill ``model`` exactly (names and shapes)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(mapped.native))
    unexpected = sorted(set(mapped.native) - set(expected))
    mismatched = sorted(f"{k}: file {tuple(mapped.native[k].shape)} vs model {expected[k]}"
                        for k in set(expected) & set(mapped.native) if tuple(mapped.native[k].shape) != expected[k])
    problems = []
    for title, items in (("tensor(s) with no place in the native model", mapped.unplaced),
                         ("native tensor(s) missing", missing), ("converted tensor(s) unexpected", unexpected),
                         ("mis-shaped tensor(s)", mismatched)):
        if items:
            problems.append(f"{len(items)} {title}: {', '.join(items[:10])}"
                            + (f" … (+{len(items) - 10})" if len(items) > 10 else ""))
    if not mapped.himtok:
        problems.append("no HiMTok tensors (mask_decoder.*): not an InternVL-HiMTok checkpoint")
    if problems:
        raise ConversionError(f"{source}: cannot convert exactly:\n  " + "\n  ".join(problems))


@dataclass
class OfficialInternVL:
    """A converted official InternVL-HiMTok folder: the native model, its processor, HiMTok, and
    the chat settings that reproduce the official decoding."""

    model: Any
    processor: Any
    mask_tokenizer: Any
    chat_settings: dict[str, Any]


def load_himtok(state: dict[str, torch.Tensor], source: str, config: Any = None,
                device: str | torch.device = "cpu") -> Any:
    """HiMTok from the ``mask_decoder.*`` tensors (prefix removed), loaded as an official file is
    (strict but for the named benign differences)."""
    from masktok.tokenizers.himtok import HiMTok

    return HiMTok.from_official_state({k: v.float() for k, v in state.items()}, f"{source} (mask_decoder.*)",
                                      device=device, config=config)


def load_official_internvl(folder: str | Path, *, himtok_config: Any = None,
                           device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> OfficialInternVL:
    """Convert an official InternVL-HiMTok folder in memory.

    Args:
        himtok_config: HiMTok's config (default: the official one, 32 codes of 1024).
        dtype: the VLM's dtype (default: as stored).

    Raises:
        ConversionError, TokenizerConversionError, ConfigError: see the module docstring.
    """
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    from masktok.words import himtok_vocabulary

    folder = Path(folder)
    official = read_json(folder / "config.json")
    if official.get("model_type") != OFFICIAL_MODEL_TYPE:
        raise ConversionError(f"{folder}/config.json: model_type {official.get('model_type')!r}, "
                              f"not an official InternVL chat folder ({OFFICIAL_MODEL_TYPE!r})")
    from masktok.tokenizers.himtok import HiMTok, official_config

    himtok_config = himtok_config or HiMTok.read_sidecar_config(folder) or official_config()
    vocab = himtok_vocabulary(codebook_size=himtok_config.codebook_size, max_codes=himtok_config.max_codes)
    tokenizer = convert_tokenizer(folder, vocab, chat_template=chat_template(system_message(official)))
    llm = official.get("llm_config") or {}
    heads = int(llm.get("num_attention_heads", 0) or 0)
    if not heads or "hidden_size" not in llm:
        raise ConversionError(f"{folder}/config.json: llm_config lacks hidden_size / num_attention_heads")
    attention = AttentionShape(heads, int(llm.get("num_key_value_heads", heads)), int(llm["hidden_size"]) // heads)
    mapped = read_mapped_state(folder, attention)
    embed = mapped.native.get("model.language_model.embed_tokens.weight")
    if embed is None:
        raise ConversionError(f"{folder}: no language_model.model.tok_embeddings.weight in the weights")
    if len(tokenizer) > embed.shape[0]:
        raise ConversionError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the embedding only "
                              f"{embed.shape[0]} rows")
    config = native_config(official, vocab_size=embed.shape[0],
                           image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    check_native_state(model, mapped, folder)  # names and shapes, before anything loads
    target = dtype or embed.dtype
    model = InternVLForConditionalGeneration.from_pretrained(
        None, config=config, state_dict={k: v.to(target) for k, v in mapped.native.items()}, dtype=target)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(eos_token_id=eos if eos != tokenizer.unk_token_id else tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False)
    himtok = load_himtok(mapped.himtok, str(folder), himtok_config, device=device)
    processor = build_processor(tokenizer, tiling=tiling(official), image_seq_length=config.image_seq_length)
    return OfficialInternVL(model.to(device).eval(), processor, himtok, dict(OFFICIAL_CHAT_SETTINGS))


def convert_internvl_himtok(source: str | Path, target: str | Path, *, himtok_config: Any = None,
                            dtype: torch.dtype | None = None) -> Path:
    """Write the converted folder: native model + processor files, ``mask_tokenizer/`` (HiMTok in
    masktok's format), ``masktok_chat.json`` (with the official decoding settings) and, when the
    source has one, the fine-tuned SAM (``sam.pth``) for refinement."""
    import shutil

    from masktok.mllm.loading import save_chat_components

    source, target = Path(source), Path(target)
    if target.exists() and any(target.iterdir()):
        raise ConversionError(f"{target}: the target folder exists and is not empty")
    loaded = load_official_internvl(source, himtok_config=himtok_config, dtype=dtype)
    save_chat_components(target, loaded.model, loaded.processor, loaded.mask_tokenizer,
                         settings=loaded.chat_settings)
    if (source / OFFICIAL_REFINER_FILE).is_file():
        shutil.copy2(source / OFFICIAL_REFINER_FILE, target / OFFICIAL_REFINER_FILE)
    return target
