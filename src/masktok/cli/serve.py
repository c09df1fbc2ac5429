"""``masktok serve MODEL_DIR``: serve a mask-word VLM with vLLM and the mask-word grammar."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import typer


def serve(
    model_dir: Path = typer.Argument(
        ..., help="Model folder (official SAMTok VLM or masktok-saved)."),
    host: str = typer.Option("127.0.0.1", help="Address the API listens on."),
    port: int = typer.Option(8000, help="Port of the OpenAI-compatible API."),
    served_model_name: str = typer.Option(
        None, help="Name clients ask for (default: the folder's name)."),
    mask_vocabulary: str = typer.Option(
        None, help="samtok:<codebook>x<levels> or himtok:<codebook>x<max codes> "
                   "(default: read off the tokenizer)."),
    grammar: bool = typer.Option(True, help="Load the grammar plugin (requests may opt out)."),
    vllm: str = typer.Option(
        None, help="The vllm executable (default: $MASKTOK_VLLM or vllm on the PATH)."),
    dry_run: bool = typer.Option(False, help="Print the command and environment, start nothing."),
    vllm_args: list[str] = typer.Argument(None, help="More `vllm serve` arguments, after `--`."),
) -> None:
    """Start `vllm serve MODEL_DIR` with the mask-word grammar plugin; extra vLLM arguments go
    after `--`, e.g. `masktok serve Qwen3-VL-8B-SAMTok -- --max-model-len 8192`."""
    from masktok.serving.launcher import vllm_serve_command

    try:
        command = vllm_serve_command(model_dir, host=host, port=port,
                                     served_model_name=served_model_name,
                                     mask_vocabulary=mask_vocabulary, grammar=grammar, vllm=vllm,
                                     extra_args=vllm_args or [])
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    line = " ".join(f"{k}={shlex.quote(v)}" for k, v in command.env.items())
    typer.echo(f"{line} {shlex.join(command.argv)}", err=True)
    if dry_run:
        return
    os.execve(command.argv[0], command.argv, command.full_env())


app = serve
