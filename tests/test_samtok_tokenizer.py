"""SAMTok public API on a tiny random model: the reference pipeline, one encoding per image,
partial and invalid codes, caches, batching, words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from masktok.masks import masks_to_boxes
from masktok.tokenizers.base import MaskTokenizer
from masktok.tokenizers.samtok import ImageEmbeddingCache, SAMTok, tiny_test_config
from masktok.tokenizers.samtok.preprocess import IMAGENET_MEAN, IMAGENET_STD, mask_boxes

CONFIG = tiny_test_config()
H, W = 48, 64


@pytest.fixture(scope="module")
def tok() -> SAMTok:
    return SAMTok.from_config(CONFIG, seed=0)


def _image(seed: int = 0, size=(H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _masks(count: int = 4, seed: int = 0, size=(H, W)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, *size), dtype=bool)
    for m in masks:
        y0, x0 = rng.integers(0, size[0] - 8), rng.integers(0, size[1] - 8)
        m[y0: y0 + rng.integers(3, 20), x0: x0 + rng.integers(3, 30)] = True
        m[rng.integers(0, size[0]), rng.integers(0, size[1])] = True  # a stray pixel widens the box
    return masks


def _reference_encode_decode(tok: SAMTok, image: np.ndarray, masks: np.ndarray):
    """The reference's step order, written independently: image repeated once per mask, PIL
    bicubic stretch, /255 then mean/std, box from pixel indices / (W,H,W,H) × S, per-mask bilinear
    antialias prompt, ``level-by-level argmin``, decode with the quantized sum."""
    model, s, m = tok.model, CONFIG.image_size, CONFIG.mask_size
    pixels = torch.from_numpy(np.asarray(Image.fromarray(image).resize((s, s), Image.BICUBIC)))
    pixels = pixels.permute(2, 0, 1).float() / 255.0
    pixels -= torch.tensor(IMAGENET_MEAN)[:, None, None]
    pixels /= torch.tensor(IMAGENET_STD)[:, None, None]
    codes, logits = [], []
    for mask in masks:
        feats = model.image_features(pixels[None])  # the image encoded again for every mask
        ys, xs = np.nonzero(mask)
        box = torch.tensor([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=torch.float32)
        box = box / torch.tensor([W, H, W, H], dtype=torch.float32) * s
        prompt = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(m, m), mode="bilinear",
                               align_corners=False, antialias=True)
        zero = torch.zeros(1, dtype=torch.long)
        emb = model.mask_embeddings(feats, zero, box, prompt)
        residual, chosen = emb.clone(), []
        for book in model.quantizer.codebooks:
            d = (residual ** 2).sum(1, keepdim=True) + (book.codewords ** 2).sum(1)[None] - 2 * residual @ book.codewords.T
            c = d.argmin(1)
            chosen.append(c)
            residual = residual - book.codewords[c]
        code = torch.stack(chosen, 1)
        quant = sum(book.codewords[code[:, i]] for i, book in enumerate(model.quantizer.codebooks))
        lg, iou = model.decode_logits(feats, zero, quant)
        low = lg[0, iou[0].argmax()]
        logits.append(F.interpolate(low[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0])
        codes.append(code[0])
    return torch.stack(codes), torch.stack(logits)


def test_is_a_mask_tokenizer(tok):
    assert isinstance(tok, MaskTokenizer)
    assert tok.vocabulary.name == "samtok" and tok.vocabulary.codebook_size == CONFIG.codebook_size


def test_matches_the_per_mask_reference_pipeline(tok):
    image, masks = _image(), _masks(5)
    with torch.no_grad():
        ref_codes, ref_logits = _reference_encode_decode(tok, image, masks)
    codes = tok.encode(image, masks)
    assert codes.dtype == torch.int64 and codes.shape == (5, 2)
    assert torch.equal(codes, ref_codes)
    logits = tok.decode(image, codes, return_logits=True)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    assert torch.equal(tok.decode(image, codes), ref_logits > 0.5)


def test_boxes_are_tight_inclusive_pixel_indices():
    masks = _masks(6, seed=3)
    assert np.array_equal(mask_boxes(torch.from_numpy(masks)).numpy(), masks_to_boxes(masks))


def test_image_is_encoded_once_for_all_masks_and_calls(tok):
    calls = []
    encoder = tok._encoder
    tok._encoder = lambda pixels: calls.append(pixels.shape[0]) or encoder(pixels)
    try:
        image, masks = _image(1), _masks(6, seed=1)
        codes = tok.encode(image, masks)
        assert calls == [1]
        cache = ImageEmbeddingCache()
        assert torch.equal(tok.encode(image, masks, cache=cache), codes)
        tok.decode(image, codes, cache=cache)
        tok.encode(image, masks[:2], cache=cache)
        assert calls == [1, 1] and cache.hits == 2 and len(cache) == 1
        emb = tok.embed_image(image)
        assert torch.equal(tok.encode(emb, masks), codes)
        torch.testing.assert_close(tok.decode(emb, codes, return_logits=True),
                                   tok.decode(image, codes, return_logits=True), rtol=0, atol=0)
    finally:
        tok._encoder = encoder


def test_encode_stream_reads_lazily_and_keeps_the_order(tok):
    images = [_image(i, size=(H + 2 * i, W)) for i in range(7)]
    masks = [_masks(i % 3 + 1, seed=i, size=im.shape[:2]) for i, im in enumerate(images)]
    masks[3] = masks[3][:0]
    read = []

    def pairs():
        for i, pair in enumerate(zip(images, masks)):
            read.append(i)
            yield pair

    stream = tok.encode_stream(pairs(), batch_size=2)
    first = next(stream)
    assert len(read) <= 6  # two chunks read, the third being prepared: not the whole input
    streamed = [first, *stream]
    assert len(read) == 7
    assert all(torch.equal(a, b) for a, b in zip(streamed, tok.encode_batch(images, masks, batch_size=3)))
    assert streamed[3].shape == (0, 2)


def test_an_empty_mask_in_a_stream_is_named(tok):
    images = [_image(i) for i in range(5)]
    masks = [_masks(2, seed=i) for i in range(5)]
    masks[3][1] = False
    with pytest.raises(ValueError, match=r"masks\[3\]\[1\] is empty"):
        list(tok.encode_stream(zip(images, masks), batch_size=2))


def test_compiled_mask_side_sees_padded_counts(tok):
    """With ``compile=True`` the mask side gets counts padded to a multiple of 16 and the padding
    is dropped (checked with the eager function in the compiled one's place)."""
    image, masks, sixteen = _image(5), _masks(5, seed=5), _masks(16, seed=6)
    eager, eager_sixteen = tok.encode(image, masks), tok.encode(image, sixteen)
    counts = []

    def recorder(rows, boxes, prompts):
        counts.append(boxes.shape[0])
        return tok._mask_codes(rows, boxes, prompts)

    tok._compiled_mask_codes = recorder
    try:
        assert torch.equal(tok.encode(image, masks), eager)
        assert torch.equal(tok.encode(image, sixteen), eager_sixteen)
    finally:
        tok._compiled_mask_codes = None
    assert counts == [16, 16]


@pytest.mark.slow
def test_batched_calls_equal_single_calls(tok):
    images = [_image(i, size=(H + 4 * i, W - 2 * i)) for i in range(5)]
    masks = [_masks(i % 3 + 1, seed=i, size=im.shape[:2]) for i, im in enumerate(images)]
    masks[2] = masks[2][:0]
    batched = tok.encode_batch(images, masks, batch_size=2)
    singles = [tok.encode(im, mk) for im, mk in zip(images, masks)]
    assert all(torch.equal(a, b) for a, b in zip(batched, singles))
    assert batched[2].shape == (0, 2)
    decoded = tok.decode_batch(images, batched, batch_size=3, return_logits=True)
    for im, codes, out in zip(images, batched, decoded):
        assert out.shape == (codes.shape[0], *im.shape[:2])
        torch.testing.assert_close(out, tok.decode(im, codes, return_logits=True), rtol=0, atol=1e-5)


def test_zero_masks_in_zero_codes_out(tok):
    image = _image()
    codes = tok.encode(image, np.zeros((0, H, W), dtype=bool))
    assert codes.shape == (0, 2) and codes.dtype == torch.int64
    assert tok.encode(image, []).shape == (0, 2)
    assert tok.decode(image, codes).shape == (0, H, W)
    assert tok.decode(image, torch.zeros(0, 1, dtype=torch.long)).shape == (0, H, W)


def test_level0_only_decodes_with_the_level0_codeword_alone(tok):
    image, masks = _image(2), _masks(3, seed=2)
    codes = tok.encode(image, masks)
    prefix = tok.decode(image, codes[:, :1], return_logits=True)
    padded = tok.decode(image, torch.stack([codes[:, 0], torch.full_like(codes[:, 0], -1)], 1), return_logits=True)
    torch.testing.assert_close(prefix, padded, rtol=0, atol=0)
    with torch.no_grad():
        feats = tok.embed_image(image).features
        level0 = tok.model.quantizer.codebooks[0].codewords[codes[:, 0]]
        logits, iou = tok.model.decode_logits(feats, torch.zeros(3, dtype=torch.long), level0)
        low = tok.model.best_mask(logits, iou)
    expected = F.interpolate(low[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(prefix, expected, rtol=0, atol=1e-5)
    aliased = tok.decode(image, torch.stack([codes[:, 0], torch.zeros_like(codes[:, 0])], 1), return_logits=True)
    assert not torch.allclose(prefix, aliased), "level 1 must not silently become code 0"


@pytest.mark.parametrize("codes, message", [
    ([[16, 0]], "outside"),
    ([[3, 16]], "outside"),
    ([[-1, 3]], "level-0"),
    ([[1, 2, 3]], "1 to 2 codes"),
    ([[1.5, 2.0]], "integer"),
    ([1, 2], "shape"),
])
def test_invalid_codes_raise(tok, codes, message):
    with pytest.raises(ValueError, match=message):
        tok.decode(_image(), codes)


def test_threshold_and_size_parameters(tok):
    image, masks = _image(4), _masks(2, seed=4)
    codes = tok.encode(image, masks)
    logits = tok.decode(image, codes, return_logits=True)
    for threshold in (-5.0, 0.0, 0.5):
        assert torch.equal(tok.decode(image, codes, threshold=threshold), logits > threshold)
    assert tok.decode(image, codes, size=(20, 30)).shape == (2, 20, 30)


@pytest.mark.parametrize("masks, message", [
    (np.zeros((1, H, W + 1), dtype=bool), "image is"),
    (np.full((1, H, W), 2, dtype=np.uint8), "binary"),
    (np.zeros((1, H, W), dtype=bool), "empty"),
    (np.zeros((H, W), dtype=bool), "shape"),
    (np.full((1, H, W), np.nan), "NaN"),
])
def test_invalid_masks_raise(tok, masks, message):
    with pytest.raises(ValueError, match=message):
        tok.encode(_image(), masks)


def test_integer_and_tensor_masks_are_accepted(tok):
    image, masks = _image(), _masks(2)
    codes = tok.encode(image, masks)
    assert torch.equal(tok.encode(image, masks.astype(np.uint8)), codes)
    assert torch.equal(tok.encode(image, torch.from_numpy(masks)), codes)
    assert torch.equal(tok.encode(Image.fromarray(image), list(masks)), codes)


def test_invalid_images_raise(tok):
    with pytest.raises(ValueError, match="uint8"):
        tok.encode(np.zeros((H, W, 3), dtype=np.float32), _masks(1))
    with pytest.raises(FileNotFoundError):
        tok.encode("/nonexistent/image.png", _masks(1))


def test_words_roundtrip(tok):
    image, masks = _image(5), _masks(3, seed=5)
    codes = tok.encode(image, masks)
    words = tok.encode_words(image, masks)
    vocab = tok.vocabulary
    assert words[0] == (f"<|mt_start|>{vocab.code_token(0, int(codes[0, 0]))}"
                        f"{vocab.code_token(1, int(codes[0, 1]))}<|mt_end|>")
    assert vocab.code_token(1, 3) == f"<|mt_{CONFIG.codebook_size + 3:04d}|>"
    text = f"The cat {words[0]} and the dog {words[1]}{words[2]}."
    result = tok.decode_words(image, text)
    assert result.decoded_span_indices == [0, 1, 2]
    assert torch.equal(result.masks, tok.decode(image, codes))
    first = result.spans[0]
    assert text[first.start: first.end] == words[0]


def test_lenient_words_decode_a_level0_only_word(tok):
    image, masks = _image(6), _masks(1, seed=6)
    code = tok.encode(image, masks)[0]
    text = f"<|mt_start|>{tok.vocabulary.code_token(0, int(code[0]))}<|mt_end|>"
    result = tok.decode_words(image, text, lenient=True)
    assert result.decoded_span_indices == [0] and result.spans[0].repairs
    assert torch.equal(result.masks, tok.decode(image, code[None, :1]))
    with pytest.raises(ValueError):
        tok.decode_words(image, text, lenient=False)


def test_embedding_from_another_tokenizer_is_refused(tok):
    other = SAMTok.from_config(CONFIG, seed=1)
    with pytest.raises(ValueError, match="another tokenizer"):
        tok.encode(other.embed_image(_image()), _masks(1))


def test_cuda_graph_capture_needs_a_cuda_device(tok):
    with pytest.raises(ValueError, match="CUDA"):
        tok.capture_image_encoder([1])
