"""HiMTok's optional SAM refinement (paper §3 and Appendix C) on transformers' Sam2Model: the
prompts, loading (masktok folder, Meta file), refinement on and off in chat / decode / eval, and
the fine-tuning recipe whose loss falls on real masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from masktok.cli import app
from masktok.masks import read_mask_png, write_mask_png
from masktok.tokenizers.refine import RefinedTokenizer, SAMRefiner, refine_prompts, with_refinement
from masktok.tokenizers.refine.checkpoint import sam2_state_to_meta
from masktok.tokenizers.samtok.checkpoint import CheckpointError
from masktok.tokenizers.samtok.config import tiny_test_config
from masktok.train.refiner import RefinerTraining, imperfect_probabilities, train_refiner
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import build_tiny_himtok, tiny_image

CONFIG = tiny_test_config()


@pytest.fixture(scope="module")
def refiner():
    return SAMRefiner.from_config(CONFIG, seed=0)


def test_prompts_follow_the_official_rule():
    probs = torch.zeros(3, 64, 64)
    probs[0, 10:30, 20:40] = 1.0  # compact, inside: foreground point at its centre
    probs[1, :, ::2] = 1.0  # ragged (4π·area / perimeter² ≈ 0.02) and on the border: background point
    prompts = refine_prompts(probs, mask_size=64, image_size=256)  # m = S/4
    assert prompts.mask_logits.shape == (3, 1, 64, 64)
    assert prompts.mask_logits.max() == pytest.approx(6.0) and prompts.mask_logits.min() == pytest.approx(-6.0)
    assert prompts.points[0, 0, 0].tolist() == pytest.approx([29.5 * 4, 19.5 * 4])
    assert prompts.labels.flatten().tolist() == [1, 0, 1]
    assert prompts.points[2, 0, 0].tolist() == [128.0, 128.0]  # empty mask: the frame centre
    half = refine_prompts(probs[:1], mask_size=32, image_size=128)  # other sizes are resized to m×m
    assert half.mask_logits.shape == (1, 1, 32, 32) and half.points[0, 0, 0].tolist() == pytest.approx(
        [29.5 * 2, 19.5 * 2], abs=1.5)
    with pytest.raises(ValueError, match="probabilities"):
        refine_prompts(probs * 2, mask_size=32, image_size=128)


def test_refiner_loads_from_its_folder_and_from_a_meta_file(refiner, tmp_path):
    image = tiny_image()
    probs = torch.zeros(2, 48, 64)
    probs[0, 5:30, 5:40] = 0.9
    probs[1, 20:45, 30:60] = 0.7
    expected = refiner.refine(image, probs, return_logits=True)
    assert expected.shape == (2, 48, 64)
    refiner.save_pretrained(tmp_path / "folder")
    torch.testing.assert_close(SAMRefiner.from_pretrained(tmp_path / "folder").refine(image, probs, return_logits=True),
                               expected, rtol=0, atol=0)
    torch.save({"model": sam2_state_to_meta(refiner.model, CONFIG)}, tmp_path / "sam2.1_hiera_tiny.pt")
    meta = SAMRefiner.from_pretrained(tmp_path / "sam2.1_hiera_tiny.pt", config=CONFIG)
    torch.testing.assert_close(meta.refine(image, probs, return_logits=True), expected, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="matches no SAM 2.1 preset; pass config="):
        SAMRefiner.from_pretrained(tmp_path / "sam2.1_hiera_tiny.pt")
    state = torch.load(tmp_path / "sam2.1_hiera_tiny.pt", weights_only=True)
    state["model"]["sam_mask_decoder.stray.weight"] = torch.zeros(1)
    (tmp_path / "stray").mkdir()
    torch.save(state, tmp_path / "stray" / "sam2.1_hiera_tiny.pt")
    with pytest.raises(CheckpointError, match="stray.weight"):
        SAMRefiner.from_pretrained(tmp_path / "stray", config=CONFIG)


def test_refinement_is_applied_only_when_asked(refiner):
    himtok = build_tiny_himtok()
    image = tiny_image()
    mask = np.zeros((1, 48, 64), dtype=bool)
    mask[0, 10:40, 8:50] = True
    codes = himtok.encode(None, mask)
    assert with_refinement(himtok, None) is himtok  # off: the tokenizer itself
    refined = with_refinement(himtok, "sam2", refiner)
    assert isinstance(refined, RefinedTokenizer) and refined.vocabulary is himtok.vocabulary
    plain = himtok.decode(None, codes, size=(48, 64), return_logits=True)
    expected = refiner.refine(image, torch.sigmoid(plain))
    np.testing.assert_array_equal(refined.decode(image, codes, size=(48, 64)).numpy(), expected.numpy())
    words = himtok.encode_words(None, mask)[0]
    decoded = refined.decode_words(image, f"It is {words}.", size=(48, 64))
    np.testing.assert_array_equal(decoded.masks.numpy(), expected.numpy())
    with pytest.raises(ValueError, match="needs the image"):
        refined.decode(None, codes, size=(48, 64))
    with pytest.raises(ValueError, match="needs a refiner"):
        with_refinement(himtok, "sam2")
    with pytest.raises(ValueError, match="expected one of"):
        with_refinement(himtok, "sam3", refiner)


def test_chat_and_decode_cli_refine_on_request(refiner, tmp_path):
    from mllm_fixtures import ScriptedAnswers, TinyVLMConfig, build_tiny_chat, script_ids

    from masktok.mllm import MaskChat

    chat = build_tiny_chat(build_tiny_himtok(), TinyVLMConfig(family="qwen2_5_vl"))
    chat.save_pretrained(tmp_path / "chat")
    refiner.save_pretrained(tmp_path / "chat" / "refiner")
    image = tiny_image()
    mask = np.zeros((1, 48, 64), dtype=bool)
    mask[0, 10:40, 8:50] = True
    words = chat.mask_tokenizer.encode_words(None, mask)[0]

    def answer(session):
        eos = session.tokenizer.convert_tokens_to_ids("<|im_end|>")
        processors = (ScriptedAnswers([script_ids(session.tokenizer, f"At {words}.")], eos),)
        return session.ask(image, "Please segment the dog.", logits_processors=processors, max_new_tokens=14)

    plain = answer(MaskChat.from_pretrained(tmp_path / "chat"))
    refined = answer(MaskChat.from_pretrained(tmp_path / "chat", refine="sam2"))
    codes = chat.mask_tokenizer.encode(None, mask)
    base = chat.mask_tokenizer.decode(None, codes, size=(48, 64), return_logits=True)
    np.testing.assert_array_equal(plain.decoded_masks, (torch.sigmoid(base) > 0.5).numpy())
    np.testing.assert_array_equal(refined.decoded_masks, refiner.refine(image, torch.sigmoid(base)).numpy())

    image.save(tmp_path / "photo.png")
    chat.mask_tokenizer.save_pretrained(tmp_path / "tok")
    args = ["decode", "--tokenizer", str(tmp_path / "tok"), "--image", str(tmp_path / "photo.png"), "--words", words]
    off = CliRunner().invoke(app, args)
    on = CliRunner().invoke(app, args + ["--refine", "sam2", "--refiner", str(tmp_path / "chat" / "refiner")])
    assert off.exit_code == 0 and on.exit_code == 0, on.output
    from masktok.masks import rle_to_mask

    got = rle_to_mask(json.loads(on.output)["spans"][0]["rle"])
    np.testing.assert_array_equal(got, refined.decoded_masks[0])
    missing = CliRunner().invoke(app, args + ["--refine", "sam2"])
    assert missing.exit_code != 0 and "needs a refiner" in missing.output and "Traceback" not in missing.output
    chatted = CliRunner().invoke(app, ["chat", str(tmp_path / "chat"), "--image", str(tmp_path / "photo.png"),
                                       "--prompt", "Segment it.", "--refine", "sam2", "--out", str(tmp_path / "o"),
                                       "--max-new-tokens", "4"])
    assert chatted.exit_code == 0, chatted.output


def test_eval_cli_refines_text_answers(refiner, test_data, tmp_path):
    from masktok.masks import mask_to_rle

    root = test_data / "refseg_examples"
    record = json.loads((root / "anns" / "seg_data_with_mask.jsonl").read_text().splitlines()[0])
    gt = read_mask_png(root / record["mask"], threshold=127)
    himtok = build_tiny_himtok()
    himtok.save_pretrained(tmp_path / "tok")
    refiner.save_pretrained(tmp_path / "refiner")
    words = himtok.encode_words(None, gt[None])[0]
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "a", "answer": f"It is {words}."}) + "\n")
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "a", "height": gt.shape[0], "width": gt.shape[1],
                                                  "sentence": "road", "masks": [mask_to_rle(gt)],
                                                  "file_name": record["image"]}) + "\n")
    common = ["eval", "res", "-p", str(tmp_path / "p.jsonl"), "-a", str(tmp_path / "a.jsonl"), "--tokenizer",
              str(tmp_path / "tok"), "--images", str(root)]
    off = CliRunner().invoke(app, common + ["-o", str(tmp_path / "off")])
    on = CliRunner().invoke(app, common + ["-o", str(tmp_path / "on"), "--refine", "sam2", "--refiner",
                                           str(tmp_path / "refiner")])
    assert off.exit_code == 0 and on.exit_code == 0, on.output
    metrics = [json.loads((tmp_path / name / "metrics.json").read_text())["metrics"] for name in ("off", "on")]
    image = Image.open(root / record["image"]).convert("RGB")
    probs = torch.sigmoid(himtok.decode(None, himtok.encode(None, gt[None]), size=gt.shape, return_logits=True))
    refined = refiner.refine(image, probs)[0].numpy()
    iou = (refined & gt).sum() / (refined | gt).sum()
    assert metrics[1]["gIoU"] == pytest.approx(float(iou), abs=1e-6)
    assert metrics[0]["gIoU"] != metrics[1]["gIoU"]


def test_fine_tuning_loss_falls_on_real_masks(test_data):
    root = test_data / "refseg_examples"
    samples = []
    for i in range(4):
        image = Image.open(root / "images" / f"{i}.jpg").convert("RGB")
        samples.append((image, read_mask_png(root / "masks" / f"{i}.png", threshold=127)[None]))
    refiner = SAMRefiner.from_config(CONFIG, seed=0)
    encoder_before = {k: v.clone() for k, v in refiner.model.vision_encoder.state_dict().items()}
    himtok = build_tiny_himtok()
    config = RefinerTraining(steps=40, learning_rate=3e-3, log_every=10)
    result = train_refiner(refiner, himtok, samples, config, progress=False)
    assert result.steps == 40
    assert np.mean(result.losses[-10:]) < 0.9 * np.mean(result.losses[:10])
    for key, value in refiner.model.vision_encoder.state_dict().items():  # the image encoder is frozen
        assert torch.equal(value, encoder_before[key]), key
    # The masks it learns from are imperfect on purpose: fewer codes, dilated or eroded.
    generator = torch.Generator().manual_seed(0)
    masks = torch.from_numpy(np.stack([s[1][0] for s in samples[2:3]]))
    probs = imperfect_probabilities(himtok, masks, RefinerTraining(min_codes=1, morph_probability=1.0), generator)
    full = torch.sigmoid(himtok.decode(None, himtok.encode(None, masks), size=tuple(masks.shape[1:]),
                                       return_logits=True))
    assert probs.shape == masks.shape and not torch.equal(probs > 0.5, full > 0.5)
