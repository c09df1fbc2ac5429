"""Grammar-constrained decoding: the allowed sets per state, and a measurement on a tiny model
(random weights biased towards mask tokens produce many malformed spans without the grammar and
none with it)."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from masktok.mllm.constrained import MaskGrammarLogitsProcessor, span_length_range
from masktok.mllm.vocabulary import add_mask_vocabulary, mask_token_order
from masktok.words import himtok_vocabulary, parse_mask_token_ids, samtok_vocabulary
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import TinyVLMConfig, build_tiny_pair

BASE = 100  # first mask token id in the synthetic vocabularies below


def synthetic_ids(vocab):
    return {token: BASE + i for i, token in enumerate(mask_token_order(vocab))}


def allowed_after(processor, prefix, vocab_size):
    scores = torch.zeros(1, vocab_size)
    out = processor(torch.tensor([prefix]), scores)
    return set(torch.nonzero(torch.isfinite(out[0])).flatten().tolist())


def test_samtok_grammar_states():
    vocab = samtok_vocabulary()
    ids = synthetic_ids(vocab)
    size = BASE + 514 + 20
    grammar = MaskGrammarLogitsProcessor(vocab, ids)
    start, end = ids[vocab.start_token], ids[vocab.end_token]
    level0 = {ids[vocab.code_token(0, c)] for c in range(256)}
    level1 = {ids[vocab.code_token(1, c)] for c in range(256)}
    text = set(range(size)) - set(ids.values())
    assert allowed_after(grammar, [5, 6], size) == text | {start}
    assert allowed_after(grammar, [5, start], size) == level0
    assert allowed_after(grammar, [5, start, ids["<|mt_0011|>"]], size) == level1
    assert allowed_after(grammar, [start, ids["<|mt_0011|>"], ids["<|mt_0347|>"]], size) == {end}
    closed = [start, ids["<|mt_0011|>"], ids["<|mt_0347|>"], end]
    assert allowed_after(grammar, closed, size) == text | {start}
    # Batched rows in different states, one call.
    scores = torch.zeros(2, size)
    out = grammar(torch.tensor([[1, 1, 2, start], closed]), scores)
    assert set(torch.nonzero(torch.isfinite(out[0])).flatten().tolist()) == level0
    assert torch.isfinite(out[1, 7]) and not torch.isfinite(out[1, end])


def test_himtok_grammar_lengths_and_budget():
    vocab = himtok_vocabulary()
    ids = synthetic_ids(vocab)
    size = BASE + 1026 + 10
    start, end = ids[vocab.start_token], ids[vocab.end_token]
    codes = {ids[vocab.code_token(0, c)] for c in range(1024)}
    code = ids["<|mt_17|>"]
    grammar = MaskGrammarLogitsProcessor(vocab, ids)
    assert span_length_range(vocab) == (1, 32)
    assert allowed_after(grammar, [start], size) == codes
    assert allowed_after(grammar, [start, code], size) == codes | {end}
    assert allowed_after(grammar, [start] + [code] * 31, size) == codes | {end}
    assert allowed_after(grammar, [start] + [code] * 32, size) == {end}
    fixed = MaskGrammarLogitsProcessor(vocab, ids, num_codes=4)
    assert allowed_after(fixed, [start, code, code, code], size) == codes
    assert allowed_after(fixed, [start] + [code] * 4, size) == {end}
    # With a length limit: no new span when it cannot close; an open span closes in time.
    budget = MaskGrammarLogitsProcessor(vocab, ids, max_length=10)
    assert start not in allowed_after(budget, [1] * 8, size)
    assert start in allowed_after(budget, [1] * 7, size)
    assert allowed_after(budget, [1] * 5 + [start, code, code, code], size) == {end}
    texts_only = MaskGrammarLogitsProcessor(vocab, ids, allow_masks=False)
    assert start not in allowed_after(texts_only, [1, 2], size)
    # When an earlier processor ruled out every grammatical token, the grammar still decides.
    forced = torch.full((1, size), float("-inf"))
    forced[0, 5] = 0.0  # a text token inside a span
    out = grammar(torch.tensor([[start, code]]), forced)
    assert set(torch.nonzero(torch.isfinite(out[0])).flatten().tolist()) == codes | {end}
    with pytest.raises(ValueError, match="num_codes"):
        MaskGrammarLogitsProcessor(vocab, ids, num_codes=33)
    with pytest.raises(ValueError, match="missing"):
        MaskGrammarLogitsProcessor(vocab, {t: i for t, i in ids.items() if t != "<|mt_5|>"})
    with pytest.raises(ValueError, match="no room"):
        grammar(torch.tensor([[1]]), torch.zeros(1, 50))


class MaskTokenBias(LogitsProcessor):
    """Adds ``bias[id]`` to token scores: a random model that writes mask tokens often."""

    def __init__(self, bias):
        self.ids = torch.tensor(list(bias))
        self.values = torch.tensor(list(bias.values()), dtype=torch.float32)

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.ids] += self.values
        return scores


def sample_spans(vocab, constrained, *, family, seed=0, batch=16, new_tokens=40):
    model, processor = build_tiny_pair(TinyVLMConfig(family=family))
    ids = add_mask_vocabulary(model, processor, vocab).token_ids
    inputs = processor.tokenizer(["Please segment the dog in this image."] * batch,
                                 return_tensors="pt")
    markers = (ids[vocab.start_token], ids[vocab.end_token])
    processors = [MaskTokenBias({i: 6.0 if i in markers else 1.0 for i in ids.values()})]
    max_length = inputs["input_ids"].shape[1] + new_tokens
    if constrained:
        processors.append(MaskGrammarLogitsProcessor(vocab, ids, max_length=max_length))
    torch.manual_seed(seed)
    out = model.generate(**inputs, do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         logits_processor=LogitsProcessorList(processors))
    generated = out[:, inputs["input_ids"].shape[1]:].tolist()
    spans, stray = [], 0
    code_ids = {i for t, i in ids.items() if t not in (vocab.start_token, vocab.end_token)}
    for row in generated:
        row_spans = parse_mask_token_ids(row, vocab, ids, lenient=True)
        covered = {p for s in row_spans for p in range(s.start, s.end)}
        stray += sum(1 for p, t in enumerate(row) if t in code_ids | {ids[vocab.end_token]}
                     and p not in covered)
        spans.extend(row_spans)
    return spans, stray


@pytest.mark.parametrize("vocab,family", [(samtok_vocabulary(), "qwen2_5_vl"),
                                          (himtok_vocabulary(), "qwen3_vl")])
def test_constrained_decoding_yields_only_well_formed_spans(vocab, family):
    free, free_stray = sample_spans(vocab, constrained=False, family=family)
    bound, bound_stray = sample_spans(vocab, constrained=True, family=family)
    free_bad = sum(not s.ok for s in free)
    print(f"\n{vocab.name}/{family}: unconstrained {len(free)} spans, {free_bad} malformed, "
          f"{free_stray} stray tokens; constrained {len(bound)} spans, "
          f"{sum(not s.ok for s in bound)} malformed, {bound_stray} stray tokens")
    assert free_bad + free_stray >= 10  # random weights: malformed output without the grammar
    assert len(bound) >= 16  # the bias still makes the model write masks with the grammar on
    assert all(s.ok for s in bound) and bound_stray == 0
    lo, hi = span_length_range(vocab)
    assert all(lo <= len(s.codes) <= hi for s in bound)
