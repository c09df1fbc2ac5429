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
TOKENIZER_HELP = ("Mask tokenizer: 'default' (the shipped HiMTok model), a tokenizer folder or file "
                  "(masktok folder, mask_tokenizer_256x2.pth, himtok.pth, official VLM folder) or a hub "
                  "repository id org/name (through the hub cache).")
VOCABULARY_HELP = ("Mask vocabulary: 'default' (the shipped tokenizer's: himtok, 1024 codes, 32 per word), "
                   "samtok (<|mt_0000|>…<|mt_0511|>), himtok (<|mt_0|>…<|mt_1023|>), or a tokenizer folder "
                   "or file (its vocabulary).")
CODEBOOK_HELP = "Codes per level (default: the official 256 for samtok, 1024 for himtok)."
MAX_CODES_HELP = "Most codes per word, one per level for samtok (default: the official 2 for samtok, 32 for himtok)."
DEVICE_HELP = "Device to run on (cpu, cuda, cuda:1, …)."
DTYPE_HELP = "Compute dtype: float32, bfloat16 or float16 (default: bf16 on CUDA, float32 on CPU)."

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


def tokenizer_path(value: str | Path) -> Path | str:
    """``--tokenizer`` → the folder or file to open (the shipped one for ``default``), or a hub
    repository id ``org/name`` that is not a local path (opened through the hub cache)."""
    if str(value) == DEFAULT_TOKENIZER:
        from masktok.default_model import default_tokenizer_path

        return default_tokenizer_path()
    path = Path(value)
    if path.exists():
        return path
    from masktok.tokenizers.hub import looks_like_repo_id

    if looks_like_repo_id(value):
        return str(value)
    raise typer.BadParameter(f"{value}: no such tokenizer file or folder (or 'default' for the shipped one, "
                             "or a hub repository id org/name)", param_hint="--tokenizer")


def tokenizer_id(location: Path | str) -> str:
    """How a tokenizer from :func:`tokenizer_path` is named in manifests: its absolute path, or its
    hub repository id."""
    return str(location.resolve()) if isinstance(location, Path) else location


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


def vocabulary_option(value: str, codebook_size: Optional[int] = None, max_codes: Optional[int] = None,
                      option: str = "--tokenizer") -> Any:
    """A vocabulary option → its :class:`~masktok.words.MaskVocabulary`: an official vocabulary's
    name (``samtok``, ``himtok``; ``--codebook-size`` / ``--max-codes`` resize it, default the
    official shape), ``default`` (the shipped tokenizer's) or a tokenizer folder / file (its own)."""
    from masktok.words.vocabulary import OFFICIAL_VOCABULARIES, resized_vocabulary

    if value not in OFFICIAL_VOCABULARIES:
        if codebook_size is not None or max_codes is not None:
            raise typer.BadParameter(f"--codebook-size and --max-codes go with {option} "
                                     f"{' or '.join(OFFICIAL_VOCABULARIES)}; the vocabulary of {value!r} is fixed",
                                     param_hint=option)
        from masktok.tokenizers import load_tokenizer
        from masktok.tokenizers.hub import looks_like_repo_id

        if value != DEFAULT_TOKENIZER and not Path(value).exists() and not looks_like_repo_id(value):
            raise typer.BadParameter(f"expected {DEFAULT_TOKENIZER}, {', '.join(OFFICIAL_VOCABULARIES)}, a "
                                     f"tokenizer folder or file or a hub id org/name, got {value!r}",
                                     param_hint=option)

        return load_tokenizer(tokenizer_path(value)).vocabulary
    official = OFFICIAL_VOCABULARIES[value]
    try:
        return resized_vocabulary(official, codebook_size=official.codebook_size if codebook_size is None
                                  else codebook_size, max_codes=official.max_codes if max_codes is None else max_codes)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--codebook-size / --max-codes") from error
