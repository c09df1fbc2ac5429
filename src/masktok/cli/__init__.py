"""The single ``masktok`` command. Each area registers one typer sub-app here."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="masktok",
    help="Mask words for multimodal LLMs: tokenize masks, parse words, convert, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# (module under masktok.cli, command/group name). Modules are imported lazily at start-up so a
# missing optional extra only affects its own command group.
_SUBCOMMANDS: list[tuple[str, str]] = [
    ("words", "words"),
    ("eval", "eval"),
    ("masks", "masks"),
    ("vlm", "vlm"),
    ("chat", "chat"),
    ("convert", "convert"),
    ("train", "train"),
    ("roundtrip", "roundtrip"),
    ("tokenize", ""),  # "" adds its commands (encode, decode) at the top level
    ("data", ""),  # tokenize-dataset, build-sft at the top level
    ("demo", "demo"),
    ("serve", "serve"),
]


def _register() -> None:
    for module_name, name in _SUBCOMMANDS:
        module = importlib.import_module(f"masktok.cli.{module_name}")
        sub = getattr(module, "app")
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=name)
        else:  # a plain function: a top-level command
            app.command(name=name)(sub)


@app.command()
def version() -> None:
    """Print masktok's version."""
    from masktok import __version__

    typer.echo(__version__)


_register()


def main() -> None:
    app()
