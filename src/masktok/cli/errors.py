"""How the ``masktok`` command reports failures: one ``error:`` line, one exit code for bad input.

Every command runs inside :class:`MasktokGroup`, so the rules hold everywhere:

- bad input — a usage error (unknown option, missing or invalid value), a value the library
  rejects (``ValueError``, masktok's :class:`~masktok.errors.MasktokError`), a file that cannot be
  read or written (``OSError``), a missing optional package (``ModuleNotFoundError``) — prints
  exactly one line ``error: <the input>: <the problem>`` on stderr and exits with
  :data:`BAD_INPUT_EXIT_CODE` (2), without a Python traceback (``masktok --debug …`` or
  ``MASKTOK_DEBUG=1`` prints it first);
- Ctrl+C exits with :data:`INTERRUPTED_EXIT_CODE` (130);
- anything else is a bug in masktok and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer ≥ 0.24 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_errors

from masktok.errors import MasktokError, MissingDependencyError

BAD_INPUT_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130
DEBUG_ENV = "MASKTOK_DEBUG"

# What counts as bad input (see the module docstring); everything else propagates as a bug.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, MasktokError)

_debug = False


def set_debug(enabled: bool) -> None:
    """Show tracebacks of bad-input errors too (the root ``--debug`` option)."""
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    return _debug or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")


def describe(error: BaseException) -> str:
    """One line naming the input and the problem, from a bad-input exception."""
    if isinstance(error, click_errors.ClickException):
        message = error.format_message()
        ctx = getattr(error, "ctx", None)
        if isinstance(error, click_errors.UsageError) and ctx is not None:
            message = f"{message} (see '{ctx.command_path} --help')"
    elif isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"
        if error.filename2 is not None:
            message += f" (→ {error.filename2})"
    else:
        message = str(error) or type(error).__name__
        if isinstance(error, KeyError) and error.args:  # str(KeyError) is the quoted key alone
            message = str(error.args[0])
    return " ".join(message.split())


def report(error: BaseException) -> None:
    """Print ``error: …`` (after the traceback in debug mode) on stderr."""
    if debug_enabled() and not isinstance(error, click_errors.ClickException):
        traceback.print_exception(error, file=sys.stderr)
    sys.stderr.write(f"error: {describe(error)}\n")
    sys.stderr.flush()


class MasktokGroup(TyperGroup):
    """The root command group: runs the command, turns bad input into one ``error:`` line."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as error:  # a group called without a command
            typer.echo(error.format_message())
            code = error.exit_code
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            code = INTERRUPTED_EXIT_CODE
        except (click_errors.ClickException, *USER_ERRORS) as error:
            report(error)
            code = BAD_INPUT_EXIT_CODE
        except ModuleNotFoundError as error:
            if (error.name or "masktok").split(".")[0] == "masktok":
                raise  # masktok's own module missing: a broken installation, a bug
            report(MissingDependencyError(f"this command needs the package {error.name!r}, which is not "
                                          "installed: pip install the masktok extra that provides it (README)"))
            code = BAD_INPUT_EXIT_CODE
        else:
            # Without standalone mode click returns the command's value (None), or the code of
            # a typer.Exit, --help or Ctrl+C (an int).
            code = result if isinstance(result, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)
