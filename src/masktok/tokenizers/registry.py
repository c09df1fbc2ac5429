"""``load_tokenizer(path)``: open any mask tokenizer from a file, a folder or a hub repository id.

Tokenizer families are registered by name with the class that loads them (as ``"module:Class"``,
imported only when needed, so ``import masktok.tokenizers`` stays light) and, optionally, a test
that recognises their official files. The family stored at a path is read from its
``config.json`` field ``"tokenizer_type"`` (masktok's own format), or recognised by a registered
test (SAMTok: ``mask_tokenizer*.pth``, alone or in a VLM folder; HiMTok: ``himtok.pth``, alone or
in a folder, or inside official InternVL2.5-HiMTok shards); a folder holding several is refused.
A chat folder masktok wrote opens through its ``mask_tokenizer/``. A new family plugs in with
:func:`register_tokenizer_family`; no caller changes.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from masktok.tokenizers.hub import resolve_pretrained

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class TokenizerFamily:
    """A registered tokenizer family.

    Attributes:
        name: the ``"tokenizer_type"`` its ``config.json`` names.
        tokenizer_class: the class, or ``"module:Class"`` to import on first use.
        recognizes: path → the family's official tokenizers found there: files, or the folder
            itself when its weights hold one (``path`` is a file, or a folder without a
            ``config.json`` naming a type, e.g. an official VLM's; an empty list: none); None
            when the family has only masktok's format.
    """

    name: str
    tokenizer_class: type | str
    recognizes: Callable[[Path], list[Path]] | None = None

    def load_class(self) -> type:
        """The tokenizer class (imported now when it was given by name)."""
        if not isinstance(self.tokenizer_class, str):
            return self.tokenizer_class
        module_name, _, class_name = self.tokenizer_class.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


_FAMILIES: dict[str, TokenizerFamily] = {}


def register_tokenizer_family(name: str, tokenizer_class: type | str, *,
                              recognizes: Callable[[Path], list[Path]] | None = None,
                              replace: bool = False) -> TokenizerFamily:
    """Make ``load_tokenizer`` (and everything built on it) open tokenizers of family ``name``.

    Args:
        name: the ``"tokenizer_type"`` in the family's ``config.json``.
        tokenizer_class: a :class:`~masktok.tokenizers.tokenizer_base.MaskTokenizerBase`
            subclass, or ``"module:Class"`` naming one.
        recognizes: optional test for the family's official files (see :class:`TokenizerFamily`).
        replace: allow re-registering an existing name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"tokenizer family name: expected a non-empty str, got {name!r}")
    if name in _FAMILIES and not replace:
        raise ValueError(f"tokenizer family {name!r} is already registered (pass replace=True)")
    family = TokenizerFamily(name, tokenizer_class, recognizes)
    _FAMILIES[name] = family
    return family


def unregister_tokenizer_family(name: str) -> None:
    """Forget family ``name`` (KeyError if it is not registered)."""
    del _FAMILIES[name]


def tokenizer_families() -> dict[str, TokenizerFamily]:
    """Every registered family by name (a copy)."""
    return dict(_FAMILIES)


