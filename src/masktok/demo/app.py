"""The demo app: ``build_app(models)`` makes the ``gr.Blocks``; ``launch_app`` serves it locally.

The page works offline: telemetry and version checks are off, fonts come with gradio, and no
share link is made unless asked for.
"""

from __future__ import annotations

import html
import os
from typing import Any

from masktok.demo.models import DemoModels, describe_tokenizer

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

TITLE = "masktok demo"
CSS = """
#tokenize-status, #decode-status, #chat-status { min-height: 1.5em; }
"""


def header_markdown(models: DemoModels) -> str:
    """The page header: what the demo runs."""
    chat = (f"chat model: `{html.escape(models.chat_source)}`" if models.chat_source else
            "chat model: loaded" if models.chat is not None else "no chat model")
    source = f" (`{html.escape(models.tokenizer_source)}`)" if models.tokenizer_source else ""
    return (f"## {TITLE}\n"
            f"Masks ⇄ mask words. Tokenizer: {describe_tokenizer(models.tokenizer)}{source} · {chat}")


def build_app(models: DemoModels) -> Any:
    """The ``gr.Blocks`` with the Tokenize, Decode and Chat tabs."""
    import gradio as gr

    from masktok.demo.tabs import ChatTab, DecodeTab, TokenizeTab
    from masktok.demo.tabs.chat import no_chat_model_note

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(header_markdown(models), elem_id="demo-header")
        with gr.Tabs():
            with gr.Tab("Tokenize", id="tokenize", elem_id="tab-tokenize"):
                TokenizeTab(models).build()
            with gr.Tab("Decode", id="decode", elem_id="tab-decode"):
                DecodeTab(models).build()
            with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
                if models.chat is not None:
                    ChatTab(models).build()
                else:
                    no_chat_model_note()
    return app


def launch_app(app: Any, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
               block: bool = True) -> str:
    """Serve ``app`` on ``host:port`` (None: gradio picks a free port from 7860) and return its
    local URL; ``block=False`` returns at once and leaves the server running in a thread."""
    _, url, _ = app.launch(server_name=host, server_port=port, share=share, inbrowser=False,
                           prevent_thread_lock=True, quiet=True, show_error=False, ssr_mode=False,
                           css=CSS, footer_links=["settings"])
    if block:
        app.block_thread()
    return url
