"""Lexers: text or token ids → calls on a :class:`~masktok.words.grammar.SpanAssembler`.

The text lexer finds the start token, the end token and every ``<|mt_{digits}|>`` (1–9 ASCII
digits, whether or not the vocabulary spells numbers that way: the grammar judges) in one regex
scan. Fed in chunks, it holds back only a chunk's tail that may still grow into a token (at most
a token's length), so a token split across chunks is read whole and every character is scanned
a bounded number of times: linear time however the text is chunked.

The id lexer looks each id up in a table built from a token → id map or from a Hugging Face
tokenizer (``convert_tokens_to_ids``); an id that is not a mask token is text.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from typing import Any

from masktok.words.grammar import SpanAssembler
from masktok.words.vocabulary import (CODE_TOKEN_PREFIX, CODE_TOKEN_SUFFIX, MAX_NUMBER_DIGITS,
                                      MaskVocabulary, vocabulary_tokens)

_VISIBLE = re.compile(r"\S")
_CODE = re.escape(CODE_TOKEN_PREFIX) + f"([0-9]{{1,{MAX_NUMBER_DIGITS}}})" + re.escape(CODE_TOKEN_SUFFIX)
_CODE_PARTIAL = re.compile(
    r"<(?:\|(?:m(?:t(?:_(?:[0-9]{1,%d}\|?)?)?)?)?)?" % MAX_NUMBER_DIGITS)
_START, _END = -1, -2  # id-table kinds; code tokens map to their digit string


class TextLexer:
    """Incremental text lexer. Offsets are characters from the start of the stream."""

    def __init__(self, vocab: MaskVocabulary, assembler: SpanAssembler) -> None:
        self.vocab = vocab
        self.assembler = assembler
        self._pattern = re.compile(f"({re.escape(vocab.start_token)})|({re.escape(vocab.end_token)})|{_CODE}")
        self._longest = max(len(vocab.start_token), len(vocab.end_token),
                            len(CODE_TOKEN_PREFIX) + MAX_NUMBER_DIGITS + len(CODE_TOKEN_SUFFIX))
        self._held = ""       # a tail that may still become a token
        self._offset = 0      # stream offset of ``_held[0]``

    def feed(self, text: str) -> None:
        buffer = self._held + text if self._held else text
        cut = self._safe_length(buffer)
        self._scan(buffer, cut)
        self._held = buffer[cut:]
        self._offset += cut

    def close(self) -> None:
        self._scan(self._held, len(self._held))
        self._offset += len(self._held)
        self._held = ""

    def _safe_length(self, buffer: str) -> int:
        """How much of ``buffer`` can be lexed now: all of it unless its tail after the last '<'
        is the beginning of a token (tokens start with '<' and hold no other '<' or '>')."""
        last = buffer.rfind("<", max(0, len(buffer) - self._longest + 1))
        if last < 0:
            return len(buffer)
        tail = buffer[last:]
        vocab = self.vocab
        if ">" not in tail and (vocab.start_token.startswith(tail) or vocab.end_token.startswith(tail)
                or _CODE_PARTIAL.fullmatch(tail)):
            return last
        return len(buffer)

    def _scan(self, buffer: str, length: int) -> None:
        assembler, base, position = self.assembler, self._offset, 0
        for match in self._pattern.finditer(buffer, 0, length):
            begin, finish = match.span()
            if begin > position:
                self._text(buffer, position, begin)
            if match.group(1) is not None:
                assembler.on_start(base + begin, base + finish)
            elif match.group(2) is not None:
                assembler.on_end(base + begin, base + finish)
            else:
                assembler.on_code(base + begin, base + finish, match.group(3), match.group(0))
            position = finish
        if length > position:
            self._text(buffer, position, length)

    def _text(self, buffer: str, begin: int, end: int) -> None:
        if not self.assembler.is_open:
            return
        visible = _VISIBLE.search(buffer, begin, end)
        self.assembler.on_text(None if visible is None else self._offset + visible.start())


def resolve_token_ids(vocab: MaskVocabulary, token_ids: Any) -> dict[str, int]:
    """Every token of ``vocab`` → its id, from a ``Mapping[str, int]`` or a Hugging Face tokenizer
    (anything with ``convert_tokens_to_ids``, or a processor holding one as ``.tokenizer``).

    Raises ValueError when a mask token is missing (unknown to the tokenizer), when an id is not
    a non-negative int, or when two mask tokens share an id.
    """
    tokens = vocabulary_tokens(vocab)
    if isinstance(token_ids, Mapping):
        values = [token_ids.get(t) for t in tokens]
        missing = [t for t, v in zip(tokens, values) if v is None and t not in token_ids]
        source = "token_ids"
    else:
        tokenizer = token_ids
        if not hasattr(tokenizer, "convert_tokens_to_ids") and hasattr(tokenizer, "tokenizer"):
            tokenizer = tokenizer.tokenizer
        if not hasattr(tokenizer, "convert_tokens_to_ids"):
            raise ValueError(f"token_ids: expected a Mapping[str, int] or a tokenizer with "
                             f"convert_tokens_to_ids, got {type(token_ids).__name__}")
        values = list(tokenizer.convert_tokens_to_ids(list(tokens)))
        unk_id, unk_token = getattr(tokenizer, "unk_token_id", None), getattr(tokenizer, "unk_token", None)
        missing = [t for t, i in zip(tokens, values)
                   if i is None or (unk_id is not None and i == unk_id and t != unk_token)]
        source = f"tokenizer {type(tokenizer).__name__}"
    if missing:
        raise ValueError(f"{source}: {len(missing)} of the {len(tokens)} {vocab.name} mask tokens "
                         f"have no id (first: {missing[:3]})")
    if not all(type(v) is int and v >= 0 for v in values):  # slow path only to name the culprit
        for token, value in zip(tokens, values):
            if isinstance(value, bool):
                raise ValueError(f"{source}: the id of {token!r} must be an int, got a bool")
            try:
                index = operator.index(value)
            except TypeError:
                raise ValueError(f"{source}: the id of {token!r} must be an int, got {value!r}") from None
            if index < 0:
                raise ValueError(f"{source}: the id of {token!r} is negative ({index})")
        values = [operator.index(v) for v in values]
    result = dict(zip(tokens, values))
    if len(set(values)) != len(values):
        seen: dict[int, str] = {}
        for token, value in result.items():
            if value in seen:
                raise ValueError(f"{source}: {seen[value]!r} and {token!r} share the id {value}")
            seen[value] = token
    return result


def as_id_list(ids: Any, name: str = "ids") -> list[int]:
    """A flat list of ints from a sequence, a 1-D numpy array or a 1-D tensor."""
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise ValueError(f"{name}: expected a 1-D sequence of token ids, got {type(ids).__name__}")
    out = []
    for index, value in enumerate(ids):
        if isinstance(value, bool) or isinstance(value, (list, tuple)):
            raise ValueError(f"{name}[{index}]: expected an int token id, got {value!r} "
                             f"(ids must be one flat sequence)")
        try:
            out.append(operator.index(value))
        except TypeError:
            raise ValueError(f"{name}[{index}]: expected an int token id, got {value!r}") from None
    return out


class IdLexer:
    """Incremental token-id lexer. Offsets are token positions from the start of the stream."""

    def __init__(self, vocab: MaskVocabulary, token_ids: Mapping[str, int],
                 assembler: SpanAssembler) -> None:
        self.assembler = assembler
        tokens = vocabulary_tokens(vocab)
        prefix, suffix = len(CODE_TOKEN_PREFIX), len(CODE_TOKEN_SUFFIX)
        self._kinds: dict[int, int | str] = {token_ids[t]: t[prefix:-suffix] for t in tokens[2:]}
        self._kinds[token_ids[vocab.start_token]] = _START
        self._kinds[token_ids[vocab.end_token]] = _END
        self._raw = {token_ids[t]: t for t in tokens[2:]}
        self._offset = 0

    def feed(self, ids: list[int]) -> None:
        assembler, kinds = self.assembler, self._kinds
        for index, token in enumerate(ids, start=self._offset):
            kind = kinds.get(token)
            if kind is None:
                if assembler.is_open:
                    assembler.on_text(index)
            elif kind == _START:
                assembler.on_start(index, index + 1)
            elif kind == _END:
                assembler.on_end(index, index + 1)
            else:
                assembler.on_code(index, index + 1, kind, self._raw[token])
        self._offset += len(ids)
