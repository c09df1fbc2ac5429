"""``load_tokenizer(path)``: open any mask tokenizer from a file or folder.

The family is read from the folder's ``config.json`` field ``"tokenizer_type"`` (masktok's own
format), or recognised from an official file name (SAMTok: ``mask_tokenizer*.pth``, alone or in a
VLM folder; HiMTok: ``himtok.pth``, alone or in a folder). Each family's loader is imported only
when needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"


def tokenizer_type(path: str | Path) -> str:
    """The tokenizer family stored at ``path`` ("samtok", "himtok", …); ``ValueError`` if unknown."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer at {path}")
    folder = path if path.is_dir() else path.parent
    config = folder / CONFIG_FILE
    if config.is_file() and (path.is_dir() or path.name == CONFIG_FILE or path.suffix == ".safetensors"):
        try:
            data = json.loads(config.read_text())
        except ValueError as err:
            raise ValueError(f"{config} is not valid JSON: {err}") from err
        kind = data.get("tokenizer_type") if isinstance(data, dict) else None
        if isinstance(kind, str):
            return kind
        official = official_vlm_tokenizer(folder, data) if path.is_dir() else None
        if official is None:
            raise ValueError(f"{config} has no \"tokenizer_type\" field naming the tokenizer family, and the "
                             "folder holds no official tokenizer file (mask_tokenizer*.pth, himtok.pth)")
        return official
    if path.is_dir() and any(path.glob("mask_tokenizer*.pth")):
        return "samtok"
    if path.is_file() and path.name.startswith("mask_tokenizer") and path.suffix == ".pth":
        return "samtok"
    if (path.is_dir() and (path / "himtok.pth").is_file()) or (path.is_file() and path.name == "himtok.pth"):
        return "himtok"
    raise ValueError(f"cannot tell which mask tokenizer {path} holds: expected a folder with {CONFIG_FILE} "
                     "(field \"tokenizer_type\") or an official checkpoint such as mask_tokenizer_256x2.pth "
                     "or himtok.pth")


def official_vlm_tokenizer(folder: Path, config: Any) -> str | None:
    """The family of the official tokenizer inside an official VLM folder, whose ``config.json``
    is the VLM's: SAMTok folders hold ``mask_tokenizer*.pth``, HiMTok ones ``himtok.pth`` or (the
    published InternVL2.5-HiMTok, ``model_type: internvl_chat``) HiMTok inside the weight shards.

    Raises:
        ValueError: the folder holds several candidate tokenizers.
    """
    found = [p.name for p in sorted(folder.glob("mask_tokenizer*.pth"))]
    if (folder / "himtok.pth").is_file():
        found.append("himtok.pth")
    lmm = isinstance(config, dict) and config.get("model_type") == "internvl_chat"
    if lmm:
        found.append("mask_decoder.* in the weights")
    if len(found) > 1:
        raise ValueError(f"{folder}: holds {len(found)} candidate mask tokenizers ({found}); pass the file itself")
    if not found:
        return None
    return "samtok" if found[0].startswith("mask_tokenizer") else "himtok"


CHAT_MANIFEST = "masktok_chat.json"
CHAT_TOKENIZER_DIR = "mask_tokenizer"


def chat_folder_tokenizer(path: str | Path) -> Path:
    """``path/mask_tokenizer`` for a chat folder masktok wrote (``masktok_chat.json`` or a
    ``mask_tokenizer/`` beside a VLM), so such a folder (e.g. a recipe's ``final/``) opens as a
    tokenizer path; any other path unchanged."""
    path = Path(path)
    sub = path / CHAT_TOKENIZER_DIR
    if path.is_dir() and sub.is_dir():
        manifest = path / CHAT_MANIFEST
        if manifest.is_file():
            try:
                name = json.loads(manifest.read_text()).get("mask_tokenizer", CHAT_TOKENIZER_DIR)
            except (ValueError, AttributeError) as err:
                raise ValueError(f"{manifest} is not a valid masktok chat manifest: {err}") from err
            return path / name
        return sub
    return path


def load_tokenizer(path: str | Path, device: Any = "cpu", dtype: Any = None, **kwargs: Any):
    """The :class:`~masktok.tokenizers.base.MaskTokenizer` stored at ``path`` (a tokenizer file or
    folder, an official VLM folder, or a chat folder masktok wrote)."""
    path = chat_folder_tokenizer(path)
    kind = tokenizer_type(path)
    if kind == "samtok":
        from masktok.tokenizers.samtok import SAMTok

        return SAMTok.from_pretrained(path, device=device, dtype=dtype, **kwargs)
    if kind == "himtok":
        from masktok.tokenizers.himtok import HiMTok

        return HiMTok.from_pretrained(path, device=device, dtype=dtype, **kwargs)
    raise ValueError(f"{path}: unknown tokenizer_type {kind!r}")
