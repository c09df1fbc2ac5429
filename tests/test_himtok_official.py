"""The official HiMTok layout: key set vs the spec file, reference computation, strict loading."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from masktok.tokenizers.himtok import HiMTok, HiMTokModel, PixelDecoderConfig, official_config


def tiny_official():
    """The official structure (every key of himtok.pth) at toy widths: 64² frame, 4×4 grid."""
    return replace(
        official_config(), image_size=64, encoder_width=64, encoder_depth=2, encoder_heads=2,
        decoder_width=64, decoder_depth=2, decoder_heads=2,
        pixel_decoder=PixelDecoderConfig(z_channels=64, hidden_channels=8, norm_groups=4))


def read_spec(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    spec = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        spec[key] = (tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype)
    return spec


def test_official_layout_matches_spec_on_meta_device(shared_specs):
    spec = read_spec(shared_specs / "himtok_state_dict.tsv")
    with torch.device("meta"):
        model = HiMTokModel(official_config())
    state = model.state_dict()
    assert len(spec) == 693
    assert sorted(state) == sorted(spec)
    for key, tensor in state.items():
        assert (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")) == spec[key], key
    params = sum(t.numel() for t in state.values() if t.dtype != torch.bool)
    assert params == 644_294_815


def _mha_blocks(blocks: nn.ModuleList) -> list[nn.MultiheadAttention]:
    """torch.nn.MultiheadAttention copies of our attention weights (the reference's module)."""
    out = []
    for block in blocks:
        width = block.attn.out_proj.in_features
        mha = nn.MultiheadAttention(width, block.attn.heads)
        mha.load_state_dict(block.attn.state_dict())
        out.append(mha.eval())
    return out


def reference_encoder(model: HiMTokModel, pixels: torch.Tensor) -> torch.Tensor:
    """The official TiTok encoder forward, written independently (sequence-first MHA, legacy reshape)."""
    enc = model.encoder
    batch = pixels.shape[0]
    x = enc.patch_embed(pixels).reshape(batch, enc.width, -1).permute(0, 2, 1)
    x = torch.cat([enc.class_embedding.unsqueeze(0).expand(batch, -1, -1), x], dim=1) + enc.positional_embedding
    latents = model.latent_tokens.unsqueeze(0).expand(batch, -1, -1) + enc.latent_token_positional_embedding
    x = enc.ln_pre(torch.cat([x, latents], dim=1)).permute(1, 0, 2)
    for block, mha in zip(enc.transformer, _mha_blocks(enc.transformer)):
        h = block.ln_1(x)
        x = x + mha(h, h, h, need_weights=False, attn_mask=enc.attn_mask)[0]
        x = x + block.mlp(block.ln_2(x))
    x = x.permute(1, 0, 2)
    latents = enc.ln_post(x[:, 1 + enc.grid_size ** 2:])
    latents = latents.reshape(batch, enc.width, enc.num_latent_tokens, 1)  # the legacy reshape
    z = enc.conv_out(latents).reshape(batch, -1, 1, enc.num_latent_tokens)
    return z[:, :, 0].permute(0, 2, 1)


def reference_decoder_features(model: HiMTokModel, tokens: torch.Tensor) -> torch.Tensor:
    """The official TiTok decoder forward (zero padding after the linear) up to the ffn output."""
    dec = model.decoder
    batch, kept, _ = tokens.shape
    x = dec.decoder_embed(tokens)
    x = torch.cat([x, torch.zeros(batch, dec.num_latent_tokens - kept, dec.width)], dim=1)
    queries = torch.cat([dec.class_embedding.unsqueeze(0).expand(batch, -1, -1),
                         dec.mask_token.repeat(batch, dec.grid_size ** 2, 1)], dim=1) + dec.positional_embedding
    x = x + dec.latent_token_positional_embedding
    x = dec.ln_pre(torch.cat([queries, x], dim=1)).permute(1, 0, 2)
    for block, mha in zip(dec.transformer, _mha_blocks(dec.transformer)):
        h = block.ln_1(x)
        x = x + mha(h, h, h, need_weights=False)[0]
        x = x + block.mlp(block.ln_2(x))
    x = dec.ln_post(x.permute(1, 0, 2)[:, 1:1 + dec.grid_size ** 2])
    x = x.permute(0, 2, 1).reshape(batch, dec.width, dec.grid_size, dec.grid_size)
    return dec.ffn(x)


@pytest.fixture(scope="module")
def tiny_model() -> HiMTokModel:
    torch.manual_seed(0)
    return HiMTokModel(tiny_official()).eval()


def test_encoder_reproduces_reference_with_legacy_reshape(tiny_model):
    pixels = torch.zeros(2, 3, 64, 64)
    pixels[0, :, 10:40, 5:50] = 1
    pixels[1, :, 30:60, 20:30] = 1
    with torch.no_grad():
        ours = tiny_model.encode_latents(pixels)
        ref = reference_encoder(tiny_model, pixels)
        codes = tiny_model.encode(pixels).codes
    assert ours.shape == (2, 32, 12)
    assert torch.allclose(ours, ref, atol=1e-5)
    ref_codes = (F.normalize(ref, dim=-1) @ tiny_model.quantize.codebook().T).argmax(-1)
    assert torch.equal(codes, ref_codes)


def test_legacy_reshape_mixes_later_latents_into_early_tokens(tiny_model):
    pixels = torch.ones(1, 3, 64, 64)
    with torch.no_grad():
        before = tiny_model.encode_latents(pixels)
        saved = tiny_model.latent_tokens[31].clone()
        tiny_model.latent_tokens[31] += torch.randn_like(saved)
        after = tiny_model.encode_latents(pixels)
        tiny_model.latent_tokens[31] = saved
    assert (after[:, 0] - before[:, 0]).abs().max() > 1e-5  # official causality does not survive


def test_decoder_reproduces_reference_and_output_head(tiny_model):
    codes = torch.randint(0, 1024, (2, 5))
    with torch.no_grad():
        tokens = tiny_model.quantize.lookup(codes)
        ours = tiny_model.decoder(tokens)
        ref = reference_decoder_features(tiny_model, tokens)
        logits = tiny_model.decode_codes(codes)
        pixels = tiny_model.pixel_decoder(ref)
    assert torch.allclose(ours, ref, atol=1e-5)
    expected = torch.sigmoid((pixels.mean(1, keepdim=True) - 0.5) * 5.0)
    assert torch.allclose(torch.sigmoid(logits), expected, atol=1e-5)


@pytest.mark.parametrize("prefix", ["", "module.", "mask_decoder.", "module.mask_decoder."])
def test_official_file_round_trip_with_prefixes(tmp_path, tiny_model, prefix):
    state = {prefix + k: v for k, v in tiny_model.state_dict().items()}
    if "mask_decoder." in prefix:  # a full LMM state dict also holds language-model weights
        state["module.language_model.lm_head.weight"] = torch.zeros(4, 4)
    payload = {"model": state} if prefix == "module." else state
    path = tmp_path / "himtok.pth"
    torch.save(payload, path)
    loaded = HiMTok.from_pretrained(path, config=tiny_official())
    codes = torch.randint(0, 1024, (2, 32))
    with torch.no_grad():
        expected = tiny_model.decode_codes(codes)[:, 0]
    assert torch.allclose(loaded.decode_logits(codes), expected, atol=1e-5)
    # a folder holding himtok.pth is recognised too
    assert torch.allclose(HiMTok.from_pretrained(tmp_path, config=tiny_official()).decode_logits(codes),
                          expected, atol=1e-5)


def test_official_loading_is_strict(tmp_path, tiny_model):
    state = dict(tiny_model.state_dict())
    missing = {k: v for k, v in state.items() if k != "decoder.mask_token"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing: decoder\.mask_token"):
        HiMTok.from_pretrained(tmp_path / "missing.pth", config=tiny_official())
    torch.save({**state, "decoder.extra": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected: decoder\.extra"):
        HiMTok.from_pretrained(tmp_path / "extra.pth", config=tiny_official())
    torch.save({**state, "quantize.embedding.weight": torch.zeros(1024, 8)}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"quantize\.embedding\.weight: file \(1024, 8\)"):
        HiMTok.from_pretrained(tmp_path / "shape.pth", config=tiny_official())


def test_unsafe_pickles_are_refused(tmp_path):
    torch.save({"weights": Path("x")}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match="weights-only"):
        HiMTok.from_pretrained(tmp_path / "unsafe.pth", config=tiny_official())


def test_masktok_folder_round_trip_keeps_official_layout(tmp_path, tiny_model):
    tok = HiMTok(model=tiny_model)
    tok.save_pretrained(tmp_path / "folder")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["config.json", "model.safetensors"]
    loaded = HiMTok.from_pretrained(tmp_path / "folder")
    assert loaded.config == tiny_official()
    masks = torch.zeros(2, 90, 70, dtype=torch.bool)
    masks[0, 10:50, 10:60] = True
    masks[1, 40:80, 5:25] = True
    assert torch.equal(loaded.encode(None, masks), tok.encode(None, masks))
