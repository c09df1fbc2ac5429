"""Load and save a chat model: the VLM, its processor and its mask tokenizer, as one folder.

One call for every layout (:func:`load_chat_components`, behind ``MaskChat.from_pretrained`` and
``masktok chat FOLDER``):

* an **official SAMTok VLM folder** (``Qwen3-VL-8B-SAMTok/``, ``Qwen2.5-VL-7B-SAMTok/``,
  ``PLM-1B-SAMTok/``): the Hugging Face model and processor files plus
  ``mask_tokenizer_256x2.pth`` (and ``sam2.1_hiera_large.pt``);
* the **official InternVL2.5-HiMTok folder**: remote-code InternVL whose HiMTok lives inside the
  weight shards; converted in memory to transformers' native InternVL classes
  (:mod:`masktok.mllm.internvl`; ``masktok convert internvl-himtok`` writes it once);
* a **masktok folder** written by :func:`save_chat_components` (also what the SFT / GRPO recipes
  export): model and processor files, ``mask_tokenizer/`` in masktok's format and
  ``masktok_chat.json`` (which may carry chat settings, e.g. the official soft decoding);
* any HF folder with ``himtok.pth`` beside the model.

Any VLM pairs with any tokenizer through ``mask_tokenizer=`` (an object or a path; the CLI's
``--tokenizer``), as long as the VLM's tokenizer holds that tokenizer's mask words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from masktok.json_files import read_json_object
from masktok.mllm.vocabulary import mask_token_ids, text_tokenizer
from masktok.tokenizers.registry import CHAT_MANIFEST, CHAT_TOKENIZER_DIR

MANIFEST_NAME = CHAT_MANIFEST
MASK_TOKENIZER_DIR = CHAT_TOKENIZER_DIR
MASKTOK = "masktok"  # the kind of a masktok tokenizer folder (its config.json names the family)
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
PAIR_HINT = "pass mask_tokenizer=PATH (CLI: --tokenizer PATH)"


@dataclass(frozen=True)
class TokenizerLocation:
    """Where a chat folder's mask tokenizer is: ``kind`` is ``"masktok"`` (a masktok tokenizer
    folder) or the registered family of an official tokenizer (``"samtok"``: a
    ``mask_tokenizer*.pth``; ``"himtok"``: a ``himtok.pth``, or ``path`` is the folder itself when
    its weight shards hold HiMTok, as in official InternVL2.5-HiMTok)."""

    kind: str
    path: Path


def _manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST_NAME
    return read_json_object(path) if path.is_file() else None


def tokenizer_candidates(path: str | Path) -> list[TokenizerLocation]:
    """Every mask tokenizer a chat folder holds (several: the caller must choose): a masktok
    tokenizer folder, and every official tokenizer a registered family recognises."""
    from masktok.tokenizers.registry import official_tokenizers

    folder = Path(path)
    found: list[TokenizerLocation] = []
    manifest = _manifest(folder)
    if manifest is not None:
        sub = folder / manifest.get("mask_tokenizer", MASK_TOKENIZER_DIR)
        if not sub.is_dir():
            raise ValueError(f"{folder / MANIFEST_NAME}: names mask tokenizer folder {sub.name}/, which is missing; "
                             f"restore it or {PAIR_HINT}")
        found.append(TokenizerLocation(MASKTOK, sub))
    elif (folder / MASK_TOKENIZER_DIR).is_dir():
        found.append(TokenizerLocation(MASKTOK, folder / MASK_TOKENIZER_DIR))
    found += [TokenizerLocation(family, location) for family, location in official_tokenizers(folder)]
    return found


def find_mask_tokenizer(path: str | Path) -> tuple[str, Path]:
    """Which mask tokenizer a chat folder holds: (kind, path) of :class:`TokenizerLocation`.

    Raises:
        ValueError: the folder holds none, or several (naming them and what to pass).
    """
    from masktok.tokenizers.registry import describe_location

    folder = Path(path)
    found = tokenizer_candidates(folder)
    if len(found) > 1:
        names = ", ".join(f"{describe_location(c.path)} ({c.kind})" for c in found)
        raise ValueError(f"{folder}: holds {len(found)} candidate mask tokenizers: {names}; {PAIR_HINT} to "
                         "choose one")
    if not found:
        raise ValueError(
            f"{folder}: no mask tokenizer found: expected {MANIFEST_NAME} + {MASK_TOKENIZER_DIR}/ (masktok), "
            f"or an official tokenizer (mask_tokenizer_256x2.pth: SAMTok, himtok.pth: HiMTok); {PAIR_HINT} to "
            "pair this VLM with a tokenizer")
    return found[0].kind, found[0].path


def load_mask_tokenizer(path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, **kwargs: Any) -> Any:
    """The mask tokenizer of a chat folder (see :func:`find_mask_tokenizer`), opened by
    :func:`~masktok.tokenizers.load_tokenizer`: an official one from the chat folder itself (whose
    ``config.json`` is the VLM's), with the files its family keeps beside it (SAMTok's SAM 2
    file, a ``<family>_config.json`` for sizes other than the published ones).

    ``kwargs`` go to the tokenizer's loader, e.g. ``config=`` for an official checkpoint of a
    model that matches no released preset.
    """
    from masktok.tokenizers import load_tokenizer

    kind, location = find_mask_tokenizer(path)
    target = location if kind == MASKTOK or location.is_dir() else location.parent
    return load_tokenizer(target, device=device, dtype=dtype, **kwargs)


def open_mask_tokenizer(source: Any, *, device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """A tokenizer object as is; a path: a chat folder's tokenizer or any tokenizer file/folder."""
    if not isinstance(source, (str, Path)):
        return source
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer: no file or folder at {path}")
    if path.is_dir() and tokenizer_candidates(path):
        return load_mask_tokenizer(path, device=device, **kwargs)
    from masktok.tokenizers import load_tokenizer

    return load_tokenizer(path, device=device, **kwargs)


