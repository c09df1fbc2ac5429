"""Phrase ↔ mask alignment of grounded answers: GCG captions and PSG scene graphs.

* GCG: ``<|object_ref_start|>a tennis player<|object_ref_end|><mask>, <mask> …`` — each phrase
  owns the masks that follow it, separated only by commas, spaces or "and".
* PSG: one relation per line, ``subject<mask> relation object<mask>``; the relation is the
  longest OpenPSG predicate that starts the text between the two masks, the rest is the object.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from masktok.mllm.answer import AnswerLayout

# The 56 predicates of the OpenPSG benchmark.
PSG_PREDICATES: tuple[str, ...] = (
    "over", "in front of", "beside", "on", "in", "attached to", "hanging from", "on back of",
    "falling off", "going down", "painted on", "walking on", "running on", "crossing",
    "standing on", "lying on", "sitting on", "flying over", "jumping over", "jumping from",
    "wearing", "holding", "carrying", "looking at", "guiding", "kissing", "eating", "drinking",
    "feeding", "biting", "catching", "picking", "playing with", "chasing", "climbing", "cleaning",
    "playing", "touching", "pushing", "pulling", "opening", "cooking", "talking to", "throwing",
    "slicing", "driving", "riding", "parked on", "driving on", "about to hit", "kicking",
    "swinging", "entering", "exiting", "enclosing", "leaning on",
)

_SEPARATOR = re.compile(r"^(?:\s|,|\band\b)*$")


@dataclass(frozen=True)
class GroundedPhrase:
    """A phrase and the indices (into the answer's spans) of the masks that ground it."""

    phrase: str
    char_start: int
    char_end: int
    span_indices: tuple[int, ...]


@dataclass(frozen=True)
class SceneGraphRelation:
    """One ``subject<mask> relation object<mask>`` line.

    ``subject_span``/``object_span`` index the answer's spans. ``relation`` is None when the text
    between the masks starts with no known predicate (``status == "unknown_predicate"``; the
    whole text is then kept in ``object``).
    """

    subject: str
    subject_span: int
    relation: str | None
    object: str
    object_span: int
    status: str = "ok"


def align_phrases(layout: AnswerLayout) -> list[GroundedPhrase]:
    """GCG alignment: every marked phrase with the mask spans right after it."""
    out = []
    starts = [located.char_start for located in layout.spans]
    for phrase in layout.phrases:
        owned: list[int] = []
        cursor = phrase.char_end
        for index, start in enumerate(starts):
            if start < cursor:
                continue
            if not _SEPARATOR.match(layout.text[cursor:start]):
                break
            owned.append(index)
            cursor = layout.spans[index].char_end
        out.append(GroundedPhrase(phrase.text, phrase.char_start, phrase.char_end, tuple(owned)))
    return out


def split_relation(text: str, predicates: Sequence[str] = PSG_PREDICATES) -> tuple[str | None, str]:
    """``"standing on river"`` → (``"standing on"``, ``"river"``) by the longest predicate prefix."""
    text = " ".join(text.split())
    best = None
    for predicate in predicates:
        if (text == predicate or text.startswith(predicate + " ")) and (
                best is None or len(predicate) > len(best)):
            best = predicate
    if best is None:
        return None, text
    return best, text[len(best):].strip()


def parse_scene_graph(layout: AnswerLayout,
                      predicates: Sequence[str] = PSG_PREDICATES) -> list[SceneGraphRelation]:
    """PSG: every answer line holding exactly two masks → a relation (other lines are skipped:
    they carry no triplet)."""
    relations = []
    line_start = 0
    for line in layout.text.split("\n"):
        line_end = line_start + len(line)
        inside = [i for i, located in enumerate(layout.spans)
                  if line_start <= located.char_start and located.char_end <= line_end]
        if len(inside) == 2:
            first, second = (layout.spans[i] for i in inside)
            subject = layout.text[line_start:first.char_start].strip(" ,;")
            relation, obj = split_relation(layout.text[first.char_end:second.char_start],
                                           predicates)
            relations.append(SceneGraphRelation(
                subject=subject, subject_span=inside[0], relation=relation, object=obj,
                object_span=inside[1], status="ok" if relation is not None else
                "unknown_predicate"))
        line_start = line_end + 1
    return relations
