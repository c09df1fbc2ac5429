"""Training checkpoints: everything needed to continue a run exactly.

A checkpoint is one ``torch.save`` dict (read back with ``weights_only=True``):

- ``model``: the (unwrapped) model state dict, EMA codebook buffers included;
- ``optimizer``, ``scheduler``: their state dicts;
- ``step``: optimizer steps done; ``data``: the batch sampler's position;
- ``rng``: Python, NumPy, torch CPU and CUDA generator states;
- ``config``: the training config as a dict (a resumed run checks it matches).

Files are ``step-000123.pt`` in the run's ``checkpoints/`` folder, written atomically (temp file
+ rename). ``max_part_bytes`` splits a file into ``.partNNN`` pieces (for transports with a
per-file size limit); :func:`load_checkpoint` joins them. ``optimizer_dtype="bfloat16"`` stores
the optimizer's floating-point state in bf16 to halve its size; the resumed run then continues
from slightly rounded Adam moments (weights stay float32). The default keeps everything exact.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step-(\d{6,})\.pt$")
_PART = re.compile(r"^step-(\d{6,})\.pt\.part(\d{3})$")


def rng_state() -> dict[str, Any]:
    """The state of every random generator a training step touches."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s output."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_rng_to_plain(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _cast_optimizer_state(state: dict, dtype: torch.dtype | None) -> dict:
    if dtype is None:
        return state
    out = {"param_groups": state["param_groups"], "state": {}}
    for key, entry in state["state"].items():
        out["state"][key] = {name: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point()
                                    and v.ndim > 0 else v) for name, v in entry.items()}
    return out


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step-{step:06d}.pt"


def save_checkpoint(folder: str | Path, step: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, data_state: dict, config: dict, extra: dict | None = None,
                    keep_last: int = 2, max_part_bytes: int | None = None,
                    optimizer_dtype: str = "float32") -> Path:
    """Write ``folder/step-NNNNNN.pt`` (or its parts) and remove all but the ``keep_last`` newest."""
    if optimizer_dtype not in ("float32", "bfloat16"):
        raise ValueError(f"optimizer_dtype must be 'float32' or 'bfloat16', got {optimizer_dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = rng_state()
    rng["python"] = _python_rng_to_plain(rng["python"])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    rng["numpy"] = [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
    payload = {
        "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _cast_optimizer_state(optimizer.state_dict(),
                                           torch.bfloat16 if optimizer_dtype == "bfloat16" else None),
        "scheduler": scheduler.state_dict(),
        "data": data_state,
        "rng": rng,
        "config": config,
        "extra": extra or {},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    blob = buffer.getvalue()
    target = checkpoint_path(folder, step)
    pieces = [blob] if not max_part_bytes else [blob[i:i + max_part_bytes]
                                                 for i in range(0, len(blob), max_part_bytes)]
    names = [target] if not max_part_bytes else [target.with_name(f"{target.name}.part{i:03d}")
                                                 for i in range(len(pieces))]
    for name, piece in zip(names, pieces):
        tmp = name.with_name(name.name + ".tmp")
        tmp.write_bytes(piece)
        os.replace(tmp, name)
    for old_step in list_checkpoint_steps(folder)[:-keep_last] if keep_last > 0 else []:
        for file in _files_of(folder, old_step):
            file.unlink()
    return target


def _files_of(folder: Path, step: int) -> list[Path]:
    whole = checkpoint_path(folder, step)
    parts = sorted(folder.glob(f"{whole.name}.part[0-9][0-9][0-9]"))
    return ([whole] if whole.is_file() else []) + parts


def list_checkpoint_steps(folder: str | Path) -> list[int]:
    """Steps with a checkpoint in ``folder`` (whole files or parts), ascending."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    steps = set()
    for file in folder.iterdir():
        match = _NAME.match(file.name) or _PART.match(file.name)
        if match:
            steps.add(int(match.group(1)))
    return sorted(steps)


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint path in ``folder`` (the ``.pt`` name even when stored as parts)."""
    steps = list_checkpoint_steps(folder)
    return checkpoint_path(folder, steps[-1]) if steps else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (joining ``.partNNN`` pieces); raises ValueError on a missing or corrupt file."""
    path = Path(path)
    if path.is_file():
        blob = path.read_bytes()
    else:
        parts = sorted(path.parent.glob(f"{path.name}.part[0-9][0-9][0-9]"))
        if not parts:
            raise ValueError(f"checkpoint not found: {path} (no file and no .partNNN pieces)")
        numbers = [int(p.name[-3:]) for p in parts]
        if numbers != list(range(len(parts))):
            raise ValueError(f"checkpoint {path}: parts are not numbered 000…{len(parts) - 1:03d}: {numbers}")
        blob = b"".join(p.read_bytes() for p in parts)
    try:
        data = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated pickles raise several exception types
        raise ValueError(f"checkpoint {path} is unreadable or truncated: {exc}") from exc
    for key in ("step", "model", "optimizer", "scheduler", "data", "rng", "config"):
        if key not in data:
            raise ValueError(f"checkpoint {path} lacks '{key}'")
    return data


def restore_rng(rng: dict[str, Any]) -> None:
    """Restore the RNG section of a loaded checkpoint."""
    python = rng["python"]
    numpy_state = rng["numpy"]
    set_rng_state({
        "python": (python[0], tuple(python[1]), python[2]),
        "numpy": (numpy_state[0], numpy_state[1].numpy().astype(np.uint32), *numpy_state[2:]),
        "torch": rng["torch"],
        **({"cuda": rng["cuda"]} if "cuda" in rng else {}),
    })


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state, casting floating-point moments back to their parameters' dtype."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for param in group["params"]:
            entry = optimizer.state.get(param, {})
            for name, value in entry.items():
                if isinstance(value, torch.Tensor) and value.is_floating_point() and value.ndim > 0:
                    entry[name] = value.to(dtype=param.dtype, device=param.device)
