"""Model answers (text holding mask words) → the structures the metrics take.

Mask words are decoded by any tokenizer following
:class:`masktok.tokenizers.base.MaskTokenizer` (``decode_words``), so the same code scores SAMTok
and HiMTok models. The tokenizer reports every mask span it found (with character offsets and a
parse status) and which of them it decoded; malformed spans are never dropped silently — they are
counted in :class:`DecodedAnswer` and in the per-sample reports.

* GCG (SAMTok's format): ``<|object_ref_start|>a dog<|object_ref_end|><mask words> runs on …``.
  Every decoded mask belongs to the nearest phrase before it when only spaces, ``,;:`` or other
  mask words lie between them; a phrase with several masks is grounded by their union. The
  caption is the answer without mask words and phrase tags.
* PSG: one triplet per line, ``subject<mask words> relation object<mask words>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masktok.masks.iou import encode_masks, union_rle
from masktok.annotations.class_names import normalize_class_name

PHRASE_START = "<|object_ref_start|>"
PHRASE_END = "<|object_ref_end|>"
_PHRASE = re.compile(re.escape(PHRASE_START) + r"(.*?)" + re.escape(PHRASE_END), re.S)
_GAP = re.compile(r"^[\s,;:]*$")


@dataclass
class DecodedAnswer:
    """Masks decoded from one answer.

    Attributes:
        masks: (M, H, W) bool, one per decoded span, in text order.
        offsets: (start, end) character offsets of each decoded span.
        all_offsets: offsets of every span found, decodable or not.
        statuses: the parse status of every span found (``"ok"``, ``"truncated"``, …).
    """

    masks: np.ndarray
    offsets: list[tuple[int, int]]
    all_offsets: list[tuple[int, int]]
    statuses: list[str]

    @property
    def num_undecoded(self) -> int:
        return len(self.all_offsets) - len(self.offsets)

    def rles(self) -> list[dict]:
        return encode_masks(self.masks)


def decode_answer(tokenizer: Any, image: Any, text: str, size: tuple[int, int],
                  lenient: bool = False) -> DecodedAnswer:
    """``tokenizer.decode_words(image, text, size=size)`` → :class:`DecodedAnswer`."""
    if not isinstance(text, str):
        raise ValueError(f"answer must be a string, got {type(text).__name__}")
    decoded = tokenizer.decode_words(image, text, size=tuple(size), lenient=lenient)
    masks = decoded.masks
    masks = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
    if masks.dtype != np.bool_:
        raise ValueError(f"decode_words returned masks of dtype {masks.dtype}; expected bool")
    if masks.ndim != 3 or masks.shape[1:] != tuple(size):
        raise ValueError(f"decode_words returned masks of shape {masks.shape}; "
                         f"expected (M, {size[0]}, {size[1]})")
    spans = list(decoded.spans)
    indices = list(decoded.decoded_span_indices)
    if len(indices) != masks.shape[0]:
        raise ValueError(f"decode_words returned {masks.shape[0]} masks but {len(indices)} span indices")
    all_offsets = [(int(s.start), int(s.end)) for s in spans]
    return DecodedAnswer(masks=masks, offsets=[all_offsets[i] for i in indices],
                         all_offsets=all_offsets,
                         statuses=[str(getattr(s.status, "value", s.status)) for s in spans])


def _remove_ranges(text: str, ranges: list[tuple[int, int]]) -> str:
    out, pos = [], 0
    for start, end in sorted(ranges):
        out.append(text[pos:start])
        pos = max(pos, end)
    out.append(text[pos:])
    return "".join(out)


def clean_caption(text: str, span_offsets: list[tuple[int, int]]) -> str:
    """The answer without mask words and phrase tags, spaces collapsed, no space before
    punctuation."""
    plain = _remove_ranges(text, span_offsets).replace(PHRASE_START, "").replace(PHRASE_END, "")
    plain = " ".join(plain.split())
    return re.sub(r"\s+([.,;:!?])", r"\1", plain).strip()


@dataclass
class GCGAnswer:
    """A GCG answer split into caption, grounded phrases and the masks grounding them."""

    caption: str
    phrases: list[str]
    masks: list[dict]
    phrases_without_mask: list[str] = field(default_factory=list)
    stray_masks: int = 0
    undecoded_spans: int = 0


def split_gcg_answer(text: str, answer: DecodedAnswer) -> GCGAnswer:
    """Pair the decoded masks of a GCG answer with its phrases (see the module docstring)."""
    h, w = answer.masks.shape[1:]
    phrases = [(m.start(), m.end(), m.group(1).strip()) for m in _PHRASE.finditer(text)]
    grouped: dict[int, list[int]] = {}
    stray = 0
    for k, (start, _end) in enumerate(answer.offsets):
        owner = None
        for p, (_ps, pe, _name) in enumerate(phrases):
            if pe <= start:
                gap = _remove_ranges(text[pe:start], [(a - pe, b - pe) for a, b in answer.all_offsets
                                                      if pe <= a and b <= start])
                if _GAP.match(gap):
                    owner = p
        if owner is None:
            stray += 1
        else:
            grouped.setdefault(owner, []).append(k)
    rles = answer.rles()
    out_phrases, out_masks, without = [], [], []
    for p, (_s, _e, name) in enumerate(phrases):
        if p in grouped:
            out_phrases.append(name)
            out_masks.append(union_rle([rles[k] for k in grouped[p]], (h, w)))
        else:
            without.append(name)
    return GCGAnswer(caption=clean_caption(text, answer.all_offsets), phrases=out_phrases,
                     masks=out_masks, phrases_without_mask=without, stray_masks=stray,
                     undecoded_spans=answer.num_undecoded)


def _match_prefix(text: str, names: dict[str, int]) -> tuple[int, str] | None:
    """Longest name that ``text`` starts with (on a word boundary) → (index, rest)."""
    best = None
    for key, idx in names.items():
        if (text == key or text.startswith(key + " ")) and (best is None or len(key) > len(best[0])):
            best = (key, idx)
    return None if best is None else (best[1], text[len(best[0]):].strip())


@dataclass
class PSGAnswer:
    """Triplets read from a PSG answer: instances (label index, RLE; identical masks merged into
    one instance) and relations ``(subject, object, predicate)``; ``-1`` = unknown name."""

    labels: list[int]
    masks: list[dict]
    relations: list[tuple[int, int, int]]
    malformed_lines: int = 0
    unknown_names: int = 0


def split_psg_answer(text: str, answer: DecodedAnswer, object_names: dict[str, int],
                     predicate_names: dict[str, int]) -> PSGAnswer:
    """Read ``subject<mask> relation object<mask>`` lines; a line without exactly two decoded
    masks is counted as malformed. ``*_names`` map normalised names to indices."""
    rles = answer.rles()
    labels: list[int] = []
    masks: list[dict] = []
    key_to_instance: dict[tuple[int, bytes], int] = {}
    relations, malformed, unknown = [], 0, 0

    def instance(label: int, rle: dict) -> int:
        key = (label, bytes(rle["counts"]))
        if key not in key_to_instance:
            key_to_instance[key] = len(labels)
            labels.append(label)
            masks.append(rle)
        return key_to_instance[key]

    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        inside = [k for k, (a, b) in enumerate(answer.offsets) if start <= a and b <= end]
        if not line.strip():
            continue
        if len(inside) != 2:
            malformed += 1
            continue
        (s0, e0), (s1, _e1) = answer.offsets[inside[0]], answer.offsets[inside[1]]
        subject = normalize_class_name(text[start:s0])
        middle = normalize_class_name(text[e0:s1])
        sub_label = object_names.get(subject, -1)
        found = _match_prefix(middle, predicate_names)
        if found is not None:
            predicate, obj_text = found
            obj_label = object_names.get(obj_text, -1)
        else:
            predicate, obj_label = -1, -1
            for key, idx in sorted(object_names.items(), key=lambda kv: -len(kv[0])):
                if middle.endswith(" " + key):
                    obj_label = idx
                    predicate = predicate_names.get(middle[: -len(key) - 1].strip(), -1)
                    break
        unknown += sum(1 for v in (sub_label, obj_label, predicate) if v < 0)
        relations.append((instance(sub_label, rles[inside[0]]), instance(obj_label, rles[inside[1]]),
                          predicate))
    return PSGAnswer(labels=labels, masks=masks, relations=relations, malformed_lines=malformed,
                     unknown_names=unknown)
