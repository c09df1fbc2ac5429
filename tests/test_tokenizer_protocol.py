"""The tokenizer protocol every family follows: its capabilities, the empty-mask policy, saving and
loading (local paths and hub repository ids), memory bounded by the masks asked for, and a third
family (tests/box_family.py) that plugs in without editing any caller."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from box_family import FAMILY as BOX_FAMILY, BoxModel, BoxTok
from masktok.tokenizers import (
    ABSENT_CODE,
    MaskTokenizer,
    load_tokenizer,
    register_tokenizer_family,
    tokenizer_type,
    unregister_tokenizer_family,
)
from masktok.tokenizers.himtok import HiMTok
from masktok.tokenizers.samtok import SAMTok, tiny_test_config
from mllm_fixtures import build_tiny_himtok

H, W = 48, 64


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _masks() -> np.ndarray:
    masks = np.zeros((3, H, W), dtype=bool)
    masks[0, 5:30, 8:40] = True
    masks[2, 20:44, 30:60] = True  # masks[1] stays empty
    return masks


@pytest.fixture(scope="module")
def boxtok_registered():
    register_tokenizer_family(BOX_FAMILY, BoxTok)
    yield
    unregister_tokenizer_family(BOX_FAMILY)


@pytest.fixture(scope="module", params=["himtok", "samtok", "boxtok"])
def tok(request, boxtok_registered):
    if request.param == "himtok":
        return build_tiny_himtok(seed=0)
    if request.param == "samtok":
        return SAMTok.from_config(tiny_test_config(), seed=0)
    return BoxTok(model=BoxModel(16))


def test_every_family_offers_the_whole_protocol(tok):
    assert isinstance(tok, MaskTokenizer)
    image, masks = _image(), _masks()[[0, 2]]
    given = image if tok.needs_image else None
    codes = tok.encode(given, masks)
    vocab = tok.vocabulary
    assert codes.shape == (2, vocab.max_codes) and codes.dtype == torch.int64
    assert vocab.min_codes <= vocab.max_codes and tok.max_codes == vocab.max_codes
    embedded = tok.embed_image(given)
    assert torch.equal(tok.encode(embedded, masks), codes)
    batch = tok.encode_batch([given, given], [masks, masks[:1]], batch_size=2)
    stream = list(tok.encode_stream(iter([(given, masks), (given, masks[:1])]), batch_size=1))
    assert all(torch.equal(a, b) for a, b in zip(batch, [codes, codes[:1]]))
    assert all(torch.equal(a, b) for a, b in zip(stream, batch))
    decoded = tok.decode(embedded, codes, size=(H, W))
    assert decoded.shape == (2, H, W) and decoded.dtype == torch.bool
    shorter = tok.decode(embedded, codes, size=(H, W), lengths=torch.tensor([vocab.min_codes, vocab.max_codes]))
    assert shorter.shape == (2, H, W) and torch.equal(shorter[1], decoded[1])
    assert [d.shape for d in tok.decode_batch([embedded, embedded], [codes, codes[:1]], sizes=[(H, W), (8, 8)])] \
        == [(2, H, W), (1, 8, 8)]
    words = tok.encode_words(embedded, masks)
    result = tok.decode_words(embedded, f"first {words[0]} then {words[1]}.", size=(H, W))
    assert result.decoded_span_indices == [0, 1] and torch.equal(result.masks, decoded)
    tok.capture_image_encoder([1]) if tok.device.type == "cuda" else None


def test_empty_and_zero_masks_follow_one_policy(tok):
    image, masks = _image(), _masks()
    given = image if tok.needs_image else None
    with pytest.raises(ValueError, match=r"masks\[1\] is empty.*empty_masks='skip'"):
        tok.encode(given, masks)
    with pytest.raises(ValueError, match=r"masks\[1\]\[1\] is empty"):
        tok.encode_batch([given, given], [masks[:1], masks])
    present = tok.encode(given, masks[[0, 2]])
    assert torch.equal(tok.encode(given, masks, empty_masks="skip"), present)
    kept = tok.encode(given, masks, empty_masks="keep")
    assert (kept[1] == ABSENT_CODE).all() and torch.equal(kept[[0, 2]], present)
    words = tok.encode_words(given, masks, empty_masks="keep")
    assert words[1] is None and words[0] == tok.encode_words(given, masks[:1])[0]
    decoded = tok.decode(given, kept, size=(H, W))
    assert not decoded[1].any() and torch.equal(decoded[[0, 2]], tok.decode(given, present, size=(H, W)))
    zero = np.zeros((0, H, W), dtype=bool)
    assert tok.encode(given, zero).shape == (0, tok.max_codes)
    assert tok.encode(given, zero, num_codes=1).shape == (0, 1) and tok.encode_words(given, zero) == []
    assert tok.decode(given, torch.zeros(0, tok.max_codes, dtype=torch.long), size=(H, W)).shape == (0, H, W)
    with pytest.raises(ValueError, match="empty_masks: expected one of"):
        tok.encode(given, masks, empty_masks="drop")


def test_every_family_decodes_to_host_device_or_rle(tok):
    """``output`` is a decode option of every family (HiMTok makes device masks and RLE itself, the
    others are converted); absent rows stay empty masks in every output."""
    from masktok.masks import rles_to_masks

    given = _image() if tok.needs_image else None
    kept = tok.encode(given, _masks(), empty_masks="keep")
    host = tok.decode(given, kept, size=(H, W))
    device = tok.decode(given, kept, size=(H, W), output="device")
    rles = tok.decode(given, kept, size=(H, W), output="rle")
    assert device.device == tok.device and torch.equal(device.cpu(), host)
    assert len(rles) == 3 and np.array_equal(rles_to_masks(rles), host.numpy()) and not host[1].any()
    absent_only = tok.decode(given, kept[[1]], size=(H, W), output="rle")
    assert len(absent_only) == 1 and not rles_to_masks(absent_only).any()
    assert [len(r) for r in tok.decode_batch([given, given], [kept, kept[:1]], sizes=[(H, W), (8, 8)],
                                             output="rle")] == [3, 1]
    with pytest.raises(ValueError, match="output must be one of"):
        tok.decode(given, kept, output="gpu")
    with pytest.raises(ValueError, match="cannot be combined with return_logits"):
        tok.decode(given, kept, output="rle", return_logits=True)


def test_save_pretrained_and_from_pretrained_in_every_layout(tok, tmp_path):
    masks = _masks()[[0, 2]]
    given = _image() if tok.needs_image else None
    codes = tok.encode(given, masks)
    layouts = ["masktok"] + (["official"] if tok.official_layout else [])
    for layout in layouts:
        folder = tmp_path / layout
        tok.save_pretrained(folder, layout=layout)
        assert tokenizer_type(folder) == tok.family
        # an official file holds weights only: a model of another size than the official one names its config
        options = {"config": tok.config} if layout == "official" else {}
        loaded = load_tokenizer(folder, **options)
        assert type(loaded) is type(tok) and torch.equal(loaded.encode(given, masks), codes)
        again = type(tok).from_pretrained(folder, **options)
        assert torch.equal(again.encode(given, masks), codes)
    if not tok.official_layout:
        with pytest.raises(ValueError, match="no official checkpoint format"):
            tok.save_pretrained(tmp_path / "x", layout="official")
    with pytest.raises(ValueError, match="layout: expected one of"):
        tok.save_pretrained(tmp_path / "y", layout="pickle")


def test_an_option_a_family_does_not_take_is_named(tmp_path):
    tok = build_tiny_himtok(seed=0)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"HiMTok does not take the option\(s\) \['compile'\]"):
        load_tokenizer(tmp_path, compile=True)
    assert load_tokenizer(tmp_path, mask_batch_size=2).mask_batch_size == 2
    with pytest.raises(TypeError):
        HiMTok(tok.model)  # keyword-only: model=


def _hub_cache(cache: Path, repo_id: str, folder: Path, revision: str) -> Path:
    """``folder``'s files laid out as the hub client caches them: blobs by hash, a snapshot of
    links to them, and refs/main naming the snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / path.name).symlink_to(Path("../../blobs") / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_hub_repository_ids_open_from_the_hub_cache_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    tok = build_tiny_himtok(seed=3)
    tok.save_pretrained(tmp_path / "saved")
    cache, revision = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    _hub_cache(cache, "org/tiny-himtok", tmp_path / "saved", revision)
    masks = _masks()[[0, 2]]
    codes = tok.encode(None, masks)
    loaded = load_tokenizer("org/tiny-himtok", cache_dir=cache, local_files_only=True)
    assert isinstance(loaded, HiMTok) and torch.equal(loaded.encode(None, masks), codes)
    pinned = HiMTok.from_pretrained("org/tiny-himtok", revision=revision, cache_dir=cache, local_files_only=True)
    assert torch.equal(pinned.encode(None, masks), codes)
    with pytest.raises(FileNotFoundError, match="org/absent.*not in the cache"):
        load_tokenizer("org/absent", cache_dir=cache, local_files_only=True)
    # the hub client's own settings: HF_HUB_CACHE and HF_HUB_OFFLINE
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert torch.equal(load_tokenizer("org/tiny-himtok").encode(None, masks), codes)
    with pytest.raises(FileNotFoundError, match="org/absent.*HF_HUB_OFFLINE"):
        load_tokenizer("org/absent")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_tokenizer(tmp_path / "nowhere")


def test_the_cli_opens_a_hub_repository_id_from_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants
    from typer.testing import CliRunner

    from masktok.cli import app

    tok = build_tiny_himtok(seed=3)
    tok.save_pretrained(tmp_path / "saved")
    _hub_cache(tmp_path / "hub", "org/tiny-himtok", tmp_path / "saved", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    word = CliRunner().invoke(app, ["words", "format", "-t", "org/tiny-himtok", "3", "7"])
    assert word.exit_code == 0, word.output
    assert word.stdout.strip() == "<|mt_start|><|mt_3|><|mt_7|><|mt_end|>"
    absent = CliRunner().invoke(app, ["words", "format", "-t", "org/absent", "3"])
    assert absent.exit_code == 2 and "org/absent" in absent.output and "HF_HUB_OFFLINE" in absent.output


def test_soft_decoding_is_a_named_capability(tok):
    """HiMTok decodes code probabilities; the other families say they cannot, in one clear error."""
    probs = tok.code_probs_from_logits(torch.randn(2, tok.max_codes, tok.vocabulary.codebook_size))
    assert torch.allclose(probs.sum(-1), torch.ones(2, tok.max_codes))
    if tok.soft_decoding:
        assert tok.decode_soft(probs, size=(H, W)).shape == (2, H, W)
    else:
        with pytest.raises(ValueError, match=f"{tok.display_name} has no soft decoding"):
            tok.decode_soft(probs, size=(H, W))


def test_a_decode_or_encode_option_a_family_does_not_take_is_named(tok):
    given = _image() if tok.needs_image else None
    codes = tok.encode(given, _masks()[[0]])
    with pytest.raises(ValueError, match=r"decoding does not take the option\(s\) \['colour'\]"):
        tok.decode(given, codes, colour="red")
    with pytest.raises(ValueError, match=r"decoding does not take the option\(s\) \['colour'\]"):
        tok.decode_words(given, "", colour="red")
    with pytest.raises(ValueError, match=r"encoding does not take the option\(s\) \['colour'\]"):
        tok.encode(given, _masks()[[0]], colour="red")


def test_a_refined_tokenizer_follows_the_protocol(tok):
    """The refinement wrapper reads the image (the refiner does) and is a MaskTokenizer itself."""
    from masktok.tokenizers.refine import RefinedTokenizer

    class Sharpen:  # a stand-in refiner: thresholds the wrapped tokenizer's probabilities at 0.5
        def refine(self, image, probs, size=None, return_logits=False):
            return (probs - 0.5) * 20 if return_logits else probs > 0.5

    refined = RefinedTokenizer(tok, Sharpen())
    assert isinstance(refined, MaskTokenizer) and refined.needs_image and refined.family == tok.family
    assert refined.soft_decoding == tok.soft_decoding and refined.vocabulary == tok.vocabulary
    image = _image()
    assert refined.embed_image(image) is image  # the refiner needs the pixels
    codes = refined.encode(image if tok.needs_image else None, _masks()[[0, 2]])
    logits = tok.decode(image if tok.needs_image else None, codes, size=(H, W), return_logits=True)
    plain = torch.sigmoid(logits.float()) > 0.5
    assert torch.equal(refined.decode(image, codes, size=(H, W)), plain)
    assert [m.shape for m in refined.decode_batch([image, image], [codes, codes[:1]], sizes=[(H, W), (8, 8)])] \
        == [(2, H, W), (1, 8, 8)]
    with pytest.raises(ValueError, match="refinement needs the image"):
        refined.decode(None, codes)


def test_official_files_with_their_sidecar_config_open_without_options(tmp_path):
    """An official file of another size than the published model: the family's
    ``<family>_config.json`` beside it says what it is."""
    for tok in (build_tiny_himtok(seed=0), SAMTok.from_config(tiny_test_config(), seed=0)):
        folder = tmp_path / tok.family
        tok.save_pretrained(folder, layout="official")
        (folder / type(tok).sidecar_config_name()).write_text(json.dumps(tok.config.to_dict()))
        loaded = load_tokenizer(folder)
        given = _image() if tok.needs_image else None
        assert torch.equal(loaded.encode(given, _masks()[[0]]), tok.encode(given, _masks()[[0]]))
        assert sorted(p.name for pattern in type(tok).official_files for p in folder.glob(pattern)) \
            == sorted(p.name for p in folder.iterdir())


def test_decode_words_work_grows_with_the_chunk_not_with_the_text(monkeypatch):
    """1,000 spans are decoded 64 at a time into one bool result; the result equals one big call."""
    tok = build_tiny_himtok(seed=1)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, tok.vocabulary.codebook_size, (1000, tok.max_codes))
    from masktok.words import format_mask_words

    text = " and ".join(format_mask_words(row.tolist(), tok.vocabulary) for row in codes)
    calls: list[int] = []
    original = type(tok)._decode_pairs

    def recording(self, images, codes, **kwargs):
        calls.extend(c.shape[0] for c in codes)
        return original(self, images, codes, **kwargs)

    monkeypatch.setattr(type(tok), "_decode_pairs", recording)
    result = tok.decode_words(None, text, size=(24, 32), chunk_size=64)
    assert calls == [64] * 15 + [40] and len(calls) == math.ceil(1000 / 64)
    assert result.masks.shape == (1000, 24, 32) and result.masks.dtype == torch.bool
    calls.clear()
    whole = tok.decode_words(None, text, size=(24, 32), chunk_size=1000)
    assert calls == [1000] and torch.equal(whole.masks, result.masks)
    with pytest.raises(ValueError, match="1000 decodable mask spans, more than max_spans=999"):
        tok.decode_words(None, text, size=(24, 32), max_spans=999)


def test_a_third_family_plugs_in_without_editing_any_caller(boxtok_registered, tmp_path):
    """BoxTok is registered by the test alone; the registry, the dataset tokenization, the SFT
    words, the chat conversation, the evaluation loader and the demo all take it as it is."""
    from masktok.data.sft import TokenizerWords
    from masktok.data.sft.mask_words import ImageEntry, MaskRef
    from masktok.data.tokenize.pipeline import TokenizeConfig, tokenize_dataset
    from masktok.data.tokenize.shards import DatasetSource
    from masktok.demo.models import describe_tokenizer
    from masktok.eval.runner import load_tokenizer as eval_load_tokenizer
    from masktok.masks import masks_to_rles
    from masktok.mllm.conversation import Conversation
    from masktok.words import parse_mask_words

    BoxTok(model=BoxModel(16)).save_pretrained(tmp_path / "box")
    tok = load_tokenizer(tmp_path / "box")
    assert isinstance(tok, BoxTok) and isinstance(eval_load_tokenizer(tmp_path / "box", "boxtok"), BoxTok)
    assert describe_tokenizer(tok) == "BoxTok · 4 codes per mask (codebook 16)"
    masks = _masks()[[0, 2]]
    text = " ".join(tok.encode_words(None, masks))
    assert [s.codes for s in parse_mask_words(text, tok.vocabulary)] == [(2, 1, 9, 9), (7, 6, 14, 14)]
    assert Conversation.start(_image()).tokenizer_image(tok) is not None

    rles = masks_to_rles(masks)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
            "annotations": [{"id": 10 + i, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": {"size": r["size"], "counts": r["counts"]}, "bbox": [0, 0, 1, 1]}
                            for i, r in enumerate(rles)],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, default=lambda b: b.decode()))
    report = tokenize_dataset(DatasetSource("coco", annotations=tmp_path / "coco.json", images=tmp_path),
                              tok, TokenizeConfig(output_dir=tmp_path / "out", num_workers=0, progress=False))
    assert report.complete and report.masks == 2
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pydict()
    assert table["words"] == text.split(" ")

    words = TokenizerWords(tok).codes(ImageEntry("1", tmp_path / "a.jpg", H, W), [MaskRef(r) for r in rles])
    assert words == [(2, 1, 9, 9), (7, 6, 14, 14)]
