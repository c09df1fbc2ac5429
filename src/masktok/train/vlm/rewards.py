"""Rewards for reinforcement learning on mask generation: pure functions over text.

The SAMTok *textual answer-matching reward* needs no decoding: the predicted mask words and the
ground-truth mask words are compared as code tuples. For one rollout with ``P`` predicted masks
and ``G`` ground-truth masks::

    reward = (#predicted tuples that equal a ground-truth tuple, each GT used once) / max(P, G)

A correct "No target." answer (no mask words predicted, none expected) scores 1.0. A malformed
span (truncated, out of range, …) counts as a prediction that matches nothing, so broken output
is never rewarded and never crashes the trainer.

Variants: per-level partial credit, a format reward (well-formed spans, optional R1
``<think>…</think><answer>…</answer>`` layout), an IoU reward that decodes masks (for
comparison), and a GCG reward that also checks the phrase each mask belongs to. Adapters give
the call signatures of TRL's ``GRPOTrainer``, verl and EasyR1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from masktok.masks.iou import dense_iou_matrix, greedy_matched_ious
from masktok.words.phrase_similarity import TextSimilarity, lexical_similarity
from masktok.words import (
    SAMTOK_VOCABULARY,
    MaskSpan,
    MaskVocabulary,
    get_vocabulary,
    parse_mask_words,
)

Codes = tuple[int, ...]
GroundTruth = str | Sequence[Sequence[int]]

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_R1_RE = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)
_PHRASE_RE = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>", re.DOTALL)


@dataclass(frozen=True)
class MatchResult:
    """The pieces of one answer-matching score: ``reward = matches / max(predicted, expected)``."""

    reward: float
    matches: float
    num_predicted: int
    num_ground_truth: int
    num_malformed: int


def resolve_vocabulary(vocab: MaskVocabulary | str) -> MaskVocabulary:
    """A vocabulary object, or the name of an official one ("samtok" / "himtok")."""
    if isinstance(vocab, MaskVocabulary):
        return vocab
    return get_vocabulary(vocab)


def completion_text(completion: Any) -> str:
    """The assistant text of a completion: a string, or TRL's conversational message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):
            return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
        raise ValueError(f"completion message content has unsupported type {type(content).__name__}")
    raise ValueError(
        f"completion must be a string or a list of chat messages, got {type(completion).__name__}"
    )


def answer_text(completion: Any) -> str:
    """The answer of a completion: the content of ``<answer>…</answer>`` if present, else all."""
    text = completion_text(completion)
    found = _ANSWER_RE.search(text)
    return found.group(1) if found else text


def predicted_codes(text: str, vocab: MaskVocabulary) -> list[Codes | None]:
    """One entry per mask span of ``text``: its codes if well formed, else None (malformed)."""
    spans = parse_mask_words(text, vocab, lenient=True)
    return [_complete_codes(span, vocab) for span in spans]


def _complete_codes(span: MaskSpan, vocab: MaskVocabulary) -> Codes | None:
    if not span.ok:
        return None
    if len(span.codes) < vocab.min_codes:
        return None
    return tuple(span.codes)


def ground_truth_codes(ground_truth: GroundTruth, vocab: MaskVocabulary) -> list[Codes]:
    """Ground truth as code tuples: a text with mask words ("No target." → []) or code lists.

    A ground-truth text whose spans are not all well formed is a data error and raises.
    """
    if isinstance(ground_truth, str):
        spans = parse_mask_words(ground_truth, vocab, lenient=True)
        bad = [s for s in spans if _complete_codes(s, vocab) is None]
        if bad:
            raise ValueError(
                f"ground truth {ground_truth[:80]!r} holds malformed mask words "
                f"(status {bad[0].status})"
            )
        return [tuple(s.codes) for s in spans]
    codes = [tuple(int(c) for c in item) for item in ground_truth]
    for item in codes:
        if not item or any(c < 0 or c >= vocab.codebook_size for c in item):
            raise ValueError(f"ground-truth codes {item} are empty or outside [0, {vocab.codebook_size})")
    return codes


def match_answer(completion: Any, ground_truth: GroundTruth,
                 vocab: MaskVocabulary | str = SAMTOK_VOCABULARY) -> MatchResult:
    """The textual answer-matching score with its counts (see the module docstring)."""
    vocab = resolve_vocabulary(vocab)
    predictions = predicted_codes(answer_text(completion), vocab)
    expected = ground_truth_codes(ground_truth, vocab)
    malformed = sum(p is None for p in predictions)
    if not predictions and not expected:
        return MatchResult(1.0, 0.0, 0, 0, 0)
    available = Counter(expected)
    matches = 0
    for pred in predictions:
        if pred is not None and available[pred] > 0:
            available[pred] -= 1
            matches += 1
    denominator = max(len(predictions), len(expected))
    return MatchResult(matches / denominator, float(matches), len(predictions), len(expected), malformed)