def tokenizer_class(name: str) -> type:
    """The tokenizer class of family ``name``; ``ValueError`` naming the registered ones."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown tokenizer family {name!r}; registered: {sorted(_FAMILIES)}")
    return _FAMILIES[name].load_class()


def tokenizer_type(path: str | Path) -> str:
    """The tokenizer family stored at the local ``path`` ("samtok", "himtok", …); ``ValueError``
    if it cannot be told, ``FileNotFoundError`` if nothing is there."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer at {path}")
    folder = path if path.is_dir() else path.parent
    config = folder / CONFIG_FILE
    kind = data = None
    if config.is_file() and (path.is_dir() or path.name == CONFIG_FILE or path.suffix == ".safetensors"):
        try:
            data = json.loads(config.read_text())
        except ValueError as err:
            raise ValueError(f"{config} is not valid JSON: {err}") from err
        kind = data.get("tokenizer_type") if isinstance(data, dict) else None
        if kind is not None and not isinstance(kind, str):
            raise ValueError(f"{config}: \"tokenizer_type\" must be a string, got {kind!r}")
    if kind is not None:
        if kind not in _FAMILIES:
            raise ValueError(f"{config}: unknown tokenizer_type {kind!r}; registered: {sorted(_FAMILIES)}")
        return kind
    found = official_tokenizers(path)
    if len(found) > 1:
        names = [describe_location(location) for _, location in found]
        raise ValueError(f"{path}: holds {len(found)} candidate mask tokenizers ({names}); pass the file itself")
    if found:
        return found[0][0]
    if data is not None:
        raise ValueError(f"{config} has no \"tokenizer_type\" field naming the tokenizer family, and the "
                         "folder holds no official tokenizer file (mask_tokenizer*.pth, himtok.pth)")
    raise ValueError(f"cannot tell which mask tokenizer {path} holds: expected a folder with {CONFIG_FILE} "
                     "(field \"tokenizer_type\") or an official checkpoint such as mask_tokenizer_256x2.pth "
                     "or himtok.pth")


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


def official_tokenizers(path: str | Path) -> list[tuple[str, Path]]:
    """(family, location) of every official tokenizer the registered families recognise at
    ``path`` (a file, or a folder such as an official VLM's); the location is a file, or the
    folder itself when its weight shards hold the tokenizer."""
    path = Path(path)
    return [(family.name, found) for family in _FAMILIES.values() if family.recognizes is not None
            for found in family.recognizes(path)]


def describe_location(location: Path) -> str:
    """A tokenizer location for messages: a file's name, or ``folder (in its weights)``."""
    return f"{location.name} (in its weights)" if location.is_dir() else location.name


def load_tokenizer(path: str | Path, *, device: Any = "cpu", dtype: Any = None, revision: str | None = None,
                   cache_dir: str | Path | None = None, local_files_only: bool = False, **options: Any):
    """The :class:`~masktok.tokenizers.base.MaskTokenizer` stored at ``path``: a file, a folder or a
    hub repository id ``"org/name"`` (opened through the hub cache, see
    :mod:`masktok.tokenizers.hub`). ``options`` go to the family's ``from_pretrained``; one it
    does not take raises ``ValueError`` naming it. A hub snapshot holds only the files some
    registered family reads (each class's ``hub_files``) and the model card."""
    patterns = None if Path(path).expanduser().exists() else _hub_patterns()
    local = resolve_pretrained(path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                               allow_patterns=patterns)
    local = chat_folder_tokenizer(local)
    cls = tokenizer_class(tokenizer_type(local))
    return cls.from_pretrained(local, device=device, dtype=dtype, **options)


def _hub_patterns() -> list[str]:
    """The files a hub snapshot needs: those some registered family reads, and the model card."""
    return sorted({p for family in _FAMILIES.values() for p in family.load_class().hub_files} | {"*.md"})


def _samtok_official(path: Path) -> list[Path]:
    """Official SAMTok files: ``mask_tokenizer*.pth``, alone or in a (VLM) folder."""
    if path.is_dir():
        return sorted(path.glob("mask_tokenizer*.pth"))
    return [path] if path.name.startswith("mask_tokenizer") and path.suffix == ".pth" else []


def _himtok_official(path: Path) -> list[Path]:
    """Official HiMTok weights: ``himtok.pth``, alone or in a folder, or the folder itself when
    its weight shards hold HiMTok (official InternVL2.5-HiMTok, ``model_type: internvl_chat``)."""
    if not path.is_dir():
        return [path] if path.name == "himtok.pth" else []
    found = [path / "himtok.pth"] if (path / "himtok.pth").is_file() else []
    try:
        config = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else None
    except ValueError:
        config = None
    if isinstance(config, dict) and config.get("model_type") == "internvl_chat":
        found.append(path)
    return found


register_tokenizer_family("samtok", "masktok.tokenizers.samtok:SAMTok", recognizes=_samtok_official)
register_tokenizer_family("himtok", "masktok.tokenizers.himtok:HiMTok", recognizes=_himtok_official)
