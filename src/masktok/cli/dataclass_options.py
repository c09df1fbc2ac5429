"""Command-line options made from config dataclasses, so a command never restates a default.

:class:`DataclassOptions` turns the fields of one or more dataclasses into typer options: the
option name from the field (``val_every`` → ``--val-every``), the help from the class docstring's
``Attributes:`` section, the default shown from the field (per class when several classes share a
field with different defaults). Every option's own default is ``None`` ("not given"), and
:meth:`DataclassOptions.given` returns only the values given on the command line, so the
dataclass supplies every default.

Field types: ``str``, ``int``, ``float``, ``bool`` (``--x/--no-x``), ``X | None``,
``tuple[str, ...]`` (a repeatable option), ``tuple[int, ...]`` (comma-separated, ``1,2,4``) and
``tuple[float, float]`` (two values).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
import typing
from typing import Any, Optional

import typer


def attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of ``cls``'s docstring as ``{name: one-line text}``."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    current = None
    inside = False
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside, current = True, None
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break
        match = re.match(r"^ {4}(\w+)(?: \([^)]*\))?: (.*)$", line)
        if match:
            current = match.group(1)
            out[current] = match.group(2).strip()
        elif current is not None and line.strip():
            out[current] += " " + line.strip()
    return out


def plain_text(doc: str) -> str:
    """Docstring markup → plain text: ``x`` → x, :func:`~a.b.c` → c, :mod:`a.b` → a.b."""
    doc = re.sub(r":\w+:`~[\w.]*?\.(\w+)`", r"\1", doc)
    doc = re.sub(r":\w+:`([^`]+)`", r"\1", doc)
    return doc.replace("``", "")


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    """A field's type, its annotation evaluated in its class's module (only the fields that
    become options are evaluated: a skipped one may name a type imported for type checking only)."""
    if not isinstance(f.type, str):
        return f.type
    return eval(f.type, vars(sys.modules[cls.__module__]))  # noqa: S307  (an annotation of our own code)


def _cli_type(hint: Any) -> tuple[Any, str]:
    """A field's type → (the option's annotation, how its text becomes the value: "plain" | "ints")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _cli_type(rest[0])
    if hint in (str, int, float, bool):
        return hint, "plain"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] is str:
            return list[str], "plain"
        if args[0] is int:
            return str, "ints"
    if origin is tuple and args and Ellipsis not in args and all(a in (int, float, str) for a in args):
        return hint, "plain"
    raise TypeError(f"no command-line form for a field of type {hint!r}")


class DataclassOptions:
    """Typer options for the fields of ``classes`` (see the module docstring).

    Args:
        classes: the dataclasses, in the order their options are listed.
        skip: field names that are not options (set by the command itself).
        names: display names of the classes for the help ("HiMTok"); default: the class names.
        alternatives: classes of which a command uses one (e.g. one config per family); the help
            of a field only some of them have says which.
        flags: a field's option name when it is not the field's own (``{"num_workers": "--workers"}``).
    """

    def __init__(self, *classes: type, skip: frozenset[str] = frozenset(),
                 names: dict[type, str] | None = None, alternatives: tuple[type, ...] = (),
                 flags: dict[str, str] | None = None) -> None:
        self.classes = classes
        self.alternatives = alternatives
        self.flags = dict(flags or {})
        self.fields: dict[str, list[tuple[type, dataclasses.Field]]] = {}
        self._kinds: dict[str, str] = {}
        self._types: dict[str, Any] = {}
        self._names = names or {}
        docs: dict[str, list[tuple[type, str]]] = {}
        for cls in classes:
            for name, text in attribute_docs(cls).items():
                docs.setdefault(name, []).append((cls, plain_text(text)))
            for f in dataclasses.fields(cls):
                if f.name in skip:
                    continue
                self.fields.setdefault(f.name, []).append((cls, f))
                self._types[f.name], self._kinds[f.name] = _cli_type(_field_type(cls, f))
        self.parameters = [self._parameter(name, self._help(docs.get(name, []))) for name in self.fields]

    def _label(self, cls: type) -> str:
        return self._names.get(cls, cls.__name__)

    def _help(self, docs: list[tuple[type, str]]) -> str:
        """One help text; per class when the classes describe the field differently."""
        if len({text for _, text in docs}) <= 1:
            return docs[0][1] if docs else ""
        return "; ".join(f"{self._label(cls)}: {text.rstrip('.')}" for cls, text in docs) + "."

    def _parameter(self, name: str, doc: str) -> inspect.Parameter:
        defaults = []
        for cls, f in self.fields[name]:
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                continue
            if self._kinds[name] == "ints":
                value = ",".join(str(v) for v in value)
            defaults.append((self._label(cls), value))
        if len({repr(v) for _, v in defaults}) > 1:
            shown = "; ".join(f"{label}: {value!r}" for label, value in defaults)
        else:
            shown = repr(defaults[0][1]) if defaults else "required"
        holders = [cls for cls, _ in self.fields[name]]
        if all(cls in self.alternatives for cls in holders) and len(holders) < len(self.alternatives):
            doc = f"{doc} ({', '.join(self._label(c) for c in holders)} only)".strip()
        flag = self.flag(name)
        decls = [f"{flag}/--no-{flag[2:]}"] if self._types[name] is bool else [flag]
        option = typer.Option(None, *decls, help=f"{doc} (default: {shown})", show_default=False)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                 annotation=Optional[self._types[name]])

    def flag(self, name: str) -> str:
        """The option of field ``name`` (``val_every`` → ``--val-every``)."""
        return self.flags.get(name, "--" + name.replace("_", "-"))

    def given(self, values: dict[str, Any]) -> dict[str, Any]:
        """The options given on the command line (None: not given), as field values."""
        out = {}
        for name, value in values.items():
            if name not in self.fields or value is None:
                continue
            if self._kinds[name] == "ints":
                try:
                    value = tuple(int(v) for v in value.split(",") if v.strip())
                except ValueError:
                    raise typer.BadParameter(f"expected comma-separated integers, got {value!r}",
                                             param_hint=self.flag(name)) from None
            elif isinstance(value, list):
                value = tuple(value)
            out[name] = value
        return out

    def split(self, given: dict[str, Any], cls: type) -> dict[str, Any]:
        """The part of ``given`` that are fields of ``cls``."""
        own = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in given.items() if k in own}


def with_options(function: Any, options: DataclassOptions, *leading: inspect.Parameter) -> Any:
    """``function(..., **values)`` with the signature ``leading`` (default: the function's own
    named parameters) + ``options.parameters``, for typer."""
    if not leading:
        leading = tuple(p for p in inspect.signature(function).parameters.values()
                        if p.kind is not inspect.Parameter.VAR_KEYWORD)
    function.__signature__ = inspect.Signature([*leading, *options.parameters])
    return function
