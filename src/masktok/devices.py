"""``resolve_device``: a torch device name checked against the hardware before any work starts."""

from __future__ import annotations

from typing import Any

import torch


def resolve_device(device: Any, name: str = "device") -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", a :class:`torch.device`, …) → a :class:`torch.device`
    that exists here.

    Raises:
        ValueError: naming ``name`` and the value, when it is not a device name, asks for CUDA on
            a machine without a usable CUDA GPU, names a GPU index that does not exist, or asks
            for MPS where it is not available.
    """
    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{name} {device!r} is not a torch device name (cpu, cuda, cuda:1, …): {err}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {str(device)!r}: no CUDA GPU is available on this machine "
                             f"(torch {torch.__version__}, torch.cuda.is_available() is False); use cpu")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"{name} {str(device)!r}: this machine has {count} CUDA GPU(s), "
                             f"numbered 0 to {count - 1}")
    elif resolved.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise ValueError(f"{name} {str(device)!r}: MPS is not available on this machine; use cpu")
    return resolved
