"""Where a tokenizer's files are: a local path, or a hub repository id opened through the hub cache.

``"org/name"`` that is not a local path is fetched with :func:`huggingface_hub.snapshot_download`
into the hub client's cache (``HF_HUB_CACHE``, ``models--org--name/snapshots/<revision>/``) and
loaded from there, as every transformers user expects. Only the files a tokenizer family reads
are fetched (an official VLM repository also holds the language model's weights). With
``local_files_only=True`` (or ``HF_HUB_OFFLINE=1``) nothing is downloaded: a repository already
in the cache opens, one that is not raises ``FileNotFoundError`` saying so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def looks_like_repo_id(path: str | Path) -> bool:
    """Whether ``path`` has the form ``org/name`` of a hub repository id."""
    text = str(path)
    return bool(_REPO_ID.match(text)) and ".." not in text and not text.endswith((".pth", ".pt", ".json",
                                                                                    ".safetensors"))


def resolve_pretrained(path: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                       local_files_only: bool = False, allow_patterns: Sequence[str] | None = None) -> Path:
    """The local file or folder ``path`` names: ``path`` itself when it exists, else the cached
    snapshot of the hub repository ``path`` (downloaded unless ``local_files_only``).

    Raises:
        FileNotFoundError: nothing at ``path``, and it is not a repository id, or the repository
            is not in the cache while offline, or the hub does not know it.
    """
    local = Path(path).expanduser()
    if local.exists():
        if revision is not None:
            raise ValueError(f"revision={revision!r} names a hub revision, but {path} is a local path")
        return local
    if not looks_like_repo_id(path):
        raise FileNotFoundError(f"no tokenizer at {path}: no such file or folder (and not a hub repository "
                                "id of the form org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{path}" + (f"@{revision}" if revision else "")
    try:
        folder = snapshot_download(repo_id=str(path), revision=revision, cache_dir=cache_dir,
                                   local_files_only=local_files_only,
                                   allow_patterns=list(allow_patterns) if allow_patterns else None)
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"no tokenizer at {where}: not a local path, and the hub repository is not in the cache "
            f"({cache_dir or 'HF_HUB_CACHE'}) while offline (local_files_only=True or HF_HUB_OFFLINE=1); "
            f"download it once online, or pass a local folder") from err
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise FileNotFoundError(f"no tokenizer at {where}: the hub has no such repository or revision "
                                f"({type(err).__name__})") from err
    except (HfHubHTTPError, OSError) as err:
        raise FileNotFoundError(f"no tokenizer at {where}: not a local path, and the hub could not be "
                                f"reached ({err})") from err
    return Path(folder)
