"""PLM-1B-SAMTok: a tiny stand-in in its official layout (a native PerceptionLM folder, timm
vision tower, + the SAMTok files) loads on transformers' PerceptionLM classes through the public
call, chats with masks in and out, fine-tunes, exports and chats again."""

from __future__ import annotations

import pytest

pytest.importorskip("timm")  # PerceptionLM's vision tower is a timm model (the [mllm] extra)
pytest.importorskip("trl")

from masktok.mllm.loading import find_mask_tokenizer  # noqa: E402
from mllm_fixtures import single_thread_torch  # noqa: E402,F401 (autouse)
from official_fixtures import write_plm_samtok  # noqa: E402
from official_roundtrip import samtok_round_trip  # noqa: E402


def test_official_plm_samtok_folder_round_trip(tmp_path):
    folder = write_plm_samtok(tmp_path / "PLM-1B-SAMTok")
    assert find_mask_tokenizer(folder) == ("samtok", folder / "mask_tokenizer_256x2.pth")
    samtok_round_trip(folder, tmp_path, "PerceptionLMForConditionalGeneration")


def test_ragged_tiles_give_the_same_logits_as_the_stacked_batch(tmp_path):
    """Images with equal tile counts stack normally; the one-row layout used when a zoom crop has
    another tile count must give the model the same tokens and the same logits."""
    import torch

    from mllm_fixtures import tiny_image
    from official_fixtures import build_plm_pair

    from masktok.mllm.chat import MaskChat
    from mllm_fixtures import build_tiny_samtok
    from masktok.mllm import add_mask_vocabulary

    model, processor = build_plm_pair()
    tokenizer = build_tiny_samtok()
    add_mask_vocabulary(model, processor, tokenizer.vocabulary)
    chat = MaskChat(model, processor, tokenizer)
    conversation = chat.start(tiny_image(seed=1))
    conversation.messages.append({"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                              {"type": "text", "text": "Compare them."}]})
    conversation.images = [tiny_image(seed=1), tiny_image(seed=2)]
    text = [processor.apply_chat_template(conversation.messages, tokenize=False, add_generation_prompt=True)]
    stacked = processor(text=text, images=conversation.images, return_tensors="pt", add_special_tokens=False)
    ragged = chat._ragged_tile_inputs(text, conversation.images)
    assert torch.equal(stacked["input_ids"], ragged["input_ids"])
    with torch.no_grad():
        expected = model(**stacked).logits
        got = model(**ragged).logits
    torch.testing.assert_close(got, expected)
