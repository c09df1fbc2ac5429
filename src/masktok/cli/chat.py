"""``masktok chat``: ask a mask-word VLM about an image; masks come back as PNG overlay + RLE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from masktok.cli.dataclass_options import DataclassOptions, with_options
from masktok.mllm.generation_settings import GenerationSettings

# The generation settings a command line can spell; a setting left out keeps the chat folder's own
# (masktok_chat.json) or GenerationSettings' default.
_SETTINGS = DataclassOptions(GenerationSettings, skip=frozenset({"logits_processors"}))


def chat(
    folder: Path = typer.Argument(None, help="Chat folder: an official SAMTok / InternVL-HiMTok model folder, "
                                        "or one written by masktok (save_pretrained, train sft/grpo)."),
    model: Path = typer.Option(None, "--model", help="The chat folder (same as FOLDER)."),
    tokenizer: Path = typer.Option(None, "--tokenizer", help="Mask tokenizer (file or folder) to pair with "
                                   "the VLM instead of the folder's own."),
    image: Path = typer.Option(..., "--image", help="Image file."),
    prompt: str = typer.Option(..., "--prompt", help="The question; '<mask>' marks where a --mask goes."),
    mask: list[Path] = typer.Option(None, "--mask", help="Mask PNG(s) of the image (repeatable)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for the overlay PNG and RLE JSON."),
    refine: str = typer.Option(None, "--refine", help="Refine decoded masks with a SAM 2 refiner: 'sam2'."),
    refiner: Path = typer.Option(None, "--refiner", help="Refiner for --refine (default: the folder's refiner/)."),
    device: str = typer.Option("cpu", help="torch device, e.g. cuda."),
    stream: bool = typer.Option(False, help="Print the answer while it is generated."),
    **settings: Any,
) -> None:
    """Answer PROMPT about IMAGE; print the answer, write <image>_masks.png and _masks.json.

    Generation settings left out keep the chat folder's (masktok_chat.json), else
    GenerationSettings' defaults (masktok.mllm.chat)."""
    import numpy as np
    from PIL import Image

    from masktok.masks import read_mask_png
    from masktok.mllm.chat import MaskChat
    from masktok.masks.render import render_masks
    from masktok.mllm.streaming import AnswerDone, MaskReady, TextChunk

    from masktok.cli.tokenizer_option import check_device
    from masktok.tokenizers.samtok.preprocess import load_rgb

    console = Console()
    check_device(device)
    if (folder is None) == (model is None):
        raise typer.BadParameter("give the chat folder once: as FOLDER or as --model", param_hint="FOLDER")
    hint = "FOLDER" if model is None else "--model"
    folder = folder or model
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder}: no such folder", param_hint=hint)
    picture = Image.fromarray(load_rgb(image, name="--image"))
    masks = None
    if mask:
        read = [read_mask_png(p) for p in mask]
        for path, one in zip(mask, read):
            if one.shape != (picture.height, picture.width):
                raise typer.BadParameter(f"{path} is {one.shape[0]}x{one.shape[1]} (HxW) but the image is "
                                         f"{picture.height}x{picture.width}", param_hint="--mask")
        masks = np.stack(read)
    session = MaskChat.from_pretrained(folder, device=device, mask_tokenizer=tokenizer, refine=refine,
                                       refiner=refiner)
    overrides = _SETTINGS.given(settings)
    if stream and session.settings.replace(**overrides).soft_decoding:
        console.print("note: streaming decodes masks from their codes (the folder's soft decoding needs the "
                      "whole answer's logits)", style="yellow")
        overrides["soft_decoding"] = False
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


app = with_options(chat, _SETTINGS)
