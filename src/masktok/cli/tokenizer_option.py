"""The ``--tokenizer`` / ``--device`` / ``--dtype`` options every command reads the same way.

``--tokenizer default`` (the default wherever a tokenizer is optional) is the tokenizer shipped
inside the package; anything else is a tokenizer folder or file opened by
:func:`masktok.tokenizers.load_tokenizer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

DEFAULT_TOKENIZER = "default"
TOKENIZER_HELP = ("Mask tokenizer: 'default' (the shipped HiMTok model), or a tokenizer folder or file "
                  "(masktok folder, mask_tokenizer_256x2.pth, himtok.pth, official VLM folder).")
DEVICE_HELP = "Device to run on (cpu, cuda, cuda:1, …)."
DTYPE_HELP = "Compute dtype: float32, bfloat16 or float16 (default: bf16 on CUDA, float32 on CPU)."

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


def tokenizer_path(value: str | Path) -> Path:
    """``--tokenizer`` → the folder or file to open (the shipped one for ``default``)."""
    if str(value) == DEFAULT_TOKENIZER:
        from masktok.default_model import default_tokenizer_path

        return default_tokenizer_path()
    path = Path(value)
    if not path.exists():
        raise typer.BadParameter(f"{value}: no such tokenizer file or folder (or 'default' for the "
                                 "shipped one)", param_hint="--tokenizer")
    return path


def check_device(device: str, option: str = "--device") -> Any:
    """``--device`` → a :class:`torch.device` that exists on this machine."""
    from masktok.devices import resolve_device

    try:
        return resolve_device(device, name=option)
    except ValueError as error:
        raise typer.BadParameter(str(error).removeprefix(f"{option} "), param_hint=option) from None


def parse_dtype(name: Optional[str]) -> Any:
    """``--dtype`` → a torch dtype (None: the tokenizer's default)."""
    if name is None:
        return None
    if name not in _DTYPES:
        raise typer.BadParameter(f"expected one of {sorted(_DTYPES)}, got {name!r}", param_hint="--dtype")
    import torch

    return getattr(torch, _DTYPES[name])


def open_tokenizer(value: str | Path, device: str = "cpu", dtype: Optional[str] = None, **kwargs: Any) -> Any:
    """Open ``--tokenizer`` on ``--device`` in ``--dtype``; the device and the path are checked first."""
    from masktok.tokenizers import load_tokenizer

    torch_device = check_device(device)
    torch_dtype = parse_dtype(dtype)
    return load_tokenizer(tokenizer_path(value), device=torch_device, dtype=torch_dtype, **kwargs)
