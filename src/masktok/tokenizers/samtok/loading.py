"""Find and load SAMTok weights from any supported location into a :class:`SAMTokModel`.

``path`` may be:

- a masktok folder (``config.json`` + ``model.safetensors``) or either file in it;
- an official tokenizer file (``mask_tokenizer_256x2.pth``), alone or with a Meta
  ``sam2.1_hiera_*.pt`` supplying SAM 2 tensors it lacks (``sam2_checkpoint=``);
- an official VLM folder (e.g. ``Qwen3-VL-8B-SAMTok/``) holding both files.

Models are built on the meta device and the loaded tensors assigned, so nothing is initialised
twice (Hiera-L loads in seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from masktok.json_files import read_json_object
from masktok.tokenizers.samtok.checkpoint import (
    TOKENIZER_SAM2_PREFIX,
    CheckpointError,
    OfficialLayout,
    check_model_state,
    infer_official_config,
    merge_sam2_fallback,
    read_safetensors_state,
    read_torch_state,
)
from masktok.tokenizers.samtok.config import SAMTokConfig
from masktok.tokenizers.samtok.model import SAMTokModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OFFICIAL_TOKENIZER_GLOB = "mask_tokenizer*.pth"
META_SAM2_GLOB = "sam2*.pt"


def load_model(path: str | Path, *, config: SAMTokConfig | None = None,
               sam2_checkpoint: str | Path | None = None) -> SAMTokModel:
    """Load a :class:`SAMTokModel` (float32, CPU, eval mode) from ``path`` (module docstring).

    ``config`` overrides the config read from or inferred for the checkpoint (needed for official
    files of a non-preset model)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no SAMTok checkpoint at {path}")
    if path.is_dir():
        if is_masktok_folder(path):
            return load_masktok(path, config=config)
        tokenizers = sorted(path.glob(OFFICIAL_TOKENIZER_GLOB))
        if len(tokenizers) != 1:
            found = [p.name for p in tokenizers] or "none"
            raise CheckpointError(f"{path}: expected {CONFIG_FILE} + {WEIGHTS_FILE}, or exactly one "
                                  f"{OFFICIAL_TOKENIZER_GLOB} file (found {found})")
        if sam2_checkpoint is None:
            candidates = sorted(path.glob(META_SAM2_GLOB))
            if len(candidates) > 1:
                raise CheckpointError(f"{path} holds several SAM 2 checkpoints {[p.name for p in candidates]}; "
                                      "pass sam2_checkpoint= to choose one")
            sam2_checkpoint = candidates[0] if candidates else None
        return load_official(tokenizers[0], sam2_checkpoint=sam2_checkpoint, config=config)
    if path.name == CONFIG_FILE or path.suffix == ".safetensors":
        return load_masktok(path.parent, config=config)
    return load_official(path, sam2_checkpoint=sam2_checkpoint, config=config)


def is_masktok_folder(folder: Path) -> bool:
    """A masktok SAMTok folder: ``model.safetensors`` beside a ``config.json`` that names the
    SAMTok family. An official VLM folder also holds a ``config.json`` (the VLM's) and may hold
    one ``model.safetensors`` (a small VLM): that is not a tokenizer folder."""
    config, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not (config.is_file() and weights.is_file()):
        return False
    try:
        data = json.loads(config.read_text())
    except ValueError:
        return True  # let load_masktok report the broken JSON
    return not isinstance(data, dict) or "tokenizer_type" in data


def load_masktok(folder: Path, *, config: SAMTokConfig | None = None) -> SAMTokModel:
    """masktok's own format: ``config.json`` + ``model.safetensors`` with the model's key names."""
    if config is None:
        config = SAMTokConfig.from_dict(read_json_object(folder / CONFIG_FILE, error=CheckpointError))
    weights = folder / WEIGHTS_FILE
    state = read_safetensors_state(weights)
    with torch.device("meta"):
        model = SAMTokModel(config)
    check_model_state(state, model, str(weights))
    return _assign(model, state)


def load_official(tokenizer_path: str | Path, *, sam2_checkpoint: str | Path | None = None,
                  config: SAMTokConfig | None = None) -> SAMTokModel:
    """Official tokenizer file (+ optional Meta SAM 2 file for the tensors it lacks)."""
    tokenizer_path = Path(tokenizer_path)
    state = read_torch_state(tokenizer_path)
    source = str(tokenizer_path)
    if not any(k.startswith((TOKENIZER_SAM2_PREFIX, "quantizer.")) for k in state):
        raise CheckpointError(f"{tokenizer_path} holds no SAMTok tensors (nothing under {TOKENIZER_SAM2_PREFIX!r} "
                              "or 'quantizer.'): a Meta sam2.1_hiera_*.pt file only supplies the SAM 2 part; "
                              "pass the mask_tokenizer file with sam2_checkpoint= pointing at it")
    if sam2_checkpoint is not None:
        state = merge_sam2_fallback(state, read_torch_state(sam2_checkpoint))
        source = f"{tokenizer_path} + {sam2_checkpoint}"
    if config is None:
        config = infer_official_config(state, source)
    with torch.device("meta"):
        model = SAMTokModel(config)
    return _assign(model, OfficialLayout(model).to_model_state(state, source))


def _assign(model: SAMTokModel, state: dict[str, torch.Tensor]) -> SAMTokModel:
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise CheckpointError(f"tensors not provided by the checkpoint: {leftover[:10]}")
    return model.eval()
