"""The errors masktok raises for problems with what it was given or where it runs.

Bad input is reported as ``ValueError`` (wrong values, malformed files: most of masktok's own
error classes derive from it), ``OSError`` (files that cannot be read or written) or one of the
classes below. Each message is one sentence that names the input and the problem; the ``masktok``
command prints it as a single ``error: …`` line (see :mod:`masktok.cli.errors`). Anything else
that escapes is a bug.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MasktokError(Exception):
    """A problem with the caller's input or environment (not a bug), explained in one sentence."""


class MissingDependencyError(MasktokError, ImportError):
    """An optional package that a feature needs is not installed; the message names the extra."""


class OutputInUseError(MasktokError):
    """An output folder is held by another running job (see :mod:`masktok.output_lock`)."""


def require_module(name: str, feature: str, extra: str) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` saying which extra provides it.

    Call it before any work starts, so a missing package fails the run at once.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise MissingDependencyError(f"{feature} needs the package {name.split('.')[0]!r}, which is not "
                                     f"installed: pip install 'masktok[{extra}]' ({err})") from err
