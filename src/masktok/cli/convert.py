"""``masktok convert``: turn published checkpoints into folders transformers' native classes load."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="Convert published checkpoints into folders masktok and transformers load natively.",
                  no_args_is_help=True)


@app.command("internvl-himtok")
def internvl_himtok(
    source: Path = typer.Argument(..., help="The official InternVL2.5-HiMTok folder (remote-code layout)."),
    target: Path = typer.Argument(..., help="New folder: native InternVL model + processor + mask_tokenizer/."),
) -> None:
    """Convert SOURCE (InternVL2.5-HiMTok-8B) into TARGET without remote code; HiMTok's weights
    come out of the shards into masktok's tokenizer format."""
    from masktok.mllm.internvl import convert_internvl_himtok

    if not source.is_dir():
        raise typer.BadParameter(f"{source} is not a folder", param_hint="SOURCE")
    try:
        written = convert_internvl_himtok(source, target)
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error), param_hint="SOURCE") from error
    Console().print(f"converted {source} → {written} (native InternVL, mask_tokenizer/, masktok_chat.json); "
                    f"chat with: masktok chat {written} --image … --prompt …", style="green", highlight=False)
