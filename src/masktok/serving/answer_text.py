"""A served answer's text → the same layout ``MaskChat`` builds from token ids.

An OpenAI-compatible server returns text, not ids, so mask spans are parsed from the text (their
``start``/``end`` are character offsets of the answer). When the server keeps special tokens in
the text (vLLM's ``skip_special_tokens=false``), the phrase markers
``<|object_ref_start|>…<|object_ref_end|>`` of grounded answers are recorded and taken out, so
phrases and masks line up as in :func:`masktok.mllm.answer.layout_answer`.
"""

from __future__ import annotations

from masktok.mllm.answer import AnswerLayout, LocatedSpan, PhraseMark
from masktok.words.prompts import PHRASE_END, PHRASE_START
from masktok.words import MaskVocabulary, parse_mask_words


def strip_phrase_markers(text: str) -> tuple[str, list[PhraseMark]]:
    """(text without the phrase markers, each marked phrase located in that text)."""
    pieces: list[str] = []
    phrases: list[PhraseMark] = []
    length = 0
    opened: int | None = None
    cursor = 0
    while True:
        starts = [(text.find(marker, cursor), marker) for marker in (PHRASE_START, PHRASE_END)]
        found = [(at, marker) for at, marker in starts if at >= 0]
        if not found:
            break
        at, marker = min(found)
        pieces.append(text[cursor:at])
        length += at - cursor
        cursor = at + len(marker)
        if marker == PHRASE_START:
            opened = length
        elif opened is not None:
            phrases.append(PhraseMark("".join(pieces)[opened:length], opened, length))
            opened = None
    pieces.append(text[cursor:])
    clean = "".join(pieces)
    if opened is not None:
        phrases.append(PhraseMark(clean[opened:], opened, len(clean), closed=False))
    return clean, phrases


def layout_text_answer(text: str, vocab: MaskVocabulary, *, lenient: bool = True) -> AnswerLayout:
    """Parse one answer's text: its mask spans (character offsets) and grounded phrases.

    Raises:
        MaskWordsError: ``lenient=False`` and a span is malformed.
    """
    clean, phrases = strip_phrase_markers(text)
    spans = parse_mask_words(clean, vocab, lenient=lenient)
    located = [LocatedSpan(span, span.start, span.end) for span in spans]
    return AnswerLayout(text=clean, token_ids=[], spans=located, phrases=phrases)
