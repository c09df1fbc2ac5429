"""``masktok demo``: start the gradio app (extra ``[demo]``) on localhost."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def demo(
    tokenizer: str = typer.Option(None, "--tokenizer",
                                  help="Tokenizer: 'default' (the shipped one), or a tokenizer file or folder "
                                       "(when left out: the chat model's, else the shipped one)."),
    model: Path = typer.Option(None, "--model",
                               help="Chat folder (official SAMTok VLM or masktok-saved) for the "
                                    "Chat tab."),
    port: int = typer.Option(None, "--port", min=1, max=65535,
                             help="Port (default: the first free one from 7860)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    share: bool = typer.Option(False, "--share/--no-share",
                               help="Also make a public gradio.live link (needs the internet)."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cuda."),
) -> None:
    """Serve the demo: Tokenize (mask → words → mask), Decode (text → masks) and Chat tabs."""
    from masktok.cli.tokenizer_option import check_device, tokenizer_path
    from masktok.errors import require_module

    console = Console()
    require_module("gradio", "the demo", "demo")  # before masktok.demo, which imports it
    from masktok.demo import build_app, launch_app, load_demo_models  # turns telemetry off first

    check_device(device)
    folder = tokenizer_path(tokenizer) if tokenizer is not None else None
    with console.status("loading models…"):
        models = load_demo_models(tokenizer=folder, model=model, device=device)
    app = build_app(models)
    url = launch_app(app, host=host, port=port, share=share, block=False)
    console.print(f"masktok demo running at {url} (Ctrl+C to stop)", style="green")
    try:
        app.block_thread()
    finally:
        app.close()


app = demo
