"""HiMTok checkpoint files: the official ``himtok.pth`` and masktok's own folder format.

Official: a torch pickle of the flat state dict (693 tensors), sometimes wrapped as
``{"model": state_dict}``; keys may carry ``module.`` (DDP) and, inside the HiMTok LMM,
``mask_decoder.`` prefixes (the published InternVL2.5-HiMTok keeps them in its safetensors
shards, read by :func:`read_lmm_shards`). It is read with ``torch.load(weights_only=True)`` only.
The official loader is non-strict (``strict=False``); masktok accepts exactly the differences in
:data:`BENIGN_OFFICIAL_DIFFERENCES` and refuses every other missing, extra or mis-shaped key.

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


# Keys an official file may lack without changing the model: recomputed from the sizes, and checked
# against the recomputed value when present. encoder.attn_mask: the TiTok encoder's causal mask
# (image tokens do not see latents, latents see latents ≤ themselves), a bool buffer registered by
# himt/modules/blocks.py that checkpoints written before it existed, or without buffers, lack.
BENIGN_OFFICIAL_DIFFERENCES = {"encoder.attn_mask": "causal attention mask, a function of the token counts"}


def recomputed_buffers(config: HiMTokConfig) -> dict[str, torch.Tensor]:
    """The values of :data:`BENIGN_OFFICIAL_DIFFERENCES` for ``config``."""
    from masktok.tokenizers.himtok.encoder import causal_latent_attention_mask

    grid = config.image_size // config.patch_size
    return {"encoder.attn_mask": causal_latent_attention_mask(grid * grid + 1, config.num_latent_tokens)}


def fill_benign_official_keys(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str
                              ) -> dict[str, torch.Tensor]:
    """``state_dict`` with the :data:`BENIGN_OFFICIAL_DIFFERENCES` the file lacks recomputed from
    ``model.config``; present ones must equal the recomputed value."""
    keys = set(model.state_dict())
    computed = recomputed_buffers(model.config)
    out = dict(state_dict)
    for key in BENIGN_OFFICIAL_DIFFERENCES:
        if key not in keys:
            continue
        expected = computed[key]
        if key not in out:
            out[key] = expected
        elif out[key].shape == expected.shape and not torch.equal(out[key].to(expected.dtype).cpu(), expected):
            raise ValueError(f"{source}: {key} differs from the one this configuration implies "
                             f"({BENIGN_OFFICIAL_DIFFERENCES[key]}): another architecture?")
    return out


def read_lmm_shards(folder: str | Path) -> dict[str, torch.Tensor]:
    """HiMTok's tensors (``mask_decoder.*``, prefix removed) from an HF folder's safetensors
    weights (``model.safetensors.index.json`` shards or ``model.safetensors``).

    Raises:
        ValueError: no weights, a missing or unreadable (truncated) shard, or no ``mask_decoder.*``.
    """
    from safetensors import safe_open

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{index}: no readable weight_map ({exc})") from exc
        shards = [folder / name for name in names]
    else:
        shards = [folder / "model.safetensors"]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise ValueError(f"{folder}: weight file(s) missing: {missing}")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                for key in handle.keys():
                    if key.startswith("mask_decoder."):
                        state[key[len("mask_decoder."):]] = handle.get_tensor(key)
        except Exception as exc:  # safetensors' own errors for truncated or foreign files
            raise ValueError(f"{shard}: cannot read the shard (truncated or corrupted?): "
                             f"{type(exc).__name__}: {exc}") from exc
    if not state:
        raise ValueError(f"{folder}: no HiMTok tensors (mask_decoder.*) in its weights")
    return state


def is_lmm_folder(path: str | Path) -> bool:
    """A folder whose HF weights (not a ``himtok.pth``) hold HiMTok: the InternVL-HiMTok layout."""
    path = Path(path)
    config = path / CONFIG_NAME
    if not path.is_dir() or not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "internvl_chat"
    except ValueError:
        return False


def is_vlm_folder(path: str | Path) -> bool:
    """A folder whose ``config.json`` is a model's (no ``tokenizer_type``) with ``himtok.pth`` beside it."""
    path = Path(path)
    if not (path / OFFICIAL_NAME).is_file() or not (path / CONFIG_NAME).is_file():
        return False
    try:
        data = json.loads((path / CONFIG_NAME).read_text())
    except ValueError:
        return False
    return isinstance(data, dict) and "tokenizer_type" not in data


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
