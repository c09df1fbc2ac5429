"""The public HiMTok tokenizer: encode/decode API, prefixes, soft decoding, words, bad inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from masktok.tokenizers.himtok import HiMTok, PixelDecoderConfig, masktok_s_config
from masktok.tokenizers.himtok import checkpoint


def tiny_config(**overrides):
    config = replace(
        masktok_s_config(), name="tiny", image_size=64, patch_size=16, num_latent_tokens=8,
        encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
        decoder_heads=2, token_dim=4, codebook_size=64,
        pixel_decoder=PixelDecoderConfig(z_channels=16, hidden_channels=8, channel_mult=(1, 1, 1, 1, 2),
                                         num_res_blocks=1, out_channels=1, norm_groups=4,
                                         legacy_shortcut=False))
    return replace(config, **overrides)


@pytest.fixture(scope="module")
def tok() -> HiMTok:
    return HiMTok.from_config(tiny_config(), seed=0)


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    out = np.zeros((3, 90, 120), dtype=bool)
    out[0, 10:60, 20:100] = True
    out[1, 40:85, 5:40] = True
    out[2, ::7, ::5] = True
    return out


def test_encode_returns_all_codes(tok, masks):
    codes = tok.encode(None, masks)
    assert codes.shape == (3, 8) and codes.dtype == torch.int64 and codes.device.type == "cpu"
    assert ((codes >= 0) & (codes < 64)).all()
    # uint8 / torch / int inputs give the same codes; the image is not read, but a path to
    # nothing is a mistake and refused rather than ignored
    assert torch.equal(tok.encode(None, masks.astype(np.uint8)), codes)
    assert torch.equal(tok.encode(np.zeros((4, 4, 3)), torch.from_numpy(masks).long()), codes)
    with pytest.raises(FileNotFoundError, match="no image file at no_such_image.jpg"):
        tok.encode("no_such_image.jpg", masks)
    with pytest.raises(FileNotFoundError, match="no_such_image.jpg"):
        tok.decode_words("no_such_image.jpg", "")
    assert torch.equal(tok.encode(None, masks, num_codes=3), codes[:, :3])
    assert tok.encode(None, np.zeros((0, 5, 5), bool)).shape == (0, 8)


def test_batching_does_not_change_results(tok, masks):
    codes = tok.encode(None, masks)
    assert torch.equal(HiMTok(model=tok.model, mask_batch_size=2).encode(None, masks), codes)
    assert [c.tolist() for c in tok.encode_batch([None] * 3, [masks[i:i + 1] for i in range(3)],
                                                 batch_size=2)] == [[row] for row in codes.tolist()]
    assert torch.allclose(tok.decode_logits(codes, batch_size=1), tok.decode_logits(codes), atol=1e-5)


@pytest.mark.slow
def test_every_prefix_decodes_to_the_requested_size(tok, masks):
    codes = tok.encode(None, masks)
    previous = None
    for length in range(1, 9):
        probs = tok.decode_probabilities(codes[:, :length])
        assert probs.shape == (3, 64, 64) and probs.dtype == torch.float32
        assert ((probs > 0) & (probs < 1)).all()
        out = tok.decode(None, codes[:, :length], size=(90, 120))
        assert out.shape == (3, 90, 120) and out.dtype == torch.bool
        ragged = tok.decode_probabilities(codes, lengths=torch.full((3,), length))
        assert torch.allclose(ragged, probs, atol=1e-5)
        if previous is not None:
            assert (probs - previous).abs().max() > 0  # each extra code is used
        previous = probs


def test_ragged_lengths_decode_each_row_from_its_own_prefix(tok, masks):
    codes = tok.encode(None, masks)
    lengths = torch.tensor([2, 8, 5])
    ragged = tok.decode_probabilities(codes, lengths=lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = tok.decode_probabilities(codes[row:row + 1, :length])
        assert torch.allclose(ragged[row], alone[0], atol=1e-5)


def test_masks_are_stretched_back_from_the_probability_map(tok, masks):
    codes = tok.encode(None, masks)
    probs = tok.decode_probabilities(codes)
    resized = F.interpolate(probs.unsqueeze(1), size=(90, 120), mode="bilinear", align_corners=False)[:, 0]
    assert torch.equal(tok.decode(None, codes, size=(90, 120)), resized > 0.5)
    assert torch.equal(tok.decode(None, codes, size=(90, 120), threshold=0.3), resized > 0.3)
    logits = tok.decode(None, codes, size=(90, 120), return_logits=True)
    assert logits.dtype == torch.float32 and torch.allclose(torch.sigmoid(logits), resized, atol=0.05)
    assert tok.decode(None, codes).shape == (3, 64, 64)


QUANTIZER_OVERRIDES = {
    "vq": {},
    "fsq": {"quantizer": "fsq", "fsq_levels": (4, 4, 2, 2), "codebook_size": 64},
    "rvq": {"quantizer": "rvq", "rvq_depth": 2},
}


@pytest.mark.parametrize("quantizer", sorted(QUANTIZER_OVERRIDES))
def test_soft_decoding_of_one_hot_probabilities_equals_hard_decoding(quantizer):
    tok = HiMTok.from_config(tiny_config(**QUANTIZER_OVERRIDES[quantizer]), seed=1)
    codes = torch.randint(0, 64, (2, tok.max_codes))
    for length in (1, 3, tok.max_codes):
        one_hot = F.one_hot(codes[:, :length], 64).float()
        soft = tok.decode_soft(one_hot, return_logits=True)
        hard = tok.decode(None, codes[:, :length], return_logits=True)
        assert torch.allclose(soft, hard, atol=1e-5)
    probs = HiMTok.code_probs_from_logits(torch.randn(2, 8, 64))
    assert torch.allclose(probs.sum(-1), torch.ones(2, 8))
    assert tok.decode_soft(probs, size=(30, 40)).shape == (2, 30, 40)


def test_residual_vq_codes_are_slot_major_and_any_prefix_decodes(masks):
    tok = HiMTok.from_config(tiny_config(**QUANTIZER_OVERRIDES["rvq"]), seed=3)
    assert tok.max_codes == 16
    codes = tok.encode(None, masks)
    assert codes.shape == (3, 16)
    model = tok.model
    with torch.no_grad():  # codes 2k, 2k+1 are the two residual levels of slot k
        slot_vectors = model.quantize.rvq.lookup(codes.view(3, 8, 2))
        assert torch.allclose(model.quantize.lookup(codes), slot_vectors)
    maps = [tok.decode_logits(codes[:, :length]) for length in range(1, 17)]
    assert all(m.shape == (3, 64, 64) for m in maps)
    assert all((a - b).abs().max() > 0 for a, b in zip(maps[:-1], maps[1:]))
    # a slot cut after its first level decodes like that slot with level 1 left out
    partial = model.quantize.rvq.lookup(torch.tensor([[[int(codes[0, 0]), int(codes[0, 1])],
                                                       [int(codes[0, 2]), -1]]]))
    with torch.no_grad():
        expected = model.decode_tokens(partial)[:, 0]
    assert torch.allclose(maps[2][:1], expected, atol=1e-5)
    ragged = tok.decode_logits(codes, lengths=torch.tensor([3, 16, 7]))
    assert torch.allclose(ragged[0], maps[2][0], atol=1e-5)
    assert torch.allclose(ragged[2], maps[6][2], atol=1e-5)


def test_code_probs_from_logits_uses_scale_two():
    logits = torch.tensor([[0.0, 1.0]])
    expected = torch.tensor([[1.0, np.e ** 2]]) / (1 + np.e ** 2)
    assert torch.allclose(HiMTok.code_probs_from_logits(logits), expected)


def test_bf16_tokenizer_runs_end_to_end(masks):
    tok = HiMTok.from_config(tiny_config(), dtype=torch.bfloat16, seed=2)
    codes = tok.encode(None, masks)
    assert codes.shape == (3, 8)
    assert tok.decode(None, codes[:, :4], size=(90, 120)).shape == (3, 90, 120)


def test_save_and_load_round_trip(tmp_path, tok, masks):
    tok.save_pretrained(tmp_path)
    loaded = HiMTok.from_pretrained(tmp_path)
    assert loaded.config == tok.config
    codes = tok.encode(None, masks)
    assert torch.equal(loaded.encode(None, masks), codes)
    assert torch.equal(loaded.decode_logits(codes), tok.decode_logits(codes))


def test_fp16_weights_load_into_an_fp32_tokenizer(tmp_path, masks):
    from safetensors import safe_open

    tok = HiMTok.from_config(tiny_config(), seed=5)
    codes = tok.encode(None, masks)
    reference = tok.decode_logits(codes)
    tok.model.half()
    tok.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert handle.get_tensor("decoder.mask_token").dtype == torch.float16
        assert handle.get_tensor("encoder.attn_mask").dtype == torch.bool
    loaded = HiMTok.from_pretrained(tmp_path)
    assert loaded.dtype == torch.float32
    assert torch.allclose(loaded.decode_logits(codes), reference, atol=2e-2)


@pytest.mark.parametrize("bad, message", [
    (np.full((1, 8, 8), 2, dtype=np.uint8), "binary"),
    (np.full((1, 8, 8), 0.5), "binary"),
    (np.full((1, 8, 8), np.nan), "binary"),
    (np.zeros((8, 8), bool), r"\(N, H, W\)"),
    (np.zeros((1, 0, 8), bool), "non-empty"),
    ([[0, 1]], r"\(N, H, W\)"),
    ("masks", "array or tensor"),
])
def test_bad_masks_raise(tok, bad, message):
    with pytest.raises(ValueError, match=message):
        tok.encode(None, bad)


@pytest.mark.parametrize("codes, message", [
    (torch.tensor([[0, 64]]), r"\[0, 64\)"),
    (torch.tensor([[-1, 3]]), r"\[0, 64\)"),
    (torch.zeros(2, 0, dtype=torch.long), "prefix of 1 to 8"),
    (torch.zeros(2, 9, dtype=torch.long), "prefix of 1 to 8"),
    (torch.zeros(2, 3), "integer"),
    (torch.zeros(3, dtype=torch.long), r"\(N, L\)"),
])
def test_bad_codes_raise(tok, codes, message):
    with pytest.raises(ValueError, match=message):
        tok.decode(None, codes)


def test_bad_decode_arguments_raise(tok):
    codes = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="size"):
        tok.decode(None, codes, size=(0, 5))
    with pytest.raises(ValueError, match="size"):
        tok.decode(None, codes, size=(5.0, 5))
    with pytest.raises(ValueError, match="threshold"):
        tok.decode(None, codes, threshold=1.5)
    with pytest.raises(ValueError, match="lengths"):
        tok.decode(None, codes, lengths=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="lengths"):
        tok.decode(None, codes, lengths=torch.tensor([5, 2]))
    with pytest.raises(ValueError, match="num_codes"):
        tok.encode(None, np.zeros((1, 8, 8), bool), num_codes=0)
    with pytest.raises(ValueError, match="num_codes"):
        tok.encode(None, np.zeros((1, 8, 8), bool), num_codes=9)
    with pytest.raises(ValueError, match="last dimension"):
        tok.decode_soft(torch.rand(1, 3, 63))
    with pytest.raises(ValueError, match="positions"):
        tok.decode_soft(torch.rand(1, 9, 64))


def test_from_pretrained_rejects_unknown_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer at"):
        HiMTok.from_pretrained(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="neither"):
        HiMTok.from_pretrained(tmp_path / "other")
    (tmp_path / "config.json").write_text('{"tokenizer_type": "samtok", "format_version": 1, "model": {}}')
    with pytest.raises(ValueError, match="samtok"):
        HiMTok.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown HiMTok config"):
        HiMTok.from_config("masktok-xl")


def test_mask_words_round_trip(tok, masks):
    words = pytest.importorskip("masktok.words")
    vocab = tok.vocabulary
    assert vocab.codebook_size == 64 and vocab.max_codes == 8
    texts = tok.encode_words(None, masks)
    codes = tok.encode(None, masks)
    assert texts[0] == words.format_mask_words(codes[0].tolist(), vocab)
    short = words.format_mask_words(codes[1, :3].tolist(), vocab)
    text = f"The mask appears at {texts[0]} and {short}."
    decoded = tok.decode_words(None, text, size=(90, 120))
    assert decoded.masks.shape == (2, 90, 120)
    assert decoded.decoded_span_indices == [0, 1]
    assert torch.equal(decoded.masks[0], tok.decode(None, codes[:1], size=(90, 120))[0])
    assert torch.equal(decoded.masks[1], tok.decode(None, codes[1:2, :3], size=(90, 120))[0])
    empty = tok.decode_words(None, "No target.", size=(90, 120))
    assert empty.masks.shape == (0, 90, 120) and empty.spans == []


def test_satisfies_the_tokenizer_protocol(tok):
    pytest.importorskip("masktok.words")
    from masktok.tokenizers.base import MaskTokenizer

    assert isinstance(tok, MaskTokenizer)


def test_registry_opens_himtok_folders_and_official_files(tmp_path, tok, masks):
    from masktok.tokenizers import load_tokenizer, tokenizer_type

    tok.save_pretrained(tmp_path / "ours")
    codes = tok.encode(None, masks)
    for path in (tmp_path / "ours", tmp_path / "ours" / "model.safetensors"):
        assert tokenizer_type(path) == "himtok"
        loaded = load_tokenizer(path)
        assert isinstance(loaded, HiMTok) and torch.equal(loaded.encode(None, masks), codes)
    official_tok = HiMTok.from_config(tiny_config(legacy_latent_reshape=True), seed=4)
    checkpoint.save_official(official_tok.model, tmp_path / "lmm" / "himtok.pth", prefix="module.")
    for path in (tmp_path / "lmm", tmp_path / "lmm" / "himtok.pth"):
        assert tokenizer_type(path) == "himtok"
        loaded = load_tokenizer(path, config=official_tok.config)
        assert torch.equal(loaded.encode(None, masks), official_tok.encode(None, masks))