def load_vlm(path: str | Path, *, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, **model_kwargs: Any) -> tuple[Any, Any]:
    """(model, processor) of a Hugging Face image-text-to-text folder, model in eval mode.

    Official InternVL-HiMTok folders are converted in memory (see :mod:`masktok.mllm.internvl`).

    Raises:
        ValueError: not a model folder, processor files missing, or a model that does not load
            (the message names the folder and the cause).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from masktok.mllm.internvl import is_official_internvl, load_official_internvl

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: not a Hugging Face model folder (no config.json)")
    if is_official_internvl(folder):
        loaded = load_official_internvl(folder, device=device, dtype=dtype)
        return loaded.model, loaded.processor
    present = [n for n in PROCESSOR_FILES + TOKENIZER_FILES if (folder / n).is_file()]
    if not any(n in present for n in TOKENIZER_FILES):
        raise ValueError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); copy the processor "
                         "and tokenizer files of the base model into the folder")
    from safetensors import SafetensorError

    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype or "auto", **model_kwargs)
    except SafetensorError as error:
        raise ValueError(f"{folder}: a weight file cannot be read (truncated or corrupted?): {error}") from error
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{folder}: the model does not load: {error}") from error
    try:
        processor = AutoProcessor.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{folder}: the processor does not load ({error}); the folder needs the base "
                         f"model's processor files ({', '.join(PROCESSOR_FILES)} and the tokenizer files)") from error
    return model.to(device).eval(), processor


def check_pairing(processor: Any, mask_tokenizer: Any) -> dict[str, int]:
    """The mask token ids of ``mask_tokenizer``'s words in ``processor``'s tokenizer.

    Raises:
        ValueError: the VLM was trained with the other family's words (named), or lacks them.
    """
    from masktok.words.vocabulary import OFFICIAL_VOCABULARIES

    vocab = mask_tokenizer.vocabulary
    try:
        return mask_token_ids(processor, vocab)
    except ValueError as error:
        known = text_tokenizer(processor).get_vocab()
        held = [v.name for v in OFFICIAL_VOCABULARIES.values()
                if v.start_token in known and v.code_token(0, 0) in known]
        if held and vocab.name not in held:
            raise ValueError(
                f"mask tokenizer: a {vocab.name} tokenizer ({type(mask_tokenizer).__name__}) cannot pair with this "
                f"VLM, whose tokenizer holds the {held[0]} mask words; {PAIR_HINT} with a {held[0]} "
                "tokenizer") from error
        raise


def chat_settings(path: str | Path) -> dict[str, Any]:
    """Chat settings a masktok folder's manifest records; for an official InternVL-HiMTok folder
    the official decoding (:data:`masktok.mllm.internvl.convert.OFFICIAL_CHAT_SETTINGS`)."""
    from masktok.mllm.internvl import is_official_internvl

    if is_official_internvl(path):
        from masktok.mllm.internvl.convert import OFFICIAL_CHAT_SETTINGS

        return dict(OFFICIAL_CHAT_SETTINGS)
    manifest = _manifest(Path(path)) or {}
    settings = manifest.get("settings", {})
    return dict(settings) if isinstance(settings, dict) else {}


def load_chat_components(path: str | Path, *, mask_tokenizer: Any = None,
                         device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                         mask_tokenizer_kwargs: dict[str, Any] | None = None,
                         ) -> tuple[Any, Any, Any]:
    """(model, processor, mask tokenizer) of a chat folder; ``mask_tokenizer`` (an object or a
    path) overrides the folder's own, ``mask_tokenizer_kwargs`` go to its loader. ``dtype`` is the
    VLM's (default: as saved); the mask tokenizer picks its own (bf16 on CUDA, fp32 on CPU).

    Raises:
        ValueError: unknown layout (naming what is missing and what to pass), several candidate
            tokenizers, or a tokenizer whose mask words the VLM does not hold.
    """
    from masktok.mllm.internvl import is_official_internvl, load_official_internvl

    folder = Path(path)
    kwargs = dict(mask_tokenizer_kwargs or {})
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: not a Hugging Face model folder (no config.json)")
    if mask_tokenizer is None:
        find_mask_tokenizer(folder)  # fail on the tokenizer before loading a large VLM
    if is_official_internvl(folder):
        from masktok.tokenizers.himtok import HiMTok

        config = kwargs.get("config") or HiMTok.read_sidecar_config(folder)
        loaded = load_official_internvl(folder, himtok_config=config, device=device, dtype=dtype)
        model, processor = loaded.model, loaded.processor
        tokenizer = loaded.mask_tokenizer if mask_tokenizer is None else open_mask_tokenizer(
            mask_tokenizer, device=device, **kwargs)
    else:
        model, processor = load_vlm(folder, device=device, dtype=dtype)
        if mask_tokenizer is None:
            tokenizer = load_mask_tokenizer(folder, device=device, **kwargs)
        else:
            tokenizer = open_mask_tokenizer(mask_tokenizer, device=device, **kwargs)
    check_pairing(processor, tokenizer)
    return model, processor, tokenizer


def save_chat_components(path: str | Path, model: Any, processor: Any, mask_tokenizer: Any, *,
                         settings: dict[str, Any] | None = None) -> None:
    """Write model + processor (Hugging Face files), the mask tokenizer (``mask_tokenizer/``) and
    the ``masktok_chat.json`` manifest (with ``settings``, the folder's chat defaults) into ``path``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_mask_tokenizer(folder, mask_tokenizer, settings=settings)


def write_mask_tokenizer(folder: str | Path, mask_tokenizer: Any, *,
                         settings: dict[str, Any] | None = None) -> None:
    """The mask tokenizer (``mask_tokenizer/``, masktok's format) and the manifest of a chat folder."""
    folder = Path(folder)
    mask_tokenizer.save_pretrained(folder / MASK_TOKENIZER_DIR)
    manifest: dict[str, Any] = {"format": "masktok-chat", "mask_tokenizer": MASK_TOKENIZER_DIR,
                                "vocabulary": mask_tokenizer.vocabulary.name,
                                "mask_tokens": len(mask_tokenizer.vocabulary.tokens())}
    if settings:
        manifest["settings"] = dict(settings)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
