"""``masktok words``: parse, write and shorten mask words."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from masktok.cli.tokenizer_option import DEFAULT_TOKENIZER

app = typer.Typer(help="Parse, write and shorten mask words (<|mt_start|>…<|mt_end|>).",
                  no_args_is_help=True)

_TOKENIZER_HELP = ("Mask vocabulary: 'default' (the shipped tokenizer's: himtok, 1024 codes, 32 per word), "
                   "samtok (<|mt_0000|>…<|mt_0511|>), himtok (<|mt_0|>…<|mt_1023|>), or a tokenizer folder "
                   "or file (its vocabulary).")
_CODEBOOK_HELP = "Codes per level (default: the official 256 for samtok, 1024 for himtok)."
_MAX_CODES_HELP = "samtok: levels per word (default 2); himtok: most codes per word (default 32)."


def _vocabulary(tokenizer: str, codebook_size: Optional[int], max_codes: Optional[int]):
    from masktok.words import himtok_vocabulary, samtok_vocabulary

    if tokenizer not in ("samtok", "himtok"):
        if codebook_size is not None or max_codes is not None:
            raise typer.BadParameter("--codebook-size and --max-codes go with --tokenizer samtok or himtok; "
                                     f"the vocabulary of {tokenizer!r} is fixed", param_hint="--tokenizer")
        return _tokenizer_vocabulary(tokenizer)
    try:
        if tokenizer == "samtok":
            return samtok_vocabulary(codebook_size=_given(codebook_size, 256), depth=_given(max_codes, 2))
        return himtok_vocabulary(codebook_size=_given(codebook_size, 1024), max_codes=_given(max_codes, 32))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--codebook-size / --max-codes") from error


def _given(value: Optional[int], default: int) -> int:
    return default if value is None else value


def _tokenizer_vocabulary(tokenizer: str):
    """The vocabulary of the shipped tokenizer (``default``) or of a tokenizer folder / file."""
    from masktok.cli.tokenizer_option import tokenizer_path

    if tokenizer != DEFAULT_TOKENIZER and not Path(tokenizer).exists():
        raise typer.BadParameter(f"expected default, samtok, himtok or a tokenizer folder or file, got "
                                 f"{tokenizer!r}", param_hint="--tokenizer")
    from masktok.tokenizers import load_tokenizer

    return load_tokenizer(tokenizer_path(tokenizer)).vocabulary


def _read_text(text: Optional[str]) -> str:
    """TEXT, or standard input when TEXT is omitted or '-'."""
    return sys.stdin.read() if text is None or text == "-" else text


@app.command("parse")
def parse(
    text: Optional[str] = typer.Argument(None, help="Text holding mask words ('-' or omitted: stdin)."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", "-t", help=_TOKENIZER_HELP),
    lenient: bool = typer.Option(False, "--lenient", help="Recover malformed spans (reported) instead of failing."),
    codebook_size: Optional[int] = typer.Option(None, help=_CODEBOOK_HELP),
    max_codes: Optional[int] = typer.Option(None, help=_MAX_CODES_HELP),
) -> None:
    """Print every mask span of TEXT as JSON: offsets, the words, codes, status, repairs."""
    from masktok.words import parse_mask_words

    vocab = _vocabulary(tokenizer, codebook_size, max_codes)
    source = _read_text(text)
    spans = parse_mask_words(source, vocab, lenient=lenient)
    report = [{**span.to_dict(), "words": source[span.start:span.end]} for span in spans]
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@app.command("format")
def format_words(
    codes: list[int] = typer.Argument(..., help="One mask's codes, one per position (himtok: 1 to 32 codes in "
                                                "[0, 1024); samtok: 2 level codes in [0, 256))."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", "-t", help=_TOKENIZER_HELP),
    short: bool = typer.Option(False, "--short", help="Print the short form <11-347> instead."),
    codebook_size: Optional[int] = typer.Option(None, help=_CODEBOOK_HELP),
    max_codes: Optional[int] = typer.Option(None, help=_MAX_CODES_HELP),
) -> None:
    """Print the mask word of CODES, e.g. `masktok words format 17 903` (`-t samtok 11 91`)."""
    from masktok.words import format_mask_words, format_short

    vocab = _vocabulary(tokenizer, codebook_size, max_codes)
    typer.echo(format_short(codes, vocab) if short else format_mask_words(codes, vocab))


@app.command("short")
def short(
    text: Optional[str] = typer.Argument(None, help="Text holding mask words ('-' or omitted: stdin)."),
    tokenizer: str = typer.Option(DEFAULT_TOKENIZER, "--tokenizer", "-t", help=_TOKENIZER_HELP),
    lenient: bool = typer.Option(False, "--lenient", help="Recover malformed spans; undecodable ones become <status>."),
    codebook_size: Optional[int] = typer.Option(None, help=_CODEBOOK_HELP),
    max_codes: Optional[int] = typer.Option(None, help=_MAX_CODES_HELP),
) -> None:
    """Print TEXT with every mask span replaced by its short form <11-347>."""
    from masktok.words import replace_mask_spans

    vocab = _vocabulary(tokenizer, codebook_size, max_codes)
    typer.echo(replace_mask_spans(_read_text(text), vocab, "short", lenient=lenient))