def answer_matching_reward(completion: Any, ground_truth: GroundTruth,
                           vocab: MaskVocabulary | str = SAMTOK_VOCABULARY) -> float:
    """SAMTok's textual answer-matching reward in [0, 1]."""
    return match_answer(completion, ground_truth, vocab).reward


def _shared_prefix(a: Codes, b: Codes) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def partial_credit_reward(completion: Any, ground_truth: GroundTruth,
                          vocab: MaskVocabulary | str = SAMTOK_VOCABULARY) -> float:
    """Per-level partial credit: a pair earns (length of its shared code prefix) / (code length).

    SAMTok: right level-0 code with a wrong level-1 code earns 0.5 instead of 0. Each prediction
    and each ground-truth mask is used once; pairs are assigned greedily by longest shared prefix,
    which is optimal here because prefix agreement is an ultrametric similarity. Normalised by
    max(#predicted, #ground truth) as the exact reward.
    """
    vocab = resolve_vocabulary(vocab)
    predictions = predicted_codes(answer_text(completion), vocab)
    expected = ground_truth_codes(ground_truth, vocab)
    if not predictions and not expected:
        return 1.0
    candidates = []
    for i, pred in enumerate(predictions):
        if pred is None:
            continue
        for j, gt in enumerate(expected):
            shared = _shared_prefix(pred, gt)
            if shared:
                candidates.append((shared / max(len(gt), len(pred)), i, j))
    candidates.sort(key=lambda c: -c[0])
    used_pred: set[int] = set()
    used_gt: set[int] = set()
    credit = 0.0
    for score, i, j in candidates:
        if i in used_pred or j in used_gt:
            continue
        used_pred.add(i)
        used_gt.add(j)
        credit += score
    return credit / max(len(predictions), len(expected))


def format_reward(completion: Any, vocab: MaskVocabulary | str = SAMTOK_VOCABULARY, *,
                  r1: bool = False, require_masks: bool = False) -> float:
    """1.0 when every mask span is well formed (and, with ``r1``, the text is
    ``<think>…</think><answer>…</answer>``; with ``require_masks``, at least one span exists)."""
    vocab = resolve_vocabulary(vocab)
    raw = completion_text(completion)
    if r1 and not _R1_RE.fullmatch(raw):
        return 0.0
    predictions = predicted_codes(answer_text(raw), vocab)
    if require_masks and not predictions:
        return 0.0
    return 0.0 if any(p is None for p in predictions) else 1.0


def iou_reward(completion: Any, gt_masks: np.ndarray, tokenizer: Any, image: Any) -> float:
    """Decodes the predicted words with ``tokenizer`` and scores Σ matched IoU / max(P, G).

    Kept for comparison with the textual reward: it needs a tokenizer and the image. Malformed
    spans count as unmatched predictions.
    """
    gt_masks = np.asarray(gt_masks, dtype=bool)
    if gt_masks.ndim != 3:
        raise ValueError(f"gt_masks must be (G, H, W), got shape {gt_masks.shape}")
    decoded = tokenizer.decode_words(image, answer_text(completion), size=gt_masks.shape[1:],
                                     lenient=True)
    num_pred = len(decoded.spans)
    if num_pred == 0 and len(gt_masks) == 0:
        return 1.0
    if num_pred == 0 or len(gt_masks) == 0:
        return 0.0
    masks = np.asarray(decoded.masks.cpu().numpy(), dtype=bool)
    total = sum(greedy_matched_ious(dense_iou_matrix(masks, gt_masks))) if len(masks) else 0.0
    return total / max(num_pred, len(gt_masks))


def phrase_mask_pairs(text: str, vocab: MaskVocabulary) -> list[tuple[str, Codes | None]]:
    """GCG answers: ``<|object_ref_start|>phrase<|object_ref_end|>`` followed by its mask words.

    Each span is attached to the closest phrase before it; spans with no phrase before them get
    the phrase "". Returns (phrase, codes-or-None) per span.
    """
    phrases = [(m.end(), m.group(1).strip()) for m in _PHRASE_RE.finditer(text)]
    pairs = []
    for span in parse_mask_words(text, vocab, lenient=True):
        before = [p for end, p in phrases if end <= span.start]
        pairs.append((before[-1] if before else "", _complete_codes(span, vocab)))
    return pairs


