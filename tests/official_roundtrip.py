"""The round trip shared by the SAMTok families' official-layout tests: the public call loads the
folder, a turn with a mask in and a mask out (constrained decoding on), a few SFT steps, the
export reloads with no extra arguments and chats again with the same mask decoding."""

from __future__ import annotations

import json

import numpy as np

from masktok.mllm import MaskChat
from masktok.words import SAMTOK_VOCABULARY
from official_fixtures import chat_with_masks, run_few_sft_steps


def samtok_round_trip(folder, tmp_path, model_class: str) -> None:
    chat = MaskChat.from_pretrained(folder)
    assert type(chat.model).__name__ == model_class
    assert type(chat.mask_tokenizer).__name__ == "SAMTok" and not chat.settings.soft_decoding
    before, words = chat_with_masks(chat)

    run = run_few_sft_steps(folder, tmp_path, SAMTOK_VOCABULARY)
    final = tmp_path / "run" / "final"
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert run.global_step == 2 and saved["mask_tokenizer_copied"] is True
    assert (final / "mask_tokenizer_256x2.pth").is_file() and (final / "sam2.1_hiera_large.pt").is_file()
    again = MaskChat.from_pretrained(final)  # no extra arguments
    assert type(again.model).__name__ == model_class
    after, words_after = chat_with_masks(again)
    assert words_after == words  # the same tokenizer came along
    np.testing.assert_array_equal(after.decoded_masks, before.decoded_masks)
    # Evaluation opens final/ as a tokenizer path (the tiny Hiera's config given: no preset fits it).
    from masktok.tokenizers import load_tokenizer
    from mllm_fixtures import tiny_samtok_config

    assert load_tokenizer(final, config=tiny_samtok_config()).vocabulary.name == "samtok"
