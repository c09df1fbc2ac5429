"""``masktok words``: parse, write and shorten mask words."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from masktok.cli.tokenizer_option import (
    CODEBOOK_HELP as _CODEBOOK_HELP,
    DEFAULT_TOKENIZER,
    MAX_CODES_HELP as _MAX_CODES_HELP,
    VOCABULARY_HELP as _TOKENIZER_HELP,
    vocabulary_option,
)

app = typer.Typer(help="Parse, write and shorten mask words (<|mt_start|>…<|mt_end|>).",
                  no_args_is_help=True)

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

    vocab = vocabulary_option(tokenizer, codebook_size, max_codes)
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

    vocab = vocabulary_option(tokenizer, codebook_size, max_codes)
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

    vocab = vocabulary_option(tokenizer, codebook_size, max_codes)
    typer.echo(replace_mask_spans(_read_text(text), vocab, "short", lenient=lenient))
