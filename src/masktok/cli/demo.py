"""``masktok demo``: start the gradio app (extra ``[demo]``) on localhost."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def demo(
    tokenizer: Path = typer.Option(None, "--tokenizer",
                                   help="Tokenizer file or folder (default: the chat model's, "
                                        "else masktok's bundled default)."),
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
    console = Console()
    from masktok.demo import build_app, launch_app, load_demo_models  # turns telemetry off first

    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise typer.BadParameter(f"the demo needs gradio: pip install 'masktok[demo]' ({err})") from err

    with console.status("loading models…"):
        try:
            models = load_demo_models(tokenizer=tokenizer, model=model, device=device)
        except (ValueError, FileNotFoundError) as err:
            raise typer.BadParameter(str(err)) from err
    app = build_app(models)
    url = launch_app(app, host=host, port=port, share=share, block=False)
    console.print(f"masktok demo running at {url} (Ctrl+C to stop)", style="green")
    try:
        app.block_thread()
    finally:
        app.close()


app = demo
