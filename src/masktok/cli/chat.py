"""``masktok chat``: ask a mask-word VLM about an image; masks come back as PNG overlay + RLE."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console


def chat(
    model: Path = typer.Option(..., "--model", help="Chat folder: official SAMTok VLM or masktok-saved."),
    image: Path = typer.Option(..., "--image", help="Image file."),
    prompt: str = typer.Option(..., "--prompt", help="The question; '<mask>' marks where a --mask goes."),
    mask: list[Path] = typer.Option(None, "--mask", help="Mask PNG(s) of the image (repeatable)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for the overlay PNG and RLE JSON."),
    max_new_tokens: int = typer.Option(512, help="Generation budget."),
    constrained: bool = typer.Option(True, help="Grammar-constrained mask words."),
    device: str = typer.Option("cpu", help="torch device, e.g. cuda."),
    stream: bool = typer.Option(False, help="Print the answer while it is generated."),
) -> None:
    """Answer PROMPT about IMAGE; print the answer, write <image>_masks.png and _masks.json."""
    import numpy as np
    from PIL import Image

    from masktok.masks import read_mask_png
    from masktok.mllm.chat import MaskChat
    from masktok.masks.render import render_masks
    from masktok.mllm.streaming import AnswerDone, MaskReady, TextChunk

    console = Console()
    if not image.is_file():
        raise typer.BadParameter(f"{image} is not a file", param_hint="--image")
    picture = Image.open(image).convert("RGB")
    masks = np.stack([read_mask_png(p) for p in mask]) if mask else None
    session = MaskChat.from_pretrained(model, device=device)
    overrides = dict(max_new_tokens=max_new_tokens, constrained=constrained)
    try:
        conversation = session.start(picture)
        session.add_user_turn(conversation, prompt, masks)
        if stream:
            result = None
            for event in session.stream(conversation, **overrides):
                if isinstance(event, TextChunk):
                    console.print(event.text, end="", markup=False, highlight=False)
                elif isinstance(event, MaskReady):
                    console.print(f"[mask {event.index}: {event.span.status}]", style="cyan",
                                  end="", markup=False)
                elif isinstance(event, AnswerDone):
                    result = event.result
            console.print()
        else:
            result = session.generate([conversation], **overrides)[0]
            console.print(result.text, markup=False, highlight=False)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    out.mkdir(parents=True, exist_ok=True)
    overlay_path = out / f"{image.stem}_masks.png"
    json_path = out / f"{image.stem}_masks.json"
    render_masks(picture, result.decoded_masks).save(overlay_path)
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    bad = len(result.malformed)
    console.print(f"{len(result.rles)} mask(s) decoded, {bad} malformed span(s) → "
                  f"{overlay_path}, {json_path}", style="green")


app = chat
