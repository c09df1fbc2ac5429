"""HiMTok checkpoint files: the official ``himtok.pth`` and masktok's own folder format.

Official: a torch pickle of the flat state dict (693 tensors), sometimes wrapped as
``{"model": state_dict}``; keys may carry ``module.`` (DDP) and, inside the HiMTok LMM,
``mask_decoder.`` prefixes. It is read with ``torch.load(weights_only=True)`` only and loaded
strictly: every key present, nothing extra, every shape equal.

masktok's format: a folder with ``config.json`` (``{"tokenizer_type": "himtok", "format_version": 1,
"model": <HiMTokConfig.to_dict()>}``) and ``model.safetensors`` (the same key names as the
official layout).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from masktok.tokenizers.himtok.config import HiMTokConfig

TOKENIZER_TYPE = "himtok"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OFFICIAL_NAME = "himtok.pth"
OFFICIAL_PREFIXES = ("module.", "mask_decoder.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a torch checkpoint (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError (bad header, truncated data) or OSError
            raise ValueError(f"{path}: not a valid safetensors file ({type(exc).__name__}: {exc})") from exc
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError for unsafe or corrupt files
        raise ValueError(f"{path} is not a weights-only torch checkpoint: {exc}") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return data


def strip_official_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` wrappers; when ``mask_decoder.`` keys are present (a full LMM state
    dict), keep only those, without the prefix."""
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module."):]
        cleaned[key] = value
    if any(key.startswith("mask_decoder.") for key in cleaned):
        cleaned = {key[len("mask_decoder."):]: value for key, value in cleaned.items()
                   if key.startswith("mask_decoder.")}
    return cleaned


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load with every key and shape checked first; ValueError naming what differs."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
                        for key in set(expected) & set(state_dict)
                        if state_dict[key].shape != expected[key].shape)
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:8]) + (f" … (+{len(items) - 8})" if len(items) > 8 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise ValueError(f"{source} does not match the HiMTok layout ({'; '.join(problems)})")
    model.load_state_dict(state_dict, strict=True)


def save_official(model: nn.Module, path: str | Path, prefix: str = "") -> Path:
    """Write the state dict as the official flat torch pickle (optionally with a key prefix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({prefix + key: value.detach().cpu() for key, value in model.state_dict().items()}, str(path))
    return path


def save_folder(model: nn.Module, config: HiMTokConfig, path: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` into the folder ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"tokenizer_type": TOKENIZER_TYPE, "format_version": FORMAT_VERSION, "model": config.to_dict()}
    (path / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(tensors, str(path / WEIGHTS_NAME), metadata={"format": "pt", "tokenizer_type": TOKENIZER_TYPE})
    return path


def read_folder_config(path: str | Path) -> HiMTokConfig:
    """The :class:`HiMTokConfig` stored in a masktok folder's ``config.json``."""
    config_path = Path(path) / CONFIG_NAME
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read HiMTok config {config_path}: {exc}") from exc
    if meta.get("tokenizer_type") != TOKENIZER_TYPE:
        raise ValueError(f"{config_path} is for tokenizer_type {meta.get('tokenizer_type')!r}, not 'himtok'")
    if meta.get("format_version") != FORMAT_VERSION or not isinstance(meta.get("model"), dict):
        raise ValueError(f"{config_path}: unsupported format_version {meta.get('format_version')!r} "
                         f"or missing 'model' section")
    return HiMTokConfig.from_dict(meta["model"])


def find_official_file(path: str | Path) -> Path | None:
    """``path`` itself if it is a checkpoint file, ``path/himtok.pth`` for a folder holding one
    (and no ``config.json``), else None."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir() and not (path / CONFIG_NAME).is_file() and (path / OFFICIAL_NAME).is_file():
        return path / OFFICIAL_NAME
    return None
