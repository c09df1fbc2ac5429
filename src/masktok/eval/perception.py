"""Mask perception (HiMTok's MaP): multiple-choice accuracy.

Given an image, a mask (as mask words) and lettered expression options, the model names the
option that describes the mask. Each test question has exactly one correct option; accuracy is
the fraction of questions whose parsed choice equals it. An answer from which no valid letter can
be read counts as wrong and is reported as *unparsed*.

Parsing (:func:`parse_choice`), first rule that applies:

1. the answer starts with a bracketed capital letter or a capital letter followed by ``.``,
   ``:``, ``)`` or nothing: ``"B"``, ``"(B)"``, ``"B. the man on the left"`` (but not the article
   in ``"A man on the left"``);
2. an explicit "answer/option (is) X": ``"The answer is C."``, ``"Option: (A)"``;
3. the answer equals one option's text (case and surrounding space/period ignored).

A letter beyond the number of options is not a valid choice.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

_LEADING = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])(?=[.:)]|\s*$))")
_EXPLICIT = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\)?(?![A-Za-z])", re.I)


def _norm(text: str) -> str:
    return " ".join(text.strip().strip(".").lower().split())


def parse_choice(answer: str, num_options: int, options: Sequence[str] | None = None) -> str | None:
    """The option letter an answer picks (``"A"``, ``"B"``, …) or ``None``."""
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a string, got {type(answer).__name__}")
    if not 1 <= num_options <= 26:
        raise ValueError(f"num_options must be in 1..26, got {num_options}")
    valid = string.ascii_uppercase[:num_options]
    m = _LEADING.search(answer)
    letter = (m.group(1) or m.group(2)) if m else None
    if letter is None:
        m = _EXPLICIT.search(answer)
        letter = m.group(1).upper() if m else None
    if letter is not None and letter in valid:
        return letter
    if options is not None:
        target = _norm(answer)
        hits = [i for i, opt in enumerate(options) if _norm(opt) == target]
        if len(hits) == 1:
            return valid[hits[0]]
    return None


@dataclass(frozen=True)
class MCQMetrics:
    """Multiple-choice accuracy (fraction in [0, 1])."""

    accuracy: float
    num_samples: int
    num_unparsed: int

    def as_dict(self) -> dict[str, float | int]:
        return {"Acc": self.accuracy, "num_samples": self.num_samples, "num_unparsed": self.num_unparsed}


def multiple_choice_accuracy(choices: Sequence[str | None], correct: Sequence[str]) -> MCQMetrics:
    """Accuracy of parsed choices (``None`` = unparsed, wrong) against the correct letters."""
    if len(choices) != len(correct):
        raise ValueError(f"{len(choices)} choices for {len(correct)} questions")
    if not correct:
        raise ValueError("multiple-choice accuracy needs at least one question")
    for i, c in enumerate(correct):
        if not (isinstance(c, str) and len(c) == 1 and c.isupper()):
            raise ValueError(f"correct[{i}] must be one upper-case letter, got {c!r}")
    hits = sum(1 for p, c in zip(choices, correct) if p == c)
    return MCQMetrics(accuracy=hits / len(correct), num_samples=len(correct),
                      num_unparsed=sum(1 for p in choices if p is None))
