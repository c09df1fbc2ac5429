"""The SAM 2.1 preset of an official SAMTok file is read off its tensor shapes: a random state
dict with the published file's exact key names and shapes (``../shared/specs``) loads from an
official-layout folder with no config, as Hiera-L."""

from __future__ import annotations


import pytest
import torch

from masktok.mllm.loading import load_mask_tokenizer
from official_fixtures import samtok_spec_shapes
from masktok.tokenizers.samtok.config import samtok_config


@pytest.mark.slow
def test_random_hiera_large_file_loads_from_an_official_folder_without_config(shared_specs, tmp_path):
    shapes = samtok_spec_shapes(shared_specs)
    assert len(shapes) == 992
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=generator, dtype=torch.float32).to(torch.bfloat16)
             for k, shape in shapes.items()}
    torch.save(state, tmp_path / "mask_tokenizer_256x2.pth")
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_vl"}')  # the VLM's, not the tokenizer's
    tokenizer = load_mask_tokenizer(tmp_path)
    assert tokenizer.model.config.hiera == samtok_config("large").hiera
    assert tokenizer.vocabulary.name == "samtok" and len(tokenizer.vocabulary.tokens()) == 514
    book = tokenizer.model.state_dict()["quantizer.codebooks.1.weight"]
    torch.testing.assert_close(book.float().cpu(), state["quantizer.codebooks.1.weight"].float(), rtol=0, atol=0)
