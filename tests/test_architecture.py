"""The package's layers only point down.

Every import in ``src/masktok`` (module level, inside functions and under ``TYPE_CHECKING``
alike, relative ones resolved) is read with :mod:`ast` and checked against the layer order
(errors | devices | json_files) → (masks | output_lock) → annotations → words → tokenizers → (mllm | data) →
(train | eval | serving) → demo → cli → ``python -m masktok``: a module may import its own package
and anything in a lower layer; peers never import each other. (The command line sits above the
demo because ``masktok demo`` starts it.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "masktok"

# (layer rank, packages or root modules in it); peers share a rank
LAYERS = [
    (0, ("errors", "devices", "json_files")),
    (1, ("masks", "output_lock")),
    (2, ("annotations", "samples")),
    (3, ("words",)),
    (4, ("tokenizers",)),
    (5, ("default_model",)),
    (6, ("mllm", "data")),
    (7, ("train", "eval", "serving")),
    (8, ("demo",)),
    (9, ("cli",)),
    (10, ("__main__",)),
]
RANK = {name: rank for rank, names in LAYERS for name in names}
ROOT = "__init__"  # masktok/__init__.py: the public entry point, allowed to reach the default model
ROOT_RANK = RANK["default_model"] + 0.5


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _component(module: str) -> str | None:
    """``masktok.tokenizers.himtok.model`` → ``tokenizers``; ``masktok`` → ``__init__``."""
    parts = module.split(".")
    if parts[0] != "masktok":
        return None
    return parts[1] if len(parts) > 1 else ROOT


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path`` — module level or not."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # ``from masktok import x`` imports the submodule x when there is one
            if module == "masktok":
                found += [(node.lineno, f"masktok.{alias.name}") for alias in node.names
                          if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()]
    return found


def layer_violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _component(_module_name(path))
        rank = ROOT_RANK if here == ROOT else RANK.get(here)
        if rank is None:
            problems.append(f"{path.relative_to(PACKAGE)}: belongs to no layer; add {here!r} to LAYERS")
            continue
        for line, module in imports_of(path):
            target = _component(module)
            if target is None or target == here or target == ROOT:
                continue
            if target not in RANK:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}, in no layer")
            elif RANK[target] >= rank:
                kind = "a peer" if RANK[target] == rank else "a higher layer"
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({here}) imports {module} ({target}: {kind})")
    return problems


def test_every_package_is_in_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {ROOT}
    assert packages | modules <= set(RANK), sorted((packages | modules) - set(RANK))


def test_no_import_points_up_or_sideways():
    problems = layer_violations()
    assert not problems, "imports that break the layer order:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, expected", [
    ("from masktok.eval.datasets import x\n", ["masktok.eval.datasets"]),
    ("def f():\n    from ...eval import y\n", ["masktok.eval"]),
    ("if TYPE_CHECKING:\n    from ..tokenize import z\n", ["masktok.data.tokenize"]),
    ("import masktok.cli as c\n", ["masktok.cli"]),
])
def test_the_walker_sees_lazy_and_relative_imports(tmp_path, monkeypatch, source, expected):
    """The checker reads imports inside functions and relative ones (so it can fail)."""
    fake = PACKAGE / "data" / "sft" / "res.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert [module for _, module in imports_of(fake)] == expected
