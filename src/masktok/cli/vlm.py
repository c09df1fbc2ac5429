"""``masktok vlm``: prepare vision-language models for mask words."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from masktok.cli.tokenizer_option import CODEBOOK_HELP, MAX_CODES_HELP, vocabulary_option

app = typer.Typer(help="Prepare vision-language models for mask words.", no_args_is_help=True)


@app.command("add-vocab")
def add_vocab(
    base: Path = typer.Argument(..., help="Hugging Face model folder (model + processor/tokenizer)."),
    out: Path = typer.Argument(..., help="Folder to write the extended model and processor to."),
    vocab: str = typer.Option("samtok", help="Mask vocabulary: samtok (514 tokens), himtok (1026), default (the "
                                             "shipped tokenizer's) or a tokenizer folder or file (its vocabulary)."),
    init: str = typer.Option("samtok", help="New rows: samtok (mean + 0.02·std·noise) or mean."),
    seed: int = typer.Option(0, help="Seed of the initialisation noise."),
    codebook_size: Optional[int] = typer.Option(None, help=CODEBOOK_HELP),
    max_codes: Optional[int] = typer.Option(None, help=MAX_CODES_HELP),
) -> None:
    """Add the mask words to BASE (tokenizer + embeddings) and save the result to OUT."""
    from transformers import (AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor,
                              AutoTokenizer)

    from masktok.errors import MissingDependencyError
    from masktok.mllm.vocabulary import add_mask_vocabulary

    vocabulary = vocabulary_option(vocab, codebook_size, max_codes, option="--vocab")
    if not (base / "config.json").is_file():
        raise typer.BadParameter(f"{base} has no config.json", param_hint="BASE")
    console = Console()
    try:
        try:
            model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
            text_processor = AutoProcessor.from_pretrained(base)
        except ValueError:  # a text-only causal LM
            model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
            text_processor = AutoTokenizer.from_pretrained(base)
    except ImportError as error:  # e.g. a Qwen-VL image processor without torchvision
        raise MissingDependencyError(f"{base}: loading this model needs a package that is not installed "
                                     f"(pip install 'masktok[mllm]'): {error}") from error
    try:
        report = add_mask_vocabulary(model, text_processor, vocabulary, init=init, seed=seed)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    text_processor.save_pretrained(out)
    console.print(f"added {report.num_added} {vocabulary.name} tokens "
                  f"(embedding rows {report.old_num_embeddings} → {report.new_num_embeddings}, "
                  f"{'tied' if report.tied else 'untied'} head, init {report.init}) → {out}")
