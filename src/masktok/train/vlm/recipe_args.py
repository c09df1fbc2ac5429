"""Recipe configs from YAML files and command-line overrides, read by TRL's ``TrlParser``.

A recipe (:class:`~masktok.train.vlm.config.SFTRecipe`, ``GRPORecipe``, ``HiMTokStage2Recipe``)
nests :class:`~masktok.train.vlm.config.ModelSettings` (with an optional ``LoraSettings``) and
``TrainSettings``. The parser reads one flat set of options made from them, so that a YAML file
and the command line use the same names::

    model: runs/lmm              # ModelSettings.path
    lora: true                   # ModelSettings.lora = LoraSettings(...) (false: None)
    lora_rank: 64                # LoraSettings.rank
    output_dir: runs/sft         # TrainSettings.output_dir
    data: [sft/res.trl.jsonl]    # the recipe's own fields

    masktok train sft --config recipes/samtok_sft.yaml --max_steps 100 --lora_rank 16

Every default and help text comes from the dataclasses (field defaults; the ``Attributes`` of
their docstrings), so there is one source of both. On the command line tuples are lists
(``--data a.jsonl b.jsonl``) and dicts are JSON objects (``--extra '{"fsdp": "full_shard"}'``);
``--no_<name>`` turns off a switch that defaults to on.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SWITCH = "switch"
LEAF = "leaf"


class JSONObject(dict):
    """A dict option: a JSON object on the command line, a mapping in YAML."""

    def __init__(self, value: Any = None):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"not a JSON object ({error.msg}): {value!r}") from None
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {value!r}")
        super().__init__(value)


@dataclass(frozen=True)
class RunOptions:
    """How to run a recipe (not part of the recipe itself).

    Attributes:
        resume: continue from the newest checkpoint in ``output_dir``.
    """

    resume: bool = False


@dataclass(frozen=True)
class FlatOption:
    """One option of the flat view.

    Attributes:
        name: its name on the command line and in YAML.
        path: where it lives in the recipe, e.g. ``("model", "lora", "rank")``.
        kind: ``"leaf"`` (a value) or ``"switch"`` (whether an optional nested config is set).
        type: the parser's type (tuples → lists, dicts → :class:`JSONObject`).
        source_type: the dataclass field's type.
        default: the default value (``dataclasses.MISSING`` when required).
        help: the field's documentation.
    """

    name: str
    path: tuple[str, ...]
    kind: str
    type: Any
    source_type: Any
    default: Any
    help: str


def _optional_dataclass(tp: Any) -> type | None:
    """The dataclass X of a type ``X | None``, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2 and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _parser_type(tp: Any) -> Any:
    """The field type HfArgumentParser understands for ``tp``."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        return list[typing.get_args(tp)[0]]
    if origin is dict or tp is dict:
        return JSONObject
    return tp


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


_ENTRY = re.compile(r"^(\s+)([A-Za-z_][\w]*(?:,\s*[A-Za-z_][\w]*)*):\s*(.*)$")


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name → text, from the ``Attributes:`` sections of ``cls`` and its bases (Google
    style: ``name: text`` or ``a, b: text``, continuation lines indented deeper)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        lines = (klass.__doc__ or "").splitlines()
        inside, indent, names = False, None, []
        for line in lines:
            if line.strip() == "Attributes:":
                inside, indent, names = True, None, []
                continue
            if not inside:
                continue
            if not line.strip():
                continue
            match = _ENTRY.match(line)
            depth = len(line) - len(line.lstrip())
            if match and (indent is None or depth == indent):
                indent = depth
                names = [n.strip() for n in match.group(2).split(",")]
                for name in names:
                    docs[name] = match.group(3).strip()
            elif indent is not None and depth > indent and names:
                for name in names:
                    docs[name] = f"{docs[name]} {line.strip()}"
            else:
                inside = False
    return docs


def flat_options(recipe_cls: type) -> list[FlatOption]:
    """The flat options of a recipe class, in field order.

    Nested dataclass fields are replaced by their own fields (named as they are, or by their
    ``flat_name`` metadata); an optional nested dataclass ``x: X | None`` becomes a switch ``x``
    plus X's fields named ``x_<field>``.

    Raises:
        ValueError: two options would share a name.
    """
    options: list[FlatOption] = []

    def walk(cls: type, path: tuple[str, ...], prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        docs = attribute_docs(cls)
        for field in dataclasses.fields(cls):
            tp = hints[field.name]
            name = prefix + field.metadata.get("flat_name", field.name)
            if dataclasses.is_dataclass(tp):
                walk(tp, path + (field.name,), prefix)
                continue
            nested = _optional_dataclass(tp)
            if nested is not None:
                options.append(FlatOption(name, path + (field.name,), SWITCH, bool, tp, False,
                                          docs.get(field.name, "")))
                walk(nested, path + (field.name,), f"{name}_")
                continue
            options.append(FlatOption(name, path + (field.name,), LEAF, _parser_type(tp), tp,
                                      _default(field), docs.get(field.name, "")))

    walk(recipe_cls, (), "")
    seen: dict[str, tuple[str, ...]] = {}
    for option in options:
        if option.name in seen:
            raise ValueError(f"{recipe_cls.__name__}: options {'.'.join(seen[option.name])} and "
                             f"{'.'.join(option.path)} would both be called {option.name!r}")
        seen[option.name] = option.path
    return options


def argument_class(recipe_cls: type) -> type:
    """A flat dataclass of the recipe's options, for ``HfArgumentParser`` / ``TrlParser``."""
    required, optional = [], []
    for option in flat_options(recipe_cls):
        metadata = {"help": option.help.replace("%", "%%")}
        if option.default is dataclasses.MISSING:
            required.append((option.name, option.type, dataclasses.field(metadata=metadata)))
            continue
        default = option.default
        if isinstance(default, (list, tuple, dict)):
            value = JSONObject(default) if option.type is JSONObject else list(default)
            spec = dataclasses.field(default_factory=lambda value=value: type(value)(value),
                                     metadata=metadata)
        else:
            spec = dataclasses.field(default=default, metadata=metadata)
        optional.append((option.name, option.type, spec))
    return dataclasses.make_dataclass(f"{recipe_cls.__name__}Options", required + optional)