def gcg_reward(completion: Any, ground_truth: str, vocab: MaskVocabulary | str = SAMTOK_VOCABULARY,
               *, similarity: TextSimilarity = lexical_similarity,
               threshold: float = 0.5) -> float:
    """GCG: a predicted (phrase, mask) counts when its codes equal a ground-truth mask's codes and
    the phrases are similar (``similarity ≥ threshold``, the same pluggable phrase similarity as
    the GCG evaluation). Normalised by max(P, G)."""
    vocab = resolve_vocabulary(vocab)
    predictions = phrase_mask_pairs(answer_text(completion), vocab)
    expected = phrase_mask_pairs(ground_truth, vocab)
    if any(codes is None for _, codes in expected):
        raise ValueError(f"ground truth {ground_truth[:80]!r} holds malformed mask words")
    if not predictions and not expected:
        return 1.0
    sim = similarity([p for p, _ in predictions], [p for p, _ in expected])
    used: set[int] = set()
    matches = 0
    for i, (_, codes) in enumerate(predictions):
        if codes is None:
            continue
        for j, (_, gt_codes) in enumerate(expected):
            if j not in used and gt_codes == codes and sim[i, j] >= threshold:
                used.add(j)
                matches += 1
                break
    return matches / max(len(predictions), len(expected))


# ---------------------------------------------------------------------------------------------
# Framework adapters


class TRLReward:
    """A reward function with TRL ``GRPOTrainer``'s signature.

    ``reward(prompts, completions, completion_ids=None, **columns) -> list[float]`` where the
    dataset column ``ground_truth_column`` (default "solution") holds the ground truth of each
    row (mask-word text or code lists). ``kind``: "match", "partial", "format", "gcg".
    """

    def __init__(self, kind: str = "match", vocab: MaskVocabulary | str = SAMTOK_VOCABULARY,
                 ground_truth_column: str = "solution", r1: bool = False):
        scorers = {"match": answer_matching_reward, "partial": partial_credit_reward, "gcg": gcg_reward}
        if kind not in {*scorers, "format"}:
            raise ValueError(f"kind must be one of {sorted({*scorers, 'format'})}, got {kind!r}")
        self.kind = kind
        self.vocab = resolve_vocabulary(vocab)
        self.ground_truth_column = ground_truth_column
        self.r1 = r1
        self._scorer = scorers.get(kind)
        self.__name__ = f"masktok_{kind}_reward"

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (),
                 completion_ids: Sequence[Sequence[int]] | None = None, **columns: Any) -> list[float]:
        if self.kind == "format":
            return [format_reward(c, self.vocab, r1=self.r1) for c in completions]
        if self.ground_truth_column not in columns:
            raise ValueError(
                f"the dataset has no column {self.ground_truth_column!r} with the ground truth "
                f"(columns: {sorted(columns)})"
            )
        truths = columns[self.ground_truth_column]
        if len(truths) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(truths)} ground truths")
        return [self._scorer(c, t, self.vocab) for c, t in zip(completions, truths)]


def verl_compute_score(data_source: str, solution_str: str, ground_truth: GroundTruth,
                       extra_info: Mapping[str, Any] | None = None) -> float:
    """verl's custom reward signature. ``extra_info`` may set "vocabulary" ("samtok"/"himtok"),
    "kind" ("match"/"partial"/"gcg") and "format_weight" (mixes in the format reward)."""
    info = dict(extra_info or {})
    vocab = resolve_vocabulary(info.get("vocabulary", "samtok"))
    kind = info.get("kind", "match")
    scorers = {"match": answer_matching_reward, "partial": partial_credit_reward, "gcg": gcg_reward}
    if kind not in scorers:
        raise ValueError(f"extra_info['kind'] must be one of {sorted(scorers)}, got {kind!r}")
    accuracy = scorers[kind](solution_str, ground_truth, vocab)
    weight = float(info.get("format_weight", 0.0))
    return (1 - weight) * accuracy + weight * format_reward(solution_str, vocab, r1=bool(info.get("r1")))


def easyr1_compute_score(reward_input: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                         vocabulary: str = "samtok", format_weight: float = 0.1,
                         r1: bool = False) -> dict[str, float] | list[dict[str, float]]:
    """EasyR1's signature: ``{"response", "ground_truth", …}`` → ``{"overall", "format",
    "accuracy"}``; a list of inputs (EasyR1's batch mode) gives a list of scores."""
    if not isinstance(reward_input, Mapping):
        return [easyr1_compute_score(item, vocabulary, format_weight, r1) for item in reward_input]
    for key in ("response", "ground_truth"):
        if key not in reward_input:
            raise ValueError(f"reward_input lacks {key!r} (keys: {sorted(reward_input)})")
    vocab = resolve_vocabulary(vocabulary)
    fmt = format_reward(reward_input["response"], vocab, r1=r1)
    accuracy = answer_matching_reward(reward_input["response"], reward_input["ground_truth"], vocab)
    return {"overall": (1 - format_weight) * accuracy + format_weight * fmt,
            "format": fmt, "accuracy": accuracy}


def mean_reward(values: Iterable[float]) -> float:
    """Mean of rewards (0.0 for none): used by training logs."""
    values = list(values)
    return float(sum(values) / len(values)) if values else 0.0
