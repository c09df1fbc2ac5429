"""The mask-word grammar (DESIGN §5): vocabularies, formatting, parsing, streaming, repair reports.

A mask becomes a *word*: ``<|mt_start|>`` + one code token per position + ``<|mt_end|>``::

    >>> from masktok.words import SAMTOK_VOCABULARY, format_mask_words, parse_mask_words
    >>> words = format_mask_words((11, 91), SAMTOK_VOCABULARY)
    >>> words
    '<|mt_start|><|mt_0011|><|mt_0347|><|mt_end|>'
    >>> [span.codes for span in parse_mask_words("see " + words, SAMTOK_VOCABULARY)]
    [(11, 91)]

Modules: :mod:`~masktok.words.vocabulary` (spelling rules), :mod:`~masktok.words.format`
(codes → words, the short form), :mod:`~masktok.words.spans` (the report), :mod:`~masktok.words.lexer`
and :mod:`~masktok.words.grammar` (the scanner and the state machine), :mod:`~masktok.words.parse`
(batch and streaming entry points), :mod:`~masktok.words.replace` (text helpers).
"""

from masktok.words.format import check_codes, format_mask_words, format_short, parse_short
from masktok.words.lexer import resolve_token_ids
from masktok.words.parse import StreamingMaskParser, parse_mask_token_ids, parse_mask_words
from masktok.words.replace import REPLACE_STYLES, extract_codes, replace_mask_spans
from masktok.words.spans import MaskSpan, MaskWordsError, SpanStatus
from masktok.words.vocabulary import (HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, MaskVocabulary,
                                      get_vocabulary, himtok_vocabulary, samtok_vocabulary)

__all__ = [
    "HIMTOK_VOCABULARY", "REPLACE_STYLES", "SAMTOK_VOCABULARY", "MaskSpan", "MaskVocabulary",
    "MaskWordsError", "SpanStatus", "StreamingMaskParser", "check_codes", "extract_codes",
    "format_mask_words", "format_short", "get_vocabulary", "himtok_vocabulary",
    "parse_mask_token_ids", "parse_mask_words", "parse_short", "replace_mask_spans",
    "resolve_token_ids", "samtok_vocabulary",
]