def _source_value(option: FlatOption, value: Any) -> Any:
    """A parsed value back in the dataclass field's type (lists → tuples, JSON → dict)."""
    if value is None:
        return None
    origin = typing.get_origin(option.source_type)
    if origin is tuple or (origin in (typing.Union, types.UnionType) and any(
            typing.get_origin(a) is tuple for a in typing.get_args(option.source_type))):
        if isinstance(value, str):
            return (value,)
        return tuple(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def build_recipe(recipe_cls: type, values: dict[str, Any]) -> Any:
    """Flat option values (by flat name) → the nested recipe. Missing options take their
    defaults.

    Raises:
        ValueError: an unknown option, a required option missing, an option of an optional
            nested config given while its switch is off, or any value the dataclasses reject.
    """
    options = flat_options(recipe_cls)
    known = {o.name for o in options}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown options {unknown} for {recipe_cls.__name__}")
    switches = {o.path: bool(values.get(o.name, False)) for o in options if o.kind == SWITCH}

    def build(cls: type, path: tuple[str, ...]) -> Any:
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            sub = path + (field.name,)
            tp = hints[field.name]
            if dataclasses.is_dataclass(tp):
                kwargs[field.name] = build(tp, sub)
            elif (nested := _optional_dataclass(tp)) is not None:
                if switches[sub]:
                    kwargs[field.name] = build(nested, sub)
                else:
                    _refuse_options_of_unset(sub, nested)
                    kwargs[field.name] = None
            else:
                option = next(o for o in options if o.path == sub)
                if option.name in values:
                    kwargs[field.name] = _source_value(option, values[option.name])
                elif option.default is dataclasses.MISSING:
                    raise ValueError(f"{option.name}: required (give it in the config file or as "
                                     f"--{option.name})")
        return cls(**kwargs)

    def _refuse_options_of_unset(path: tuple[str, ...], nested: type) -> None:
        for option in options:
            if option.path[:len(path)] == path and option.kind == LEAF and option.name in values \
                    and values[option.name] != option.default and not _same(values[option.name], option.default):
                switch = next(o.name for o in options if o.path == path)
                raise ValueError(f"{option.name}: given, but {switch} is off; set {switch}: true to use it")

    return build(recipe_cls, ())


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default


def flatten_recipe(recipe: Any) -> dict[str, Any]:
    """A recipe → its flat options (lists for tuples), e.g. to write it as a YAML file."""
    values: dict[str, Any] = {}
    for option in flat_options(type(recipe)):
        node: Any = recipe
        for part in option.path[:-1]:
            node = getattr(node, part) if node is not None else None
        if option.kind == SWITCH:
            values[option.name] = getattr(node, option.path[-1]) is not None
            continue
        value = getattr(node, option.path[-1]) if node is not None else option.default
        values[option.name] = list(value) if isinstance(value, tuple) else value
    return values


def recipe_parser(recipe_cls: type, prog: str | None = None) -> Any:
    """A ``trl.TrlParser`` over the recipe's flat options and :class:`RunOptions`
    (``--config FILE.yaml`` sets defaults, command-line options override them). A malformed
    command line raises ``ValueError`` (argparse would print usage and exit); ``--help`` prints
    the options and exits."""
    from trl import TrlParser

    class RecipeParser(TrlParser):
        def error(self, message: str) -> None:
            raise ValueError(f"{self.prog}: {message} (see --help)")

    return RecipeParser((argument_class(recipe_cls), RunOptions), prog=prog,
                        description=(recipe_cls.__doc__ or "").split("\n\n")[0])


def parse_recipe(recipe_cls: type, args: Sequence[str], prog: str | None = None
                 ) -> tuple[Any, RunOptions]:
    """Command-line arguments (with an optional ``--config FILE.yaml``) → (recipe, run options).

    Raises:
        ValueError: a malformed command line, a bad value, an unknown YAML key or an
            unreadable config file.
    """
    import yaml

    parser = recipe_parser(recipe_cls, prog)
    try:
        flat, run = parser.parse_args_and_config(list(args))
    except FileNotFoundError as error:
        raise ValueError(f"--config: {error.filename}: no such file") from None
    except yaml.YAMLError as error:
        raise ValueError(f"--config: not a YAML file ({error})") from None
    values = {f.name: getattr(flat, f.name) for f in dataclasses.fields(flat)}
    return build_recipe(recipe_cls, values), run
