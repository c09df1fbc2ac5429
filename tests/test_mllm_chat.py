"""The chat pipeline end to end on tiny random Qwen2.5-VL / Qwen3-VL models with a tiny SAMTok
and a tiny HiMTok: mask generation, understanding (with zoom crops), multi-round, grounding,
malformed output, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masktok.masks import mask_to_box, rle_to_mask
from masktok.mllm import AnswerDone, MaskReady, TextChunk
from masktok.words.prompts import MASK_PLACEHOLDER, PHRASE_END, PHRASE_START
from masktok.words import format_mask_words
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import (ScriptedAnswers, TinyVLMConfig, box_mask, build_tiny_chat,
                           build_tiny_himtok, build_tiny_samtok, script_ids, tiny_image)

TOKENIZERS = {"samtok": build_tiny_samtok, "himtok": build_tiny_himtok}
# Each tokenizer with each model family, in two pairs (the pipeline treats them independently).
CASES = [("samtok", "qwen2_5_vl"), ("himtok", "qwen3_vl")]


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def chat(request):
    kind, family = request.param
    return build_tiny_chat(TOKENIZERS[kind](), TinyVLMConfig(family=family))


@pytest.fixture(scope="module")
def samtok_chat():
    return build_tiny_chat(build_tiny_samtok(), TinyVLMConfig(family="qwen3_vl"))


@pytest.fixture(scope="module")
def himtok_chat():
    return build_tiny_chat(build_tiny_himtok(), TinyVLMConfig(family="qwen2_5_vl"))


def scripted(chat, *texts):
    eos = chat.tokenizer.convert_tokens_to_ids("<|im_end|>")
    return (ScriptedAnswers([script_ids(chat.tokenizer, t) for t in texts], eos),)


def words_for(chat, image, masks):
    return chat.mask_tokenizer.encode_words(image, masks)


def test_generation_parses_ids_and_decodes_masks_per_image(chat):
    images = [tiny_image(48, 64, seed=1), tiny_image(40, 56, seed=2)]
    truth = [np.stack([box_mask(48, 64, (4, 6, 30, 40)), box_mask(48, 64, (35, 2, 60, 20))]),
             box_mask(40, 56, (10, 10, 40, 30))[None]]
    words = [words_for(chat, img, m) for img, m in zip(images, truth)]
    answers = [f"There are two: {words[0][0]}, {words[0][1]}.", f"The mask appears at {words[1][0]}."]
    results = chat.ask_batch(images, ["Please segment the dogs in this image.",
                                      "Segment <ref>road</ref>."],
                             logits_processors=scripted(chat, *answers), max_new_tokens=60)
    for image, result, answer, row_words in zip(images, results, answers, words):
        assert result.text == answer
        assert [m.words for m in result.masks] == row_words
        assert all(m.status == "ok" and m.decoded for m in result.masks)
        for m in result.masks:
            assert result.text[m.char_start:m.char_end] == m.words
        codes = torch.tensor([list(m.codes) for m in result.masks])
        expected = chat.mask_tokenizer.decode(image, codes, size=(image.height, image.width))
        np.testing.assert_array_equal(result.decoded_masks, expected.numpy())
        assert result.decoded_masks.shape == (len(row_words), image.height, image.width)
        for mask, rle, box in zip(result.decoded_masks, result.rles, result.boxes):
            np.testing.assert_array_equal(rle_to_mask(rle), mask)
            assert box == (mask_to_box(mask) if mask.any() else None)
        summary = result.to_json()
        assert [m["words"] for m in summary["masks"]] == row_words


def test_random_weights_under_the_grammar_write_decodable_masks(chat):
    ids = chat.mask_ids
    bias = {ids[chat.vocab.start_token]: 8.0, ids[chat.vocab.end_token]: 4.0}

    class Bias:
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            for token, value in bias.items():
                scores[:, token] += value
            return scores

    torch.manual_seed(0)
    result = chat.ask(tiny_image(), "Please segment the dog in this image.", max_new_tokens=24,
                      do_sample=True, logits_processors=(Bias(),))
    assert len(result.masks) >= 2
    assert all(m.status == "ok" and m.mask.shape == (48, 64) for m in result.masks)


def test_malformed_generations_are_parsed_and_reported(samtok_chat):
    chat = samtok_chat
    image = tiny_image()
    good = words_for(chat, image, box_mask(48, 64, (5, 5, 20, 20))[None])[0]
    v = chat.vocab
    truncated = v.start_token + v.code_token(0, 3) + v.end_token
    extra = v.start_token + v.code_token(0, 3) + v.code_token(1, 4) + v.code_token(1, 5) + v.end_token
    swapped = v.start_token + v.code_token(1, 4) + v.code_token(0, 3) + v.end_token
    unterminated = v.start_token + v.code_token(0, 7)
    answer = f"a {truncated} b {extra} c {swapped} d {good} e {unterminated}"
    result = chat.ask(image, "Please segment the cat in this image.", constrained=False,
                      logits_processors=scripted(chat, answer), max_new_tokens=40)
    statuses = [m.status for m in result.masks]
    assert len(statuses) == 5 and statuses[3] == "ok"
    assert sum(s != "ok" for s in statuses) == 4 and len(result.malformed) == 4
    assert result.masks[3].decoded and result.masks[3].words == good
    for m in result.masks:  # what was decoded was decodable, and nothing raised
        assert not m.decoded or m.span.decodable
    strict_only = chat.ask(image, "Please segment the cat in this image.", constrained=False,
                           decode_repaired=False, logits_processors=scripted(chat, answer),
                           max_new_tokens=40)
    assert [m.decoded for m in strict_only.masks] == [False, False, False, True, False]


def test_malformed_himtok_generations_are_parsed_and_reported(himtok_chat):
    chat = himtok_chat
    v = chat.vocab
    codes = "".join(v.code_token(0, 7 * i + 1) for i in range(v.max_codes + 1))
    empty = v.start_token + v.end_token
    too_long = v.start_token + codes + v.end_token
    stray = v.code_token(0, 5)
    unterminated = v.start_token + v.code_token(0, 9) + v.code_token(1, 10)
    answer = f"x {empty} y {too_long} z {stray} w {unterminated}"
    result = chat.ask(tiny_image(), "Segment <ref>road</ref>.", constrained=False,
                      logits_processors=scripted(chat, answer), max_new_tokens=40)
    statuses = [m.status for m in result.masks]
    assert "ok" not in statuses and len(statuses) >= 4
    assert {"empty", "extra_tokens", "missing_start", "unterminated"} <= set(statuses)
    too_long_mask = result.masks[statuses.index("extra_tokens")]
    assert too_long_mask.decoded and len(too_long_mask.codes) == v.max_codes  # repaired prefix
    assert too_long_mask.span.repairs
    assert not result.masks[statuses.index("empty")].decoded
    constrained = chat.ask(tiny_image(), "Segment <ref>road</ref>.", max_new_tokens=40,
                           logits_processors=scripted(chat, "x " + too_long))
    # The grammar closes the span after max_codes codes even though the script asks for more.
    assert constrained.masks and constrained.masks[0].status == "ok"
    assert len(constrained.masks[0].codes) == v.max_codes


def test_gcg_and_psg_alignment(samtok_chat):
    chat = samtok_chat
    image = tiny_image()
    w = words_for(chat, image, np.stack([box_mask(48, 64, (2, 2, 10, 10)),
                                         box_mask(48, 64, (20, 20, 40, 40)),
                                         box_mask(48, 64, (44, 5, 60, 30))]))
    gcg = (f"{PHRASE_START}A dog{PHRASE_END}{w[0]} runs past {PHRASE_START}two cats{PHRASE_END}"
           f"{w[1]}, {w[2]} on the grass.")
    conversation = chat.start(image)
    result = chat.send(conversation, "Could you please give me a brief description of the "
                       "image?", logits_processors=scripted(chat, gcg), max_new_tokens=40)
    assert result.text == f"A dog{w[0]} runs past two cats{w[1]}, {w[2]} on the grass."
    assert [(p.phrase, p.span_indices) for p in result.phrases] == [("A dog", (0,)),
                                                                   ("two cats", (1, 2))]
    assert [m.phrase for m in result.masks] == ["A dog", "two cats", "two cats"]
    assert conversation.messages[-1]["content"][0]["text"] == gcg  # markers kept in the history

    psg = f"person{w[0]} standing on river{w[1]}\nhorse{w[2]} beside person{w[0]}\nno relation"
    result = chat.ask(image, "Generate a scene graph for this image.",
                      logits_processors=scripted(chat, psg), max_new_tokens=50)
    triplets = [(r.subject, r.subject_span, r.relation, r.object, r.object_span)
                for r in result.relations]
    assert triplets == [("person", 0, "standing on", "river", 1), ("horse", 2, "beside", "person", 3)]
    assert result.masks[0].codes == result.masks[3].codes


def test_mask_understanding_encodes_user_masks_and_zooms_small_regions(chat):
    image = tiny_image(300, 400, seed=3)
    small = box_mask(300, 400, (100, 100, 119, 129))
    large = box_mask(300, 400, (0, 0, 299, 199))
    conversation = chat.start(image)
    chat.add_user_turn(conversation, f"What is {MASK_PLACEHOLDER} next to {MASK_PLACEHOLDER}?",
                       np.stack([small, large]))
    assert len(conversation.images) == 2  # the image and the zoom crop of the small region
    crop = conversation.images[1]
    assert min(crop.size) >= 280
    small_words, large_words = words_for(chat, image, np.stack([small, large]))
    text = conversation.messages[-1]["content"][-1]["text"]
    assert f"What is {small_words} next to {large_words}?" in text
    assert text.startswith(f"Image 2 zooms in on {small_words}, shown there as <|mt_start|>")
    inputs = chat.model_inputs([conversation])
    assert inputs["image_grid_thw"].shape[0] == 2
    prompt_ids = inputs["input_ids"][0].tolist()
    for token in script_ids(chat.tokenizer, small_words + large_words):
        assert token in prompt_ids  # the words reach the model as mask tokens
    result = chat.generate([conversation], max_new_tokens=6)[0]
    assert isinstance(result.text, str) and conversation.messages[-1]["role"] == "assistant"

    caption = chat.start(image)
    chat.add_user_turn(caption, "Describe the masked area comprehensively.", large[None])
    assert len(caption.images) == 1
    assert caption.messages[-1]["content"][-1]["text"] == \
        f"{large_words}\nDescribe the masked area comprehensively."
    with pytest.raises(ValueError, match="placeholders"):
        chat.add_user_turn(chat.start(image), f"{MASK_PLACEHOLDER} and {MASK_PLACEHOLDER}", large[None])
    with pytest.raises(ValueError, match="size"):
        chat.add_user_turn(chat.start(image), "What?", box_mask(30, 40, (1, 1, 5, 5))[None])


def test_multi_round_history_carries_mask_words(samtok_chat):
    chat = samtok_chat
    image = tiny_image()
    first = words_for(chat, image, box_mask(48, 64, (3, 3, 30, 30))[None])[0]
    conversation = chat.start(image)
    r1 = chat.send(conversation, "Please segment the dog in this image.",
                   logits_processors=scripted(chat, f"Here: {first}."), max_new_tokens=20)
    assert r1.masks[0].words == first
    with pytest.raises(ValueError, match="not a user turn"):
        chat.generate([conversation])
    r2 = chat.send(conversation, "What is the relation between <mask> and the dog?",
                   box_mask(48, 64, (40, 20, 60, 40))[None],
                   logits_processors=scripted(chat, "It is beside it."), max_new_tokens=20)
    assert r2.text == "It is beside it." and not r2.masks
    assert [m["role"] for m in conversation.messages] == ["user", "assistant", "user", "assistant"]
    prompt = chat.processor.apply_chat_template(conversation.messages[:3], tokenize=False,
                                                add_generation_prompt=True)
    assert f"Here: {first}." in prompt
    assert len(conversation.mask_words) == 1


def test_streaming_yields_each_mask_when_its_end_token_arrives(chat):
    image = tiny_image()
    w = words_for(chat, image, np.stack([box_mask(48, 64, (2, 2, 20, 20)),
                                         box_mask(48, 64, (30, 10, 60, 40))]))
    answer = f"First {w[0]} and then a long tail of words before {w[1]} closes it."
    conversation = chat.start(image)
    chat.add_user_turn(conversation, "Please segment the dogs in this image.")
    events = list(chat.stream(conversation, logits_processors=scripted(chat, answer),
                              max_new_tokens=80))
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("MaskReady") == 2 and kinds[-1] == "AnswerDone"
    first_mask = kinds.index("MaskReady")
    text_before = "".join(e.text for e in events[:first_mask] if isinstance(e, TextChunk))
    assert "tail" not in text_before  # the mask came before the rest of the answer
    streamed = "".join(e.text for e in events if isinstance(e, TextChunk))
    result = events[-1].result
    assert isinstance(events[-1], AnswerDone) and streamed == result.text == answer
    ready = [e for e in events if isinstance(e, MaskReady)]
    for event, prediction in zip(ready, result.masks):
        np.testing.assert_array_equal(event.mask, prediction.mask)
    assert conversation.messages[-1]["role"] == "assistant"


def test_words_format_matches_the_tokenizer(chat):
    image = tiny_image()
    codes = chat.mask_tokenizer.encode(image, box_mask(48, 64, (1, 1, 9, 9))[None])
    assert words_for(chat, image, box_mask(48, 64, (1, 1, 9, 9))[None])[0] == \
        format_mask_words(codes[0].tolist(), chat.vocab)
