"""What the chat pipeline returns: the answer text and every mask it holds, decoded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from masktok.masks import mask_to_box, mask_to_rle
from masktok.mllm.answer import AnswerLayout
from masktok.mllm.grounding import (GroundedPhrase, SceneGraphRelation, align_phrases,
                                    parse_scene_graph)
from masktok.words import MaskSpan


@dataclass(frozen=True)
class MaskPrediction:
    """One mask span of an answer.

    Attributes:
        span: the parser's span (token offsets in ``ChatResult.token_ids``, codes, status,
            repairs).
        words: the span's text as it appears in ``ChatResult.text``.
        char_start, char_end: its place in ``ChatResult.text`` (end exclusive).
        mask: (H, W) bool at the conversation image's size, or None when the span could not be
            decoded (see ``span.status``) or was not decoded by choice.
        phrase: the grounded phrase it belongs to (GCG), if any.
    """

    span: MaskSpan
    words: str
    char_start: int
    char_end: int
    mask: np.ndarray | None = None
    phrase: str | None = None

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(self.span.codes)

    @property
    def status(self) -> str:
        return str(getattr(self.span.status, "value", self.span.status))

    @property
    def decoded(self) -> bool:
        return self.mask is not None

    @property
    def rle(self) -> dict | None:
        """COCO RLE (compressed) of the mask, or None when not decoded."""
        return None if self.mask is None else mask_to_rle(self.mask)

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        """Inclusive xyxy box of the mask; None when not decoded or empty."""
        if self.mask is None or not self.mask.any():
            return None
        return mask_to_box(self.mask)


@dataclass
class ChatResult:
    """One answer.

    Attributes:
        text: the answer as a user reads it (special tokens dropped, mask words kept).
        token_ids: the generated ids (prompt, padding and end-of-sequence removed).
        masks: every mask span, in order, decoded or not.
        phrases: GCG phrase ↔ mask alignment (indices into ``masks``).
        relations: PSG triplets found in the answer (indices into ``masks``).
        image_size: (H, W) of the image the masks belong to.
    """

    text: str
    token_ids: list[int]
    masks: list[MaskPrediction] = field(default_factory=list)
    phrases: list[GroundedPhrase] = field(default_factory=list)
    relations: list[SceneGraphRelation] = field(default_factory=list)
    image_size: tuple[int, int] = (0, 0)

    @property
    def decoded_masks(self) -> np.ndarray:
        """(M, H, W) bool: the decoded masks, in answer order."""
        stack = [m.mask for m in self.masks if m.mask is not None]
        if not stack:
            return np.zeros((0, *self.image_size), dtype=bool)
        return np.stack(stack)

    @property
    def rles(self) -> list[dict]:
        """COCO RLEs of the decoded masks, in answer order."""
        return [m.rle for m in self.masks if m.mask is not None]

    @property
    def boxes(self) -> list[tuple[int, int, int, int] | None]:
        """Inclusive xyxy boxes of the decoded masks (None for an empty decoded mask)."""
        return [m.box for m in self.masks if m.mask is not None]

    @property
    def malformed(self) -> list[MaskPrediction]:
        """The spans whose status is not ``ok`` (repaired or undecodable)."""
        return [m for m in self.masks if not m.span.ok]

    def to_json(self) -> dict:
        """A JSON-ready summary: text, and per mask its words, status, codes, RLE, box, phrase."""
        return {
            "text": self.text,
            "image_size": list(self.image_size),
            "masks": [{
                "words": m.words, "status": m.status, "codes": list(m.codes),
                "repairs": list(m.span.repairs), "rle": m.rle,
                "box": None if m.box is None else list(m.box), "phrase": m.phrase,
            } for m in self.masks],
            "phrases": [{"phrase": p.phrase, "masks": list(p.span_indices)} for p in self.phrases],
            "relations": [{
                "subject": r.subject, "subject_mask": r.subject_span, "relation": r.relation,
                "object": r.object, "object_mask": r.object_span, "status": r.status,
            } for r in self.relations],
        }


def build_chat_result(layout: AnswerLayout, masks: Sequence[np.ndarray | None], *,
                      image_size: tuple[int, int]) -> ChatResult:
    """An answer's layout plus its decoded masks (one per span, None when not decoded) →
    :class:`ChatResult`, with GCG phrases and PSG relations aligned to the masks."""
    phrases = align_phrases(layout)
    owner = {i: p.phrase for p in phrases for i in p.span_indices}
    predictions = [MaskPrediction(span=located.span,
                                  words=layout.text[located.char_start:located.char_end],
                                  char_start=located.char_start, char_end=located.char_end,
                                  mask=mask, phrase=owner.get(i))
                   for i, (located, mask) in enumerate(zip(layout.spans, masks))]
    return ChatResult(text=layout.text, token_ids=layout.token_ids, masks=predictions,
                      phrases=phrases, relations=parse_scene_graph(layout), image_size=image_size)
