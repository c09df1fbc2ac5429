"""Table-driven tests of the RL rewards (SAMTok's textual answer-matching reward and variants)."""

from __future__ import annotations

import numpy as np
import pytest

from masktok.train.vlm import rewards
from masktok.words import HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, format_mask_words


def words(*pairs: tuple[int, ...], vocab=SAMTOK_VOCABULARY) -> str:
    return " ".join(format_mask_words(list(p), vocab) for p in pairs)


GT7 = [(i, i + 10) for i in range(7)]


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        # seed figure: 9 predictions, one of them exact → 1 / max(9, 7)
        ([GT7[0]] + [(100 + i, 5) for i in range(8)], GT7, 1 / 9),
        # seed figure: 7 predictions, 3 exact → 3 / max(7, 7)
        (GT7[:3] + [(200 + i, 1) for i in range(4)], GT7, 3 / 7),
        # the right first code with a wrong second code scores 0 for that pair
        ([(0, 11)], [(0, 10)], 0.0),
        ([(0, 10)], [(0, 10)], 1.0),
        # order does not matter
        ([(2, 3), (0, 1)], [(0, 1), (2, 3)], 1.0),
        # a duplicated prediction matches one ground truth once
        ([(0, 1), (0, 1)], [(0, 1)], 0.5),
        # but two equal ground-truth masks can both be matched
        ([(0, 1), (0, 1)], [(0, 1), (0, 1)], 1.0),
        # fewer predictions than ground truth
        ([(0, 1)], [(0, 1), (2, 3), (4, 5), (6, 7)], 0.25),
    ],
)
def test_answer_matching_table(pred, gt, expected):
    completion = "Here: " + words(*pred) + "."
    assert rewards.answer_matching_reward(completion, gt) == pytest.approx(expected)
    # the ground truth may also be given as text
    assert rewards.answer_matching_reward(completion, words(*gt)) == pytest.approx(expected)


def test_no_target_cases():
    assert rewards.answer_matching_reward("No target.", "No target.") == 1.0
    assert rewards.answer_matching_reward("No target.", []) == 1.0
    assert rewards.answer_matching_reward(words((1, 2)), "No target.") == 0.0
    assert rewards.answer_matching_reward("No target.", [(1, 2)]) == 0.0


def test_malformed_predictions_count_but_never_match_or_crash():
    truncated = "<|mt_start|><|mt_0001|><|mt_end|>"  # level-0 only: not a full answer
    result = rewards.match_answer(words((1, 2)) + " " + truncated, [(1, 2)])
    assert result.num_predicted == 2 and result.num_malformed == 1
    assert result.reward == pytest.approx(0.5)
    garbage = "<|mt_start|><|mt_9999|><|mt_0300|>"
    assert rewards.answer_matching_reward(garbage, [(1, 2)]) == 0.0


def test_answer_tags_and_conversational_completions():
    completion = [{"role": "assistant", "content": "<think>left one</think><answer>" + words((4, 5)) + "</answer>"}]
    assert rewards.answer_matching_reward(completion, [(4, 5)]) == 1.0
    parts = [{"role": "assistant", "content": [{"type": "text", "text": words((4, 5))}]}]
    assert rewards.answer_matching_reward(parts, [(4, 5)]) == 1.0
    with pytest.raises(ValueError, match="completion"):
        rewards.answer_matching_reward(42, [(4, 5)])


def test_bad_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        rewards.answer_matching_reward("x", [(1, 300)])
    with pytest.raises(ValueError, match="malformed"):
        rewards.answer_matching_reward("x", "<|mt_start|><|mt_0001|><|mt_end|>")


def test_partial_credit_per_level():
    assert rewards.partial_credit_reward(words((0, 11)), [(0, 10)]) == pytest.approx(0.5)
    assert rewards.partial_credit_reward(words((0, 10)), [(0, 10)]) == 1.0
    assert rewards.partial_credit_reward(words((1, 10)), [(0, 10)]) == 0.0
    # greedy by longest prefix: the exact pair is taken first, the other earns half
    score = rewards.partial_credit_reward(words((0, 10), (0, 12)), [(0, 10), (0, 11)])
    assert score == pytest.approx((1.0 + 0.5) / 2)
    assert rewards.partial_credit_reward("No target.", []) == 1.0


def test_himtok_vocabulary_sequences():
    gt = [tuple(range(8)), tuple(range(8, 16))]
    text = words(*gt, vocab=HIMTOK_VOCABULARY)
    assert rewards.answer_matching_reward(text, gt, "himtok") == 1.0
    partial = words(tuple(range(4)) + (900, 901, 902, 903), vocab=HIMTOK_VOCABULARY)
    assert rewards.partial_credit_reward(partial, [tuple(range(8))], "himtok") == pytest.approx(0.5)


def test_format_reward():
    good = words((1, 2))
    assert rewards.format_reward(good) == 1.0
    assert rewards.format_reward(good + "<|mt_start|><|mt_0001|>") == 0.0
    assert rewards.format_reward("<think>a</think><answer>" + good + "</answer>", r1=True) == 1.0
    assert rewards.format_reward(good, r1=True) == 0.0
    assert rewards.format_reward("No target.", require_masks=True) == 0.0


