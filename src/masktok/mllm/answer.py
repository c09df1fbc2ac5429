"""Generated token ids → answer text, with every mask span and grounded phrase located in it.

Mask words are parsed from the **token ids** (decoded text may gain spaces in some detokenizers),
then the text is rebuilt piece by piece so each span's character offsets in the final text are
exact. Special tokens are dropped from the text as ``skip_special_tokens=True`` would, but the
phrase markers ``<|object_ref_start|>…<|object_ref_end|>`` of grounded answers are recorded
first, so the phrase ↔ mask alignment survives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from masktok.words.prompts import PHRASE_END, PHRASE_START
from masktok.words import MaskSpan, MaskVocabulary, parse_mask_token_ids


@dataclass(frozen=True)
class LocatedSpan:
    """A mask span of the answer.

    Attributes:
        span: the parser's span; ``start``/``end`` are token offsets in ``AnswerLayout.token_ids``.
        char_start, char_end: where its words sit in ``AnswerLayout.text`` (end exclusive).
    """

    span: MaskSpan
    char_start: int
    char_end: int


@dataclass(frozen=True)
class PhraseMark:
    """A phrase wrapped in ``<|object_ref_start|>…<|object_ref_end|>``.

    ``char_start``/``char_end`` locate the phrase in the text; ``closed`` is False when the
    answer ended before ``<|object_ref_end|>``.
    """

    text: str
    char_start: int
    char_end: int
    closed: bool = True


@dataclass
class AnswerLayout:
    """An answer's text plus where its masks and phrases are."""

    text: str
    token_ids: list[int]
    spans: list[LocatedSpan] = field(default_factory=list)
    phrases: list[PhraseMark] = field(default_factory=list)


def trim_generated(ids: Sequence[int], *, eos_ids: Sequence[int] = (),
                   pad_id: int | None = None) -> list[int]:
    """Generated ids up to (not including) the first end-of-sequence id, padding removed."""
    eos = set(int(i) for i in eos_ids)
    out: list[int] = []
    for token in ids:
        token = int(token)
        if token in eos:
            break
        if pad_id is not None and token == pad_id:
            continue
        out.append(token)
    return out


def _phrase_marker_ids(tokenizer: Any) -> tuple[int | None, int | None]:
    vocabulary = tokenizer.get_vocab()
    return vocabulary.get(PHRASE_START), vocabulary.get(PHRASE_END)


def layout_answer(token_ids: Sequence[int], tokenizer: Any, vocab: MaskVocabulary,
                  mask_ids: Mapping[str, int], *, lenient: bool = True) -> AnswerLayout:
    """Parse and lay out one answer.

    Args:
        token_ids: the generated ids (prompt removed, see :func:`trim_generated`).
        tokenizer: the text tokenizer (decodes the pieces between spans).
        vocab: the mask vocabulary; ``mask_ids`` its token → id map.
        lenient: parse leniently (malformed spans are repaired where possible and reported
            through each span's ``status``/``repairs``); strict parsing raises ``MaskWordsError``.
    """
    ids = [int(t) for t in token_ids]
    spans = parse_mask_token_ids(ids, vocab, mask_ids, lenient=lenient)
    start_id, end_id = _phrase_marker_ids(tokenizer)

    def decode(piece: list[int]) -> str:
        return tokenizer.decode(piece, skip_special_tokens=True,
                                clean_up_tokenization_spaces=False) if piece else ""

    layout = AnswerLayout(text="", token_ids=ids)
    pieces: list[str] = []
    pending: list[int] = []
    state = {"length": 0, "phrase_at": None}  # text length so far; where an open phrase began

    def flush() -> None:
        text = decode(pending)
        pieces.append(text)
        state["length"] += len(text)
        pending.clear()

    def consume_text(tokens: list[int]) -> None:
        for token in tokens:
            if token not in (start_id, end_id):
                pending.append(token)
                continue
            flush()
            if token == start_id:
                state["phrase_at"] = state["length"]
            elif state["phrase_at"] is not None:
                begin, end = state["phrase_at"], state["length"]
                layout.phrases.append(PhraseMark("".join(pieces)[begin:end], begin, end))
                state["phrase_at"] = None

    cursor = 0
    for span in sorted(spans, key=lambda s: s.start):
        consume_text(ids[cursor:span.start])
        flush()
        words = decode(ids[span.start:span.end])
        begin = state["length"]
        layout.spans.append(LocatedSpan(span, begin, begin + len(words)))
        pieces.append(words)
        state["length"] += len(words)
        cursor = max(cursor, span.end)
    consume_text(ids[cursor:])
    flush()
    layout.text = "".join(pieces)
    if state["phrase_at"] is not None:
        begin = state["phrase_at"]
        layout.phrases.append(PhraseMark(layout.text[begin:], begin, len(layout.text),
                                         closed=False))
    return layout
