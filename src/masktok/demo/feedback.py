"""Messages for the user: each tab has a status line; a bad input also raises a warning toast.

Only input problems (``ValueError``, which includes :class:`~masktok.demo.inputs.DemoInputError`
and :class:`~masktok.words.MaskWordsError`) are turned into messages; the UI never shows a
stack trace.
"""

from __future__ import annotations

import html

ERROR_PREFIX = "Error: "


def ok_status(message: str) -> str:
    """A status line (markdown) reporting success."""
    return f"**OK** · {html.escape(message, quote=False)}"


def info_status(message: str) -> str:
    """A neutral status line (markdown)."""
    return html.escape(message, quote=False)


def error_status(message: str) -> str:
    """A status line (markdown) reporting a bad input."""
    return f"**{ERROR_PREFIX.strip()}** {html.escape(message, quote=False)}"


def warn(message: str) -> None:
    """Show ``message`` as a warning toast (printed as a Python warning outside a request); the
    toast renders HTML, so the message is escaped (mask words and ``<mask>`` look like tags)."""
    import gradio as gr

    gr.Warning(html.escape(message, quote=False))


def rgb_hex(color: tuple[int, int, int]) -> str:
    """(r, g, b) → ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*color)
