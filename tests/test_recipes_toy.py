"""Toy tasks for the training recipes (used by the recipe tests and benchmarks/recipes_gpu.py),
and tests of the JSONL → dataset/collator layer (:mod:`masktok.train.vlm.data`).

Everything is built offline: a tiny random Qwen VL from ``mllm_fixtures`` extended with the SAMTok
words and saved in the Hugging Face layout, small random images, and SFT JSONL in the format of
``masktok.data.sft.writers.write_trl_jsonl``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from masktok.words.prompts import NO_TARGET_ANSWER, build_answer, build_prompt, join_masks
from masktok.words import SAMTOK_VOCABULARY, format_mask_words
from mllm_fixtures import TinyVLMConfig, build_tiny_pair, tiny_image

COLOURS = ("red", "blue", "green", "small", "big", "left", "right", "old")
NOUNS = ("dog", "horse", "umbrella", "cat", "man", "woman", "elephant", "car")


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread of the shared cores (no oversubscription)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_tiny_vlm(folder: Path, config: TinyVLMConfig = TinyVLMConfig(), vocab=SAMTOK_VOCABULARY) -> Path:
    """A tiny random VLM with the mask words, saved (model + processor) in ``folder``."""
    from masktok.mllm import add_mask_vocabulary

    model, processor = build_tiny_pair(config)
    add_mask_vocabulary(model, processor, vocab)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def phrases(count: int) -> list[str]:
    """``count`` distinct referring phrases ("the red dog", "the blue horse", …); neighbours differ
    in both words."""
    if count > len(COLOURS) * len(NOUNS):
        raise ValueError(f"count: at most {len(COLOURS) * len(NOUNS)} phrases, got {count}")
    size = len(NOUNS)
    return [f"the {COLOURS[i % size]} {NOUNS[(i % size + i // size) % size]}" for i in range(count)]


def conversation(image: Path, prompt: str, answer: str, sample_id: str) -> dict[str, Any]:
    """One single-turn record as ``write_trl_jsonl`` writes it."""
    return {"id": sample_id, "images": [str(image)], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def random_words(rng: random.Random, count: int, vocab=SAMTOK_VOCABULARY) -> list[str]:
    return [format_mask_words((rng.randrange(256), rng.randrange(256)), vocab) for _ in range(count)]


def res_toy(folder: Path, num_samples: int = 4, seed: int = 0) -> tuple[Path, list[dict[str, Any]]]:
    """RES: one phrase and image per sample → one random mask word each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i, phrase in enumerate(phrases(num_samples)):
        image = folder / f"res_{i}.png"
        tiny_image(seed=seed * 1000 + i).save(image)
        answer = build_answer("res", masks=random_words(rng, 1)[0])
        rows.append(conversation(image, build_prompt("res", phrase=phrase), answer, f"res/{i}"))
    return write_jsonl(folder / "res.jsonl", rows), rows


def gres_toy(folder: Path, num_prompts: int = 4, seed: int = 0
             ) -> tuple[Path, Path, list[dict[str, Any]]]:
    """GRES: prompts whose truth has 1, 2, 0, 1, 2, 0, … masks ("No target." for 0).

    Returns (truth JSONL, mixture JSONL, truth rows); the mixture holds each prompt twice, once
    with its truth and once with a wrong answer of random words, so a model fitted to it answers
    right about half the time: the starting point of the GRPO toy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    truth, mixture = [], []
    for i, phrase in enumerate(phrases(num_prompts)):
        image = folder / f"gres_{i}.png"
        tiny_image(seed=seed * 1000 + 500 + i).save(image)
        count = (1, 2, 0)[i % 3]
        good = join_masks(random_words(rng, count)) if count else NO_TARGET_ANSWER
        bad = join_masks(random_words(rng, max(count, 1)))
        prompt = build_prompt("gres", phrase=phrase)
        truth.append(conversation(image, prompt, good, f"gres/{i}"))
        mixture += [truth[-1], conversation(image, prompt, bad, f"gres/{i}/wrong")]
    return (write_jsonl(folder / "gres.jsonl", truth), write_jsonl(folder / "gres_mix.jsonl", mixture),
            truth)


def answer_of(row: dict[str, Any]) -> str:
    return row["messages"][-1]["content"][0]["text"]


def prompt_inputs(processor, row: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The generation inputs of a single-turn toy row."""
    from PIL import Image

    messages = [{"role": "user", "content": [
        {"type": "image", "image": Image.open(row["images"][0])},
        {"type": "text", "text": row["messages"][0]["content"][1]["text"]}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                         return_dict=True, return_tensors="pt")


def generate_answers(model, processor, row: dict[str, Any], *, samples: int = 1,
                     max_new_tokens: int = 16, logits_processor=None) -> list[str]:
    """Greedy (samples=1) or sampled answers to a toy row, mask words kept."""
    inputs = prompt_inputs(processor, row).to(model.device)
    sampling = (dict(do_sample=True, top_k=0, num_return_sequences=samples) if samples > 1
                else dict(do_sample=False))
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens,
                             logits_processor=logits_processor, **sampling)
    new = out[:, inputs["input_ids"].shape[1]:]
    return processor.tokenizer.batch_decode(new, skip_special_tokens=True)


# ---------------------------------------------------------------------------------------------
# vlm_data


def test_toy_rows_pass_the_builders_grammar(tmp_path):
    from masktok.words import parse_mask_words

    _, _, truth = gres_toy(tmp_path, num_prompts=6)
    counts = [len(parse_mask_words(answer_of(r), SAMTOK_VOCABULARY)) for r in truth]
    assert counts == [1, 2, 0, 1, 2, 0]
    assert answer_of(truth[2]) == NO_TARGET_ANSWER


def test_read_conversations_normalises_and_resolves(tmp_path):
    from masktok.train.vlm.data import read_conversations

    tiny_image().save(tmp_path / "a.png")
    rows = [
        {"id": "x", "images": ["a.png"], "messages": [
            {"role": "user", "content": "Please segment the dog in this image."},
            {"role": "assistant", "content": "No target."}]},
        conversation(tmp_path / "a.png", "q", "a", "y"),
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    records = read_conversations([path], image_root=tmp_path)
    first = records[0]
    assert first["images"] == [str((tmp_path / "a.png").resolve())]
    # string content gets structured; the image placeholder goes before the first user text
    assert first["messages"][0]["content"][0] == {"type": "image", "text": None}
    assert first["messages"][1]["content"] == [{"type": "text", "text": "No target."}]
    assert records[1]["messages"] == [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}]}]
    assert len(read_conversations([path], image_root=tmp_path, max_samples=1)) == 1


