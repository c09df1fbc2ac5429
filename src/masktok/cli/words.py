"""``masktok words``: parse, write and shorten mask words."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="Parse, write and shorten mask words (<|mt_start|>…<|mt_end|>).",
                  no_args_is_help=True)

_TOKENIZER_HELP = "Mask vocabulary: samtok (<|mt_0000|>…<|mt_0511|>) or himtok (<|mt_0|>…<|mt_1023|>)."
_CODEBOOK_HELP = "Codes per level (default: the official 256 for samtok, 1024 for himtok)."
_MAX_CODES_HELP = "samtok: levels per word (default 2); himtok: most codes per word (default 32)."


def _vocabulary(tokenizer: str, codebook_size: Optional[int], max_codes: Optional[int]):
    from masktok.words import himtok_vocabulary, samtok_vocabulary

    try:
        if tokenizer == "samtok":
            return samtok_vocabulary(codebook_size=codebook_size or 256, depth=max_codes or 2)
        if tokenizer == "himtok":
            return himtok_vocabulary(codebook_size=codebook_size or 1024, max_codes=max_codes or 32)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    raise typer.BadParameter(f"expected samtok or himtok, got {tokenizer!r}", param_hint="--tokenizer")


def _read_text(text: Optional[str]) -> str:
    """TEXT, or standard input when TEXT is omitted or '-'."""
    return sys.stdin.read() if text is None or text == "-" else text


def _fail(error: Exception) -> None:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(code=1)


@app.command("parse")
def parse(
    text: Optional[str] = typer.Argument(None, help="Text holding mask words ('-' or omitted: stdin)."),
    tokenizer: str = typer.Option("samtok", "--tokenizer", "-t", help=_TOKENIZER_HELP),
    lenient: bool = typer.Option(False, "--lenient", help="Recover malformed spans (reported) instead of failing."),
    codebook_size: Optional[int] = typer.Option(None, help=_CODEBOOK_HELP),
    max_codes: Optional[int] = typer.Option(None, help=_MAX_CODES_HELP),
) -> None:
    """Print every mask span of TEXT as JSON: offsets, the words, codes, status, repairs."""
    from masktok.words import MaskWordsError, parse_mask_words

    vocab = _vocabulary(tokenizer, codebook_size, max_codes)
    source = _read_text(text)
    try:
        spans = parse_mask_words(source, vocab, lenient=lenient)
    except MaskWordsError as error:
        _fail(error)
    report = [{**span.to_dict(), "words": source[span.start:span.end]} for span in spans]
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@app.command("format")
def format_words(
    codes: list[int] = typer.Argument(..., help="One mask's codes, one per position (samtok level-1 codes in [0, 256))."),
    tokenizer: str = typer.Option("samtok", "--tokenizer", "-t", help=_TOKENIZER_HELP),
    short: bool = typer.Option(False, "--short", help="Print the short form <11-347> instead."),
    codebook_size: Optional[int] = typer.Option(None, help=_CODEBOOK_HELP),
    max_codes: Optional[int] = typer.Option(None, help=_MAX_CODES_HELP),
) -> None:
    """Print the mask word of CODES, e.g. `masktok words format 11 91`."""
    from masktok.words import format_mask_words, format_short

    vocab = _vocabulary(tokenizer, codebook_size, max_codes)
    try:
        typer.echo(format_short(codes, vocab) if short else format_mask_words(codes, vocab))
    except ValueError as error:
        _fail(error)


@app.command("short")
def short(
    text: Optional[str] = typer.Argument(None, help="Text holding mask words ('-' or omitted: stdin)."),
    tokenizer: str = typer.Option("samtok", "--tokenizer", "-t", help=_TOKENIZER_HELP),
    lenient: bool = typer.Option(False, "--lenient", help="Recover malformed spans; undecodable ones become <status>."),
    codebook_size: Optional[int] = typer.Option(None, help=_CODEBOOK_HELP),
    max_codes: Optional[int] = typer.Option(None, help=_MAX_CODES_HELP),
) -> None:
    """Print TEXT with every mask span replaced by its short form <11-347>."""
    from masktok.words import MaskWordsError, replace_mask_spans

    vocab = _vocabulary(tokenizer, codebook_size, max_codes)
    try:
        typer.echo(replace_mask_spans(_read_text(text), vocab, "short", lenient=lenient), nl=False)
    except MaskWordsError as error:
        _fail(error)
    typer.echo()
