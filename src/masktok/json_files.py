"""``read_json_object``: a JSON file that must hold one object, read with one clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: str | Path, *, error: type[ValueError] = ValueError) -> dict[str, Any]:
    """The JSON object in file ``path``.

    Raises:
        FileNotFoundError: no such file.
        ValueError (or ``error``, a subclass): naming the file, when it is not valid JSON (or not
            UTF-8 text) or holds something other than an object.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