@pytest.mark.parametrize("row, message", [
    ({"images": [], "messages": [{"role": "user", "content": "q"}]}, "no assistant"),
    ({"images": [], "messages": [{"role": "robot", "content": "q"}]}, "role"),
    ({"images": ["missing.png"], "messages": [{"role": "user", "content": "q"},
                                               {"role": "assistant", "content": "a"}]}, "not found"),
    ({"images": ["a.png"], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": "a"}]}, "2 image placeholders but 1 images"),
    ({"images": [], "messages": [{"role": "user", "content": [{"type": "video"}]},
                                 {"role": "assistant", "content": "a"}]}, "neither"),
])
def test_bad_conversations_raise_with_file_and_line(tmp_path, row, message):
    from masktok.train.vlm.data import ConversationFormatError, read_conversations

    tiny_image().save(tmp_path / "a.png")
    path = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(ConversationFormatError, match=message) as info:
        read_conversations([path], image_root=tmp_path)
    assert "bad.jsonl:1" in str(info.value)


def test_grpo_dataset_splits_prompt_and_solution(tmp_path):
    from PIL import Image

    from masktok.train.vlm.data import load_grpo_dataset

    truth_path, _, truth = gres_toy(tmp_path, num_prompts=3)
    dataset = load_grpo_dataset([truth_path])
    assert dataset.column_names == ["id", "prompt", "images", "solution"]
    assert [row["solution"] for row in dataset] == [answer_of(r) for r in truth]
    first = dataset[0]
    assert [m["role"] for m in first["prompt"]] == ["user"]
    assert isinstance(first["images"][0], Image.Image)


def test_collator_labels_every_assistant_turn_and_nothing_else(tmp_path):
    from masktok.mllm import add_mask_vocabulary
    from masktok.train.vlm.data import AssistantTurnCollator, normalise_conversation

    model, processor = build_tiny_pair(TinyVLMConfig())
    add_mask_vocabulary(model, processor, SAMTOK_VOCABULARY)
    tiny_image().save(tmp_path / "a.png")
    words = format_mask_words((11, 47), SAMTOK_VOCABULARY)
    two_turns = normalise_conversation({"images": ["a.png"], "messages": [
        {"role": "user", "content": "Please segment the dog in this image."},
        {"role": "assistant", "content": words},
        {"role": "user", "content": "And the cat?"},
        {"role": "assistant", "content": "No target."}]}, "t", tmp_path)
    one_turn = normalise_conversation(conversation(tmp_path / "a.png", "q", words, "u"), "u")
    examples = [{"messages": c["messages"], "images": [tiny_image(seed=i)]}
                for i, c in enumerate((two_turns, one_turn))]
    batch = AssistantTurnCollator(processor)(examples)
    tokenizer = processor.tokenizer
    labelled = [tokenizer.decode(row[row != -100]) for row in batch["labels"]]
    assert labelled == [words + "<|im_end|>No target.<|im_end|>", words + "<|im_end|>"]
    # labels equal the inputs where set; image tokens and padding are never labelled
    keep = batch["labels"] != -100
    assert torch.equal(batch["labels"][keep], batch["input_ids"][keep])
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert not keep[batch["input_ids"] == image_id].any()
    assert not keep[batch["attention_mask"] == 0].any()
    assert batch["pixel_values"].shape[0] > 0 and batch["image_grid_thw"].shape == (2, 3)
    # the model accepts the batch
    assert torch.isfinite(model(**batch).loss)

    everything = AssistantTurnCollator(processor, loss_on="all")(examples)
    assert (everything["labels"] != -100).sum() > keep.sum()
    cut = AssistantTurnCollator(processor, max_length=batch["input_ids"].shape[1] - 3)(examples)
    assert cut["input_ids"].shape[1] == batch["input_ids"].shape[1] - 3
    with pytest.raises(ValueError, match="image tokens"):
        AssistantTurnCollator(processor, max_length=5)(examples)
