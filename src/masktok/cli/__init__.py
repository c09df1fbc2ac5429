"""The single ``masktok`` command. Each area registers one typer sub-app here.

Errors: bad input to any command prints one ``error: …`` line and exits with code 2, without a
traceback (``--debug`` shows it); see :mod:`masktok.cli.errors`.
"""

from __future__ import annotations

import importlib

import typer

from masktok.cli.errors import BAD_INPUT_EXIT_CODE, MasktokGroup, set_debug

app = typer.Typer(
    name="masktok",
    cls=MasktokGroup,
    help="Mask words for multimodal LLMs: tokenize masks, parse words, convert, train, evaluate.",
    epilog=f"Exit codes: 0 done; {BAD_INPUT_EXIT_CODE} bad input (one 'error:' line on stderr); "
           "130 interrupted; 1 an internal error (a bug: please report it with the --debug output).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug",
                                     help="Also print the Python traceback of an error "
                                          "(or set MASKTOK_DEBUG=1).")) -> None:
    """Mask words for multimodal LLMs: tokenize masks, parse words, convert, train, evaluate."""
    set_debug(debug)

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
    """The ``masktok`` console script."""
    app(prog_name="masktok")