def test_gcg_reward_checks_phrases():
    gt = ("<|object_ref_start|>A man<|object_ref_end|>" + words((1, 2))
          + " rides <|object_ref_start|>a horse<|object_ref_end|>" + words((3, 4)))
    right = ("<|object_ref_start|>the man<|object_ref_end|>" + words((1, 2))
             + " on <|object_ref_start|>horse<|object_ref_end|>" + words((3, 4)))
    swapped = ("<|object_ref_start|>a horse<|object_ref_end|>" + words((1, 2))
               + " <|object_ref_start|>a man<|object_ref_end|>" + words((3, 4)))
    assert rewards.gcg_reward(right, gt) == 1.0
    assert rewards.gcg_reward(swapped, gt) == 0.0
    assert rewards.answer_matching_reward(swapped, gt) == 1.0  # codes alone do not see phrases


class _GridTokenizer:
    """Decodes SAMTok words (c0, c1) to a 4×4 mask with row c0 filled: enough for the IoU reward."""

    vocabulary = SAMTOK_VOCABULARY

    def decode_words(self, image, text, *, size=None, lenient=False):
        import torch

        from masktok.tokenizers.base import DecodedWords
        from masktok.words import parse_mask_words

        spans = parse_mask_words(text, SAMTOK_VOCABULARY, lenient=lenient)
        good = [i for i, s in enumerate(spans) if s.ok]
        masks = torch.zeros((len(good), *size), dtype=torch.bool)
        for row, i in enumerate(good):
            masks[row, spans[i].codes[0]] = True
        return DecodedWords(masks, spans, good)


def test_iou_reward_decodes_and_matches_greedily():
    gt = np.zeros((2, 4, 4), bool)
    gt[0, 1] = True
    gt[1, 2] = True
    tok = _GridTokenizer()
    assert rewards.iou_reward(words((2, 0), (1, 0)), gt, tok, None) == pytest.approx(1.0)
    assert rewards.iou_reward(words((1, 0), (3, 0), (0, 0)), gt, tok, None) == pytest.approx(1 / 3)
    assert rewards.iou_reward("No target.", gt[:0], tok, None) == 1.0
    assert rewards.iou_reward("No target.", gt, tok, None) == 0.0


def test_trl_adapter_signature():
    reward = rewards.TRLReward("match")
    out = reward(prompts=["p1", "p2"], completions=[words((1, 2)), "No target."],
                 completion_ids=[[1], [2]], solution=[[(1, 2)], []])
    assert out == [1.0, 1.0]
    assert reward.__name__ == "masktok_match_reward"
    with pytest.raises(ValueError, match="column"):
        reward(prompts=["p"], completions=["x"])
    assert rewards.TRLReward("format")(prompts=["p"], completions=["<|mt_start|>"]) == [0.0]


def test_verl_and_easyr1_adapters():
    assert rewards.verl_compute_score("refcoco", words((1, 2)), [(1, 2)]) == 1.0
    score = rewards.verl_compute_score("x", words((1, 3)), [(1, 2)], {"kind": "partial"})
    assert score == pytest.approx(0.5)
    out = rewards.easyr1_compute_score({"response": words((1, 2)), "ground_truth": words((1, 2))})
    assert out == {"overall": 1.0, "format": 1.0, "accuracy": 1.0}
    batch = rewards.easyr1_compute_score([{"response": "No target.", "ground_truth": "No target."},
                                          {"response": words((9, 9)), "ground_truth": words((1, 2))}])
    assert [b["accuracy"] for b in batch] == [1.0, 0.0]
    with pytest.raises(ValueError, match="ground_truth"):
        rewards.easyr1_compute_score({"response": "x"})


def test_trl_adapter_kinds_on_conversational_completions():
    # TRL hands conversational completions (lists of messages) and the dataset's columns
    completions = [[{"role": "assistant", "content": words((1, 3))}],
                   [{"role": "assistant", "content": words((1, 2))}]]
    truths = [words((1, 2)), words((1, 2))]
    assert rewards.TRLReward("match")(None, completions, solution=truths) == [0.0, 1.0]
    assert rewards.TRLReward("partial")(None, completions, solution=truths) == [0.5, 1.0]
    gcg_truth = "<|object_ref_start|>a dog<|object_ref_end|>" + words((1, 2))
    gcg = [[{"role": "assistant", "content": "<|object_ref_start|>the dog<|object_ref_end|>" + words((1, 2))}],
           [{"role": "assistant", "content": "<|object_ref_start|>a tree<|object_ref_end|>" + words((1, 2))}]]
    assert rewards.TRLReward("gcg", ground_truth_column="answer")(None, gcg, answer=[gcg_truth] * 2) == [1.0, 0.0]
    with pytest.raises(ValueError, match="2 completions but 1"):
        rewards.TRLReward("match")(None, completions, solution=truths[:1])
    with pytest.raises(ValueError, match="kind"):
        rewards.TRLReward("iou")
    r1 = rewards.TRLReward("format", r1=True)
    assert r1(None, ["<think>x</think><answer>" + words((1, 2)) + "</answer>", words((1, 2))]) == [1.0, 0.0]
