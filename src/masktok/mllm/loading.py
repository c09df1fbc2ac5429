"""Load and save a chat model: the VLM, its processor and its mask tokenizer, as one folder.

Two folder layouts load:

* an **official SAMTok VLM folder** (e.g. ``Qwen3-VL-8B-SAMTok/``): the Hugging Face model and
  processor files plus ``mask_tokenizer_256x2.pth`` (and ``sam2.1_hiera_large.pt``);
* a **masktok folder** written by :func:`save_chat_components`: the model and processor files, a
  ``mask_tokenizer/`` sub-folder in masktok's tokenizer format, and ``masktok_chat.json``.

A folder holding an official HiMTok checkpoint (``himtok.pth``) next to the model loads too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from masktok.mllm.vocabulary import mask_token_ids

MANIFEST_NAME = "masktok_chat.json"
MASK_TOKENIZER_DIR = "mask_tokenizer"
SAMTOK_OFFICIAL_NAME = "mask_tokenizer_256x2.pth"
SAMTOK_OFFICIAL_GLOB = "mask_tokenizer*.pth"
SAM2_OFFICIAL_GLOB = "sam2*.pt"
HIMTOK_OFFICIAL_NAME = "himtok.pth"


def find_mask_tokenizer(path: str | Path) -> tuple[str, Path]:
    """Which mask tokenizer a chat folder holds: (``"masktok"|"samtok"|"himtok"``, its path: the
    masktok sub-folder or the official checkpoint file).

    Raises:
        ValueError: the folder holds none of the known layouts.
    """
    folder = Path(path)
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        sub = folder / info.get("mask_tokenizer", MASK_TOKENIZER_DIR)
        if not sub.is_dir():
            raise ValueError(f"{manifest}: names mask tokenizer folder {sub}, which is missing")
        return "masktok", sub
    if (folder / MASK_TOKENIZER_DIR).is_dir():
        return "masktok", folder / MASK_TOKENIZER_DIR
    official = sorted(folder.glob(SAMTOK_OFFICIAL_GLOB))
    if len(official) > 1:
        raise ValueError(f"{folder}: several SAMTok checkpoints {[p.name for p in official]}")
    if official:
        return "samtok", official[0]
    if (folder / HIMTOK_OFFICIAL_NAME).is_file():
        return "himtok", folder / HIMTOK_OFFICIAL_NAME
    raise ValueError(
        f"{folder}: no mask tokenizer found: expected {MANIFEST_NAME} / {MASK_TOKENIZER_DIR}/ "
        f"(masktok), {SAMTOK_OFFICIAL_NAME} (official SAMTok) or {HIMTOK_OFFICIAL_NAME} (HiMTok)")


def load_mask_tokenizer(path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, **kwargs: Any) -> Any:
    """The mask tokenizer of a chat folder (see :func:`find_mask_tokenizer`).

    ``kwargs`` go to the tokenizer's loader, e.g. ``config=`` for an official checkpoint of a
    model that matches no released preset.
    """
    kind, location = find_mask_tokenizer(path)
    if kind == "masktok":
        from masktok.tokenizers import load_tokenizer

        return load_tokenizer(location, device=device, dtype=dtype, **kwargs)
    if kind == "samtok":
        from masktok.tokenizers.samtok import SAMTok

        # The tokenizer file itself, not the folder: the folder's config.json is the VLM's.
        sam2 = sorted(location.parent.glob(SAM2_OFFICIAL_GLOB))
        if len(sam2) == 1 and "sam2_checkpoint" not in kwargs:
            kwargs["sam2_checkpoint"] = sam2[0]
        return SAMTok.from_pretrained(location, device=device, dtype=dtype, **kwargs)
    from masktok.tokenizers.himtok import HiMTok

    return HiMTok.from_pretrained(location, device=device, dtype=dtype, **kwargs)


def load_vlm(path: str | Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """(model, processor) of a Hugging Face image-text-to-text folder, model in eval mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: not a Hugging Face model folder (no config.json)")
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype or "auto")
    processor = AutoProcessor.from_pretrained(folder)
    return model.to(device).eval(), processor


def load_chat_components(path: str | Path, *, mask_tokenizer: Any = None,
                         device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                         mask_tokenizer_kwargs: dict[str, Any] | None = None,
                         ) -> tuple[Any, Any, Any]:
    """(model, processor, mask tokenizer) of a chat folder; ``mask_tokenizer`` overrides the
    folder's own, ``mask_tokenizer_kwargs`` go to its loader. ``dtype`` is the VLM's (default:
    as saved); the mask tokenizer picks its own (bf16 on CUDA, fp32 on CPU).

    Raises:
        ValueError: unknown layout, or a processor whose tokenizer lacks the mask vocabulary.
    """
    model, processor = load_vlm(path, device=device, dtype=dtype)
    if mask_tokenizer is None:
        mask_tokenizer = load_mask_tokenizer(path, device=device, **(mask_tokenizer_kwargs or {}))
    mask_token_ids(processor, mask_tokenizer.vocabulary)
    return model, processor, mask_tokenizer


def save_mask_tokenizer(path: str | Path, mask_tokenizer: Any) -> None:
    """Write the mask tokenizer (``mask_tokenizer/``) and the ``masktok_chat.json`` manifest
    into the chat folder ``path``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    mask_tokenizer.save_pretrained(folder / MASK_TOKENIZER_DIR)
    manifest = {"format": "masktok-chat", "mask_tokenizer": MASK_TOKENIZER_DIR,
                "vocabulary": mask_tokenizer.vocabulary.name,
                "mask_tokens": len(mask_tokenizer.vocabulary.tokens())}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def save_chat_components(path: str | Path, model: Any, processor: Any, mask_tokenizer: Any) -> None:
    """Write model + processor (Hugging Face files), the mask tokenizer (``mask_tokenizer/``) and
    the ``masktok_chat.json`` manifest into ``path``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_mask_tokenizer(folder, mask_tokenizer)
