"""The demo's callbacks without a browser: input parsing, the sample catalog, the Tokenize /
Decode / Chat tab callbacks (tiny random HiMTok, SAMTok and VLM), model loading and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the demo needs the [demo] extra (gradio)")

from masktok.demo import DemoInputError, DemoModels, SampleCatalog, build_app, load_demo_models
from masktok.demo.highlight import MarkedSpan, highlighted_text
from masktok.demo.inputs import (editor_image, editor_masks, editor_value, read_image_file,
                                 read_mask_file)
from masktok.demo.models import load_default_tokenizer
from masktok.demo.tabs import ChatTab, DecodeTab, TokenizeTab
from masktok.demo.tabs.chat import NO_MODEL_NOTE
from masktok.demo.tabs.tokenize import MASK_FROM_BRUSH, MASK_FROM_FILE, tokenize_mask
from masktok.masks import mask_to_rle, masks_to_rles, write_mask_png
from masktok.masks.render import render_masks
from masktok.words import SAMTOK_VOCABULARY, format_mask_words, parse_mask_words
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import (ScriptedAnswers, box_mask, build_tiny_chat, build_tiny_himtok,
                           build_tiny_samtok, script_ids)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return SampleCatalog(folder=tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def himtok():
    return build_tiny_himtok(seed=1)


@pytest.fixture(scope="module")
def models(himtok, catalog):
    return DemoModels(tokenizer=himtok, samples=catalog)


def status_of(outputs) -> str:
    return outputs[-1]


def stroke_layer(mask: np.ndarray) -> Image.Image:
    """An RGBA editor layer painted (opaque red) where ``mask`` is True."""
    rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba[mask] = (255, 59, 48, 255)
    return Image.fromarray(rgba, mode="RGBA")


# ---- inputs ------------------------------------------------------------------------------------
def test_read_image_file_rejects_non_images_by_name(tmp_path):
    good = tmp_path / "photo.png"
    Image.new("RGBA", (7, 5), (1, 2, 3, 255)).save(good)
    image = read_image_file(good)
    assert image.mode == "RGB" and image.size == (7, 5)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(DemoInputError, match="image file: notes.txt is not an image"):
        read_image_file(bad)
    with pytest.raises(DemoInputError, match="missing"):
        read_image_file(tmp_path / "gone.png")


def test_read_mask_file_png_and_rle_json_forms(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.random((9, 13)) > 0.5
    write_mask_png(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.png"), mask)
    rle = mask_to_rle(mask)
    forms = {"plain.json": rle, "list.json": [rle], "ann.json": {"segmentation": rle, "id": 3},
             "uncompressed.json": mask_to_rle(mask, compressed=False)}
    for name, doc in forms.items():
        (tmp_path / name).write_text(json.dumps(doc))
        np.testing.assert_array_equal(read_mask_file(tmp_path / name), mask, err_msg=name)


@pytest.mark.parametrize("name, content, message", [
    ("two.json", json.dumps(masks_to_rles(np.ones((2, 4, 4), bool))), "holds 2 entries"),
    ("bad.json", "{not json", "not valid JSON"),
    ("other.json", json.dumps({"size": [4, 4]}), "not a COCO RLE"),
    ("short.json", json.dumps({"size": [4, 4], "counts": [3, 2]}), "runs add up to 5"),
    ("notes.txt", "hello", "neither a mask image"),
])
def test_read_mask_file_errors_name_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DemoInputError, match=message) as info:
        read_mask_file(tmp_path / name)
    assert name in str(info.value)


def test_read_mask_file_rejects_colour_and_grey_images(tmp_path):
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "rgb.png")
    with pytest.raises(DemoInputError, match="rgb.png is a RGB image"):
        read_mask_file(tmp_path / "rgb.png")
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16).save(tmp_path / "grey.png")
    with pytest.raises(DemoInputError, match="more than two grey levels"):
        read_mask_file(tmp_path / "grey.png")


def test_editor_layers_become_masks_and_sizes_are_checked():
    image = Image.new("RGB", (12, 8))
    first, second = box_mask(8, 12, (1, 1, 4, 3)), box_mask(8, 12, (6, 2, 10, 7))
    empty = stroke_layer(np.zeros((8, 12), bool))
    value = {"background": image.convert("RGBA"), "layers": [stroke_layer(first), empty,
                                                             stroke_layer(second)]}
    assert editor_image(value).mode == "RGB"
    masks = editor_masks(value, editor_image(value))
    np.testing.assert_array_equal(masks, np.stack([first, second]))
    assert editor_masks(editor_value(image), image).shape == (0, 8, 12)
    with pytest.raises(DemoInputError, match="brush layer 1: 4×4 .* image is 8×12"):
        editor_masks({"background": image, "layers": [stroke_layer(np.ones((4, 4), bool))]}, image)
    with pytest.raises(DemoInputError, match="none loaded"):
        editor_image({"background": None, "layers": []})


# ---- samples and highlighting ------------------------------------------------------------------
def test_sample_catalog_choices_files_and_example_answer(catalog, himtok):
    total = sum(masks.shape[0] for _, masks, _ in catalog.samples)
    assert len(catalog.mask_choices()) == total and len(catalog.image_choices()) == len(catalog)
    label, value = catalog.mask_choices()[-1]
    index, j = catalog.parse_mask_value(value)
    assert label.startswith(value) and catalog.categories(index)[j] in label
    np.testing.assert_array_equal(read_mask_file(catalog.mask_png(value)), catalog.masks(index)[j])
    for bad in ("9/0", "0/99", "x", "0"):
        with pytest.raises(DemoInputError):
            catalog.parse_mask_value(bad)
    answer = catalog.example_answer(himtok, "0")
    spans = parse_mask_words(answer, himtok.vocabulary)
    codes = himtok.encode(None, catalog.masks("0"))
    assert [list(s.codes) for s in spans] == codes.tolist()


def test_highlighted_text_covers_the_text_and_numbers_decoded_masks():
    text = "a <m1> b <bad> c <m2>"
    marked = [MarkedSpan(2, 6, "ok", True), MarkedSpan(9, 14, "out_of_range", False),
              MarkedSpan(17, 21, "unterminated", True)]
    pieces, colors = highlighted_text(text, marked)
    assert "".join(p for p, _ in pieces) == text
    labels = [label for _, label in pieces if label]
    assert labels == ["mask 0", "not decoded · out_of_range", "mask 1 · unterminated"]
    assert set(colors) == set(labels) and colors["mask 0"] != colors["mask 1 · unterminated"]
    with pytest.raises(ValueError, match="out of order"):
        highlighted_text(text, [MarkedSpan(9, 14, "ok", True), MarkedSpan(2, 6, "ok", True)])


# ---- Tokenize ----------------------------------------------------------------------------------
def test_tokenize_mask_matches_the_tokenizer_for_every_prefix(himtok, catalog):
    image, mask = catalog.image("2"), catalog.masks("2")[0]
    result = tokenize_mask(himtok, image, mask)
    codes = himtok.encode(image, mask[None])
    assert result.words == himtok.encode_words(image, mask[None])[0]
    assert result.masks.shape == (himtok.max_codes, *mask.shape)
    for k in (1, 3, himtok.max_codes):
        single = himtok.decode(image, codes[:, :k], size=mask.shape)[0].numpy()
        assert (result.masks[k - 1] != single).mean() < 1e-3  # batched vs single: same maps
        inter, union = (single & mask).sum(), (single | mask).sum()
        assert result.ious[k - 1] == pytest.approx(inter / union, abs=2e-3)


def test_tokenize_tab_from_sample_file_and_brush(models, himtok):
    tab = TokenizeTab(models)
    value, path, source, image_file, status = tab.pick_sample("3/1")
    assert image_file is None  # the picked sample replaces an uploaded image
    assert source == MASK_FROM_FILE and "sample 3/1 loaded" in status
    out = tab.run(value, path, source)
    result, words, short, overlay, iou, curve, slider, status = out
    expected = tokenize_mask(himtok, models.samples.image("3"), models.samples.masks("3")[1])
    assert words == expected.words and short == expected.short
    assert f"IoU {expected.ious[-1]:.3f}" in iou.replace("**", "") and "OK" in status
    assert slider["maximum"] == himtok.max_codes and slider["visible"]
    assert overlay.size == models.samples.image("3").size
    coarse, coarse_iou = tab.show_prefix(result, 1)
    assert f"IoU {expected.ious[0]:.3f} from the first 1 of" in coarse_iou.replace("**", "")
    assert np.asarray(coarse).shape == np.asarray(overlay).shape
    # Brush strokes: one painted box becomes the mask.
    image = editor_image(value)
    painted = box_mask(image.height, image.width, (50, 40, 200, 160))
    brushed = {"background": image, "layers": [stroke_layer(painted)]}
    out = tab.run(brushed, path, MASK_FROM_BRUSH)
    assert out[1] == himtok.encode_words(image, painted[None])[0]
    assert f"of {int(painted.sum())} pixels" in status_of(out)


@pytest.mark.parametrize("case, message", [
    ("wrong size", "a mask must have its image's size"),
    ("no file", "mask file: none uploaded"),
    ("no strokes", "brush strokes: none drawn"),
    ("empty mask", "empty (no foreground pixel)"),
    ("no image", "image: none loaded"),
])
def test_tokenize_tab_bad_inputs_give_messages(models, tmp_path, case, message):
    tab = TokenizeTab(models)
    image = models.samples.image("0")
    value = editor_value(image)
    mask_path, source = tmp_path / "mask.png", MASK_FROM_FILE
    if case == "wrong size":
        write_mask_png(mask_path, np.ones((10, 10), bool))
    elif case == "empty mask":
        write_mask_png(mask_path, np.zeros((image.height, image.width), bool))
    elif case == "no file":
        mask_path = None
    elif case == "no strokes":
        source = MASK_FROM_BRUSH
    else:
        value = {"background": None, "layers": []}
    with pytest.warns(UserWarning, match=message.split(" (")[0]):
        out = tab.run(value, None if mask_path is None else str(mask_path), source)
    assert out[0] is None and out[1] == "" and message in status_of(out)
    assert status_of(out).startswith("**Error:**")


def test_every_tab_rejects_a_non_image_upload(models, chat_models, tmp_path):
    (tmp_path / "notes.txt").write_text("text")
    for tab in (TokenizeTab(models), DecodeTab(models), ChatTab(chat_models)):
        with pytest.warns(UserWarning, match="not an image"):
            out = tab.load_image(str(tmp_path / "notes.txt"))
        assert "image file: notes.txt is not an image" in status_of(out), type(tab).__name__
        assert all(isinstance(o, dict) and o.get("__type__") == "update" for o in out[:-1])


# ---- Decode ------------------------------------------------------------------------------------
def test_decode_tab_colours_each_mask_and_reports_statuses(models, himtok):
    tab = DecodeTab(models)
    image, text, _, _ = tab.pick_sample("1")
    vocab = himtok.vocabulary
    text += f" Then {vocab.start_token}{vocab.code_token(0, 9)} and {vocab.start_token}{vocab.end_token}."
    highlight, overlay, table, status = tab.run(image, text)
    count = models.samples.masks("1").shape[0]
    labels = [label for _, label in highlight["value"] if label]
    assert labels == [f"mask {k}" for k in range(count)] + [f"mask {count} · unterminated",
                                                           "not decoded · empty"]
    assert "".join(piece for piece, _ in highlight["value"]) == text
    assert f"{count + 2} mask span(s): {count + 1} decoded" in status
    decoded = himtok.decode_words(image, text, size=(image.height, image.width), lenient=True)
    np.testing.assert_array_equal(np.asarray(overlay),
                                  np.asarray(render_masks(image, decoded.masks.numpy())))
    assert "unterminated" in table and "| no |" in table


@pytest.mark.parametrize("text, message", [
    ("", "text: empty"),
    ("no words at all", "no mask words found"),
    (f"dog {format_mask_words((11, 91), SAMTOK_VOCABULARY)}", "words of a SAMTok tokenizer"),
])
def test_decode_tab_bad_texts(models, text, message):
    with pytest.warns(UserWarning, match=message):
        out = DecodeTab(models).run(models.samples.image("0"), text)
    assert message in status_of(out) and status_of(out).startswith("**Error:**")


def test_decode_tab_needs_an_image(models):
    with pytest.warns(UserWarning):
        out = DecodeTab(models).run(None, "x")
    assert "image: none loaded" in status_of(out)


def test_samtok_words_decode_and_tokenize_in_the_tabs(catalog):
    samtok = build_tiny_samtok(seed=2)
    models = DemoModels(tokenizer=samtok, samples=catalog)
    image, mask = catalog.image("4"), catalog.masks("4")[0]
    result = tokenize_mask(samtok, image, mask)
    assert result.length == 2 and result.words == samtok.encode_words(image, mask[None])[0]
    level0 = samtok.decode(image, torch.tensor([[result.codes[0]]]), size=mask.shape)[0].numpy()
    np.testing.assert_array_equal(result.masks[0], level0)
    highlight, _, _, status = DecodeTab(models).run(image, f"the sink {result.words}")
    assert [label for _, label in highlight["value"] if label] == ["mask 0"]
    himtok_words = format_mask_words((5, 6, 7), build_tiny_himtok().vocabulary)
    with pytest.warns(UserWarning, match="words of a HiMTok tokenizer"):
        out = DecodeTab(models).run(image, himtok_words)
    assert "words of a HiMTok tokenizer" in status_of(out)


# ---- Chat --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_models(catalog):
    chat = build_tiny_chat(build_tiny_himtok(seed=4))
    return DemoModels(tokenizer=chat.mask_tokenizer, chat=chat, samples=catalog)


def script(chat, text: str) -> None:
    eos = chat.tokenizer.convert_tokens_to_ids("<|im_end|>")
    processor = ScriptedAnswers([script_ids(chat.tokenizer, text)], eos)
    chat.settings = chat.settings.replace(logits_processors=(processor,), constrained=False)


def test_chat_tab_regions_in_masks_out_over_two_turns(chat_models):
    chat, tab = chat_models.chat, ChatTab(chat_models)
    value, _, state, history, *_ = tab.pick_sample("2")
    image = editor_image(value)
    region = box_mask(image.height, image.width, (100, 80, 300, 260))
    answer_mask = box_mask(image.height, image.width, (10, 10, 90, 70))
    words = chat.mask_tokenizer.encode_words(image, answer_mask[None])[0]
    script(chat, f"It is {words}.")
    out = tab.send(state, history, {"background": image, "layers": [stroke_layer(region)]},
                   "What is <mask>?", 40)
    conversation, history, editor, prompt, highlight, overlay, status = out
    region_words = chat.mask_tokenizer.encode_words(image, region[None])[0]
    assert region_words in conversation.messages[0]["content"][-1]["text"]
    assert history == [{"role": "user", "content": "What is [region 0]?"},
                       {"role": "assistant", "content": "It is [mask 0]."}]
    assert editor["layers"] == [] and prompt == ""
    assert [label for _, label in highlight["value"] if label] == ["mask 0"]
    decoded = chat.mask_tokenizer.decode(image, torch.tensor([list(parse_mask_words(
        words, chat.vocab)[0].codes)]), size=(image.height, image.width)).numpy()
    np.testing.assert_array_equal(np.asarray(overlay), np.asarray(render_masks(image, decoded)))
    # A bad second turn keeps the conversation; a good one continues it.
    with pytest.warns(UserWarning, match="placeholder"):
        bad = tab.send(conversation, history, editor_value(image), "<mask> and <mask>?", 40)
    assert bad[0] is conversation and len(conversation.messages) == 2
    script(chat, "Nothing else.")
    out = tab.send(conversation, history, editor_value(image), "Anything else?", 40)
    assert len(out[0].messages) == 4 and len(conversation.messages) == 2  # a copy grew
    assert out[1][-1] == {"role": "assistant", "content": "Nothing else."}
    assert out[-1].startswith("**OK**") and "0 mask span(s)" in out[-1]


def test_chat_tab_empty_prompt_and_missing_model(chat_models, models):
    with pytest.warns(UserWarning, match="prompt: empty"):
        out = ChatTab(chat_models).send(None, [], editor_value(chat_models.samples.image("0")),
                                        "  ", 16)
    assert "prompt: empty" in status_of(out)
    with pytest.raises(ValueError, match="needs a chat model"):
        ChatTab(models)


# ---- app, loading, CLI ---------------------------------------------------------------------------
def test_build_app_has_three_tabs_and_explains_a_missing_chat_model(models):
    app = build_app(models)
    config = app.get_config_file()
    tabs = [c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"]
    assert tabs == ["Tokenize", "Decode", "Chat"]
    notes = [c["props"].get("value") for c in config["components"]
             if c["props"].get("elem_id") == "chat-unavailable"]
    assert notes == [NO_MODEL_NOTE]
    assert not app.analytics_enabled


def test_load_demo_models_from_tokenizer_and_chat_folders(tmp_path, catalog):
    from masktok.mllm.loading import save_chat_components

    tokenizer = build_tiny_himtok(seed=5)
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = load_demo_models(tokenizer=tmp_path / "tok", samples=catalog)
    mask = catalog.masks("0")[:1]
    assert loaded.chat is None and loaded.tokenizer_source == str(tmp_path / "tok")
    assert torch.equal(loaded.tokenizer.encode(None, mask), tokenizer.encode(None, mask))
    chat = build_tiny_chat(tokenizer)
    save_chat_components(tmp_path / "vlm", chat.model, chat.processor, tokenizer)
    with_chat = load_demo_models(model=tmp_path / "vlm", samples=catalog)
    assert with_chat.chat is not None and with_chat.tokenizer is with_chat.chat.mask_tokenizer
    assert torch.equal(with_chat.tokenizer.encode(None, mask), tokenizer.encode(None, mask))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_demo_models(model=tmp_path / "missing", samples=catalog)
    with pytest.raises(ValueError, match="differs"):
        DemoModels(tokenizer=build_tiny_samtok(), chat=with_chat.chat, samples=catalog)


def test_missing_default_tokenizer_is_a_clear_error(monkeypatch):
    import masktok

    monkeypatch.delattr(masktok, "load_default", raising=False)
    with pytest.raises(ValueError, match="no bundled default tokenizer; pass --tokenizer PATH"):
        load_default_tokenizer()


def test_bundled_default_tokenizer_reconstructs_samples(catalog):
    import masktok

    if not hasattr(masktok, "load_default"):
        pytest.skip("masktok.load_default (the bundled default tokenizer) is not in this tree")
    models = load_demo_models(samples=catalog)
    assert models.tokenizer_source == "bundled default"
    tab = TokenizeTab(models)
    value, path, source, _, _ = tab.pick_sample("0/0")
    out = tab.run(value, path, source)
    assert out[0] is not None and out[0].ious[-1] > 0.5, status_of(out)


def test_cli_demo_loads_builds_and_launches(monkeypatch, tmp_path):
    import gradio as gr
    from typer.testing import CliRunner

    import masktok.demo
    from masktok.cli import app as cli

    build_tiny_himtok(seed=6).save_pretrained(tmp_path / "tok")
    calls = {}

    def fake_launch(app, **kwargs):
        calls.update(kwargs, app=app)
        return "http://127.0.0.1:7999/"

    monkeypatch.setattr(masktok.demo, "launch_app", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    result = CliRunner().invoke(cli, ["demo", "--tokenizer", str(tmp_path / "tok"), "--port", "7999"])
    assert result.exit_code == 0, result.output
    assert calls["port"] == 7999 and calls["share"] is False and calls["host"] == "127.0.0.1"
    assert "running at http://127.0.0.1:7999/" in result.output
    bad = CliRunner().invoke(cli, ["demo", "--tokenizer", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "no such tokenizer file or folder" in bad.output
    help_text = CliRunner().invoke(cli, ["demo", "--help"]).output
    for option in ("--tokenizer", "--model", "--port", "--no-share"):
        assert option in help_text
