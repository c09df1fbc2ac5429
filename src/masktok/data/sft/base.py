"""What every SFT builder produces: conversations about images whose masks are written as words.

A :class:`SFTSample` holds its images (paths; the first is the scene, later ones zoom-in crops),
its turns, and — for checking and rendering — every mask its text mentions, in reading order
(user text then answer, turn by turn) with the image each mask belongs to. Builders are
deterministic: every random choice of a sample comes from :func:`sample_rng`, seeded by the build
seed, the task and the sample's key, so a sample does not change when others are added or
removed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masktok.masks.zoom import ZoomConfig
from masktok.tokenizers.base import check_empty_masks

POLICIES = ("error", "skip")


@dataclass(frozen=True)
class SampleMask:
    """One mask mentioned in a sample: the image it lies on (index into ``images``) and its RLE."""

    image_index: int
    rle: dict


@dataclass(frozen=True)
class Turn:
    """A user message and its answer; ``images`` are the sample's images shown in this user
    message (before its text), by index."""

    user: str
    assistant: str
    images: tuple[int, ...] = ()


@dataclass
class SFTSample:
    """One training conversation.

    Attributes:
        sample_id: unique within a build, ``{task}/{key}``.
        task: the builder's task name.
        images: image file paths (index 0: the scene).
        image_sizes: (H, W) of each image.
        turns: the conversation.
        masks: every mask span of the text, in reading order.
        meta: provenance (image id, annotation ids, ...) for the data card.
    """

    sample_id: str
    task: str
    images: list[str]
    image_sizes: list[tuple[int, int]]
    turns: list[Turn]
    masks: list[SampleMask]
    meta: dict[str, Any] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """User and assistant texts in reading order."""
        return [text for turn in self.turns for text in (turn.user, turn.assistant)]


@dataclass(frozen=True)
class BuildConfig:
    """Options shared by the builders.

    Attributes:
        seed: seeds every random choice (templates, orders, negatives, points).
        zoom: the zoom-in rule of region tasks (None: never add crops).
        crops_dir: where zoom-in crops are written (needed when a crop is made).
        missing_images: ``"error"`` or ``"skip"`` an image that is not on disk (counted).
        empty_masks: the tokenizers' empty-mask policy (:mod:`masktok.tokenizers.base`) for
            instances whose mask is empty: ``"error"`` (default) or ``"skip"`` (a sentence about
            it is left out, an instance list leaves it out; counted). ``"keep"`` is refused: an
            answer cannot spell a mask that is not there.
        max_samples: stop after this many samples (None: all).
    """

    seed: int = 0
    zoom: ZoomConfig | None = ZoomConfig()
    crops_dir: Path | None = None
    missing_images: str = "error"
    empty_masks: str = "error"
    max_samples: int | None = None

    def __post_init__(self) -> None:
        if self.missing_images not in POLICIES:
            raise ValueError(f"missing_images: expected one of {POLICIES}, got {self.missing_images!r}")
        if check_empty_masks(self.empty_masks) == "keep":
            raise ValueError("empty_masks: 'keep' has no meaning for SFT answers (mask words cannot spell "
                             "an absent mask); use 'error' or 'skip'")
        if self.max_samples is not None and (not isinstance(self.max_samples, int)
                                             or self.max_samples < 1):
            raise ValueError(f"max_samples: expected a positive int or None, got {self.max_samples!r}")
        if self.crops_dir is not None:
            object.__setattr__(self, "crops_dir", Path(self.crops_dir))


@dataclass
class BuildResult:
    """A builder's samples and what it left out (by reason), for the data card."""

    task: str
    samples: list[SFTSample]
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def full(self, config: BuildConfig) -> bool:
        return config.max_samples is not None and len(self.samples) >= config.max_samples


def sample_rng(seed: int, task: str, key: str) -> random.Random:
    """The random generator of one sample (independent of build order)."""
    return random.Random(f"{seed}/{task}/{key}")


def box_centre(box: Sequence[float]) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0


def reading_order(boxes: Sequence[Sequence[float]]) -> list[int]:
    """Indices of ``boxes`` (inclusive xyxy) sorted left to right, then top to bottom, by box
    centre (the order of GRES / multi-mask answers); ties keep input order."""
    return sorted(range(len(boxes)), key=lambda i: box_centre(boxes[i]))


def check_sample(sample: SFTSample, vocabulary: Any) -> list[Any]:
    """Parse every text of ``sample`` strictly; → the spans in reading order.

    Raises:
        masktok.words.MaskWordsError: a malformed span.
        ValueError: span count differs from ``sample.masks``, a mask points to no image, or the
            first turn does not show the scene image.
    """
    from masktok.words import parse_mask_words

    spans = [span for text in sample.texts() for span in parse_mask_words(text, vocabulary)]
    if len(spans) != len(sample.masks):
        raise ValueError(f"sample {sample.sample_id}: its text holds {len(spans)} mask spans but "
                         f"{len(sample.masks)} masks are recorded")
    for i, mask in enumerate(sample.masks):
        if not 0 <= mask.image_index < len(sample.images):
            raise ValueError(f"sample {sample.sample_id}: mask {i} refers to image "
                             f"{mask.image_index} of {len(sample.images)}")
    if not sample.turns or 0 not in sample.turns[0].images:
        raise ValueError(f"sample {sample.sample_id}: the first turn must show image 0")
    shown = sorted(i for turn in sample.turns for i in turn.images)
    if shown != list(range(len(sample.images))):
        raise ValueError(f"sample {sample.sample_id}: turns show images {shown}, expected each of "
                         f"0..{len(sample.images) - 1} once")
    return spans
