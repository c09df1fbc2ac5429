"""Parsing mask words out of text or token ids, all at once or as they are generated.

Strict parsing (the default) returns only well-formed spans and raises :class:`MaskWordsError`
on the first malformed one. Lenient parsing returns every span with its status; where a span can
be recovered (a valid prefix of codes exists), its ``codes`` hold the recovery and ``repairs``
says how it was made. Nothing is substituted: a missing level is never filled in with a guess.

Whitespace between the tokens of a span (some detokenizers insert spaces) is ignored in both
modes and reported in the span's ``repairs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from masktok.words.grammar import SpanAssembler
from masktok.words.lexer import IdLexer, TextLexer, as_id_list, resolve_token_ids
from masktok.words.spans import MaskSpan
from masktok.words.vocabulary import MaskVocabulary


class StreamingMaskParser:
    """Incremental parser: feed text chunks or token-id chunks, get each span when it is decided.

    A span closed by its end token is returned by the very ``feed`` that delivers the end token
    (even when that chunk splits the token's characters, the call completing it returns the
    span). A malformed span is returned when the grammar decides it (e.g. when text interrupts
    it) or by :meth:`close`. Offsets count from the start of the stream. Feeding every chunk and
    then closing gives exactly the spans :func:`parse_mask_words` / :func:`parse_mask_token_ids`
    give for the concatenated input.

    Args:
        vocab: the mask vocabulary.
        token_ids: needed to feed ids: a token → id mapping or a Hugging Face tokenizer.
        lenient: recover and report malformed spans instead of raising :class:`MaskWordsError`.
            After a strict parser raises, it is finished and refuses further input.
    """

    def __init__(self, vocab: MaskVocabulary, *, token_ids: Mapping[str, int] | Any | None = None,
                 lenient: bool = False) -> None:
        if not isinstance(vocab, MaskVocabulary):
            raise ValueError(f"vocab: expected a MaskVocabulary, got {type(vocab).__name__}")
        self.vocab = vocab
        self.lenient = bool(lenient)
        self._token_ids = None if token_ids is None else resolve_token_ids(vocab, token_ids)
        self._assembler: SpanAssembler | None = None
        self._lexer: TextLexer | IdLexer | None = None
        self._mode: str | None = None
        self._finished = False

    @property
    def mode(self) -> str | None:
        """``"text"`` or ``"ids"`` once the first chunk fixed it, else None."""
        return self._mode

    def feed(self, chunk: str | Any) -> list[MaskSpan]:
        """Read one chunk (a str, or a sequence / 1-D array / 1-D tensor of token ids); return the
        spans it completed."""
        if self._finished:
            raise ValueError("StreamingMaskParser: the stream is finished (closed or failed); "
                             "start a new parser")
        if isinstance(chunk, str):
            mode, payload = "text", chunk
        else:
            mode, payload = "ids", as_id_list(chunk, name="chunk")
        if self._mode is None:
            self._start(mode)
        elif mode != self._mode:
            raise ValueError(f"StreamingMaskParser: this stream reads {self._mode}; got a chunk of {mode}")
        return self._run(lambda: self._lexer.feed(payload))

    def close(self) -> list[MaskSpan]:
        """End of the stream: return the spans decided by it (an unterminated span, if any)."""
        if self._finished:
            raise ValueError("StreamingMaskParser: close() was already called or the stream failed")
        if self._lexer is None:
            self._finished = True
            return []

        def end() -> None:
            if isinstance(self._lexer, TextLexer):
                self._lexer.close()
            self._assembler.finish()

        spans = self._run(end)
        self._finished = True
        return spans

    def _start(self, mode: str) -> None:
        unit = "character" if mode == "text" else "token"
        self._assembler = SpanAssembler(self.vocab, lenient=self.lenient, unit=unit)
        if mode == "text":
            self._lexer = TextLexer(self.vocab, self._assembler)
        else:
            if self._token_ids is None:
                raise ValueError("StreamingMaskParser: feeding token ids needs token_ids= "
                                 "(a token → id mapping or a Hugging Face tokenizer)")
            self._lexer = IdLexer(self.vocab, self._token_ids, self._assembler)
        self._mode = mode

    def _run(self, step: Any) -> list[MaskSpan]:
        try:
            step()
        except BaseException:
            self._finished = True
            raise
        spans = self._assembler.completed
        self._assembler.completed = []
        return spans


def parse_mask_words(text: str, vocab: MaskVocabulary, *, lenient: bool = False) -> list[MaskSpan]:
    """Every mask span of ``text``, in order, with character offsets.

    Raises:
        MaskWordsError: (strict mode) the first malformed span.
        ValueError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected a str, got {type(text).__name__}")
    parser = StreamingMaskParser(vocab, lenient=lenient)
    return parser.feed(text) + parser.close()


def parse_mask_token_ids(ids: Any, vocab: MaskVocabulary, token_ids: Mapping[str, int] | Any, *,
                         lenient: bool = False) -> list[MaskSpan]:
    """Every mask span of a token-id sequence, in order, with token offsets (end exclusive).

    Args:
        ids: (T,) token ids: a sequence, 1-D numpy array or 1-D tensor.
        vocab: the mask vocabulary.
        token_ids: a token → id mapping covering every token of ``vocab``, or a Hugging Face
            tokenizer (read through ``convert_tokens_to_ids``).
        lenient: recover and report instead of raising.

    Ids that are not mask tokens are text; any of them inside a span ends it.
    """
    parser = StreamingMaskParser(vocab, token_ids=token_ids, lenient=lenient)
    return parser.feed(as_id_list(ids)) + parser.close()
