"""The refer API's refs files (RefCOCO / RefCOCO+ / RefCOCOg ``refs(*).p``, gRefCOCO ``grefs(*).json``).

A refs file is a pickle of plain containers (read with a loader that refuses any class or
function) or the same list as JSON; both give the list of ref dicts.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, strings and numbers only; any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise ValueError(f"refusing to unpickle {module}.{name}: refs files hold plain data only")


def load_refs(path: str | Path) -> list[dict]:
    """A refer-API refs file (pickle or JSON list) → its list of ref dicts."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"refs file not found: {path}")
    if path.suffix in (".p", ".pkl", ".pickle"):
        with path.open("rb") as f:
            refs = _PlainUnpickler(f, encoding="utf-8").load()
    else:
        with path.open() as f:
            refs = json.load(f)
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ValueError(f"{path}: expected a list of ref records")
    return refs
