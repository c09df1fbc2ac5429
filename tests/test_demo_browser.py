"""The demo app end to end in a real browser: Debian's chromium driven by Playwright.

The app runs on a free localhost port in this process with a tiny random HiMTok (saved and
loaded back through ``load_demo_models``) and a tiny random VLM whose answer is scripted. The
test uploads sample files, picks samples, paints with the brush, clicks, checks what the page
shows against the tokenizer's own results, checks that bad inputs give messages and no stack
trace, checks that the page makes no request outside localhost, and saves a screenshot of each
tab under ``ci-artifacts/demo/``.

Without ``/usr/bin/chromium`` (or ``MASKTOK_CHROMIUM``) the test skips, unless ``CI`` is set:
then it fails (``scripts/install_browser.sh`` installs chromium). ``MASKTOK_DEMO_TOKENIZER=PATH``
runs it with that tokenizer instead of the tiny one, ``MASKTOK_DEMO_TOKENIZER=default`` with the
bundled default tokenizer (e.g. to retake the screenshots in ``docs/img``).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from masktok.masks import mask_to_rle, write_mask_png

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "ci-artifacts" / "demo"
CHROMIUM = Path(os.environ.get("MASKTOK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, reason: str) -> None:
    """Skip when something the browser test needs is missing, except in CI, where it fails."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason}; CI must run the browser test (scripts/install_browser.sh installs "
                    "chromium; pip install 'masktok[demo]' installs gradio and playwright)")
    pytest.skip(f"{reason} (set CI=true to make this a failure)")


def importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """(url, models, scripted chat answer) of the running app."""
    require(importable("gradio"), "gradio is not installed")
    require(importable("playwright"), "playwright is not installed")
    require(CHROMIUM.is_file(), f"chromium not found at {CHROMIUM}")
    import torch

    from masktok.demo import DemoModels, build_app, launch_app, load_demo_models
    from masktok.mllm import GenerationSettings, MaskChat, add_mask_vocabulary
    from mllm_fixtures import ScriptedAnswers, box_mask, build_tiny_himtok, build_tiny_pair, script_ids

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = os.environ.get("MASKTOK_DEMO_TOKENIZER")
    if folder is None:
        folder = tmp_path_factory.mktemp("tokenizer") / "tiny_himtok"
        build_tiny_himtok(seed=3).save_pretrained(folder)
    base = load_demo_models(tokenizer=None if folder == "default" else folder)
    tokenizer = base.tokenizer
    # The chat model: a tiny random VLM made to answer with a decodable mask (words of a box on
    # sample image 0) and a span cut short (unterminated), as a trained model's answer might be.
    model, processor = build_tiny_pair()
    add_mask_vocabulary(model, processor, tokenizer.vocabulary)
    image = base.samples.image("0")
    box = box_mask(image.height, image.width, (40, 30, 300, 250))
    words = tokenizer.encode_words(image, box[None])[0]
    first_code = tokenizer.vocabulary.code_token(0, 5)
    answer = f"It is {words} beside {tokenizer.vocabulary.start_token}{first_code}"
    chat = MaskChat(model, processor, tokenizer)
    eos = chat.tokenizer.convert_tokens_to_ids("<|im_end|>")
    scripted = ScriptedAnswers([script_ids(chat.tokenizer, answer)], eos)
    chat.settings = GenerationSettings(max_new_tokens=64, constrained=False,
                                       logits_processors=(scripted,))
    models = DemoModels(tokenizer=tokenizer, chat=chat, samples=base.samples,
                        tokenizer_source=base.tokenizer_source, chat_source="tiny random VLM")
    app = build_app(models)
    url = launch_app(app, port=free_port(), block=False)
    yield url, models, box
    app.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def upload_files(tmp_path_factory, demo_server):
    """Files a user would upload: a sample image, an RLE JSON and a PNG of its masks, a mask of
    the wrong size and a file that is no image."""
    _, models, _ = demo_server
    folder = tmp_path_factory.mktemp("uploads")
    image = models.samples.image("1")
    masks = models.samples.masks("1")
    image.save(folder / "photo.jpg", quality=95)
    (folder / "mask.json").write_text(json.dumps(mask_to_rle(masks[-1])))
    write_mask_png(folder / "small_mask.png", np.ones((12, 20), dtype=bool))
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def choose(page, elem_id: str, option_text: str) -> None:
    """Pick the dropdown option whose text starts with ``option_text``."""
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id} li[role=option]", has_text=option_text).first.click()


def upload(page, elem_id: str, path: Path) -> None:
    """Upload ``path`` into a file box (clearing the file it holds first)."""
    clear = page.locator(f"#{elem_id} button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


def paint(page, elem_id: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag the brush across the editor's canvas (coordinates as fractions of the canvas)."""
    box = page.locator(f"#{elem_id} canvas").first.bounding_box()
    x0, y0 = box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"]
    x1, y1 = box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"]
    page.mouse.move(x0, y0, steps=4)
    page.wait_for_timeout(150)
    page.mouse.down()
    for t in np.linspace(0.0, 1.0, 16):
        page.mouse.move(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    page.mouse.up()
    page.wait_for_timeout(150)


def words_value(page) -> str:
    return page.locator("#tokenize-words textarea").input_value()


def click_and_wait(page, button_id: str, status_id: str, status_text: str) -> str:
    """Click a button and wait until the status line changes to one holding ``status_text``;
    returns the new status."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    status = page.locator(f"#{status_id}")
    before = status.inner_text()
    page.locator(f"#{button_id}").click()
    # Done when no output shows gradio's progress tracker and the status line is a new one.
    try:
        page.wait_for_function(
            "([id, before, text]) => {"
            " if (document.querySelector('[data-testid=status-tracker]:not(.hide)')) return false;"
            " const t = document.getElementById(id).innerText;"
            " return t !== before && t.includes(text); }",
            arg=[status_id, before, status_text], timeout=TIMEOUT_MS)
    except PlaywrightTimeout:
        raise AssertionError(f"#{status_id} did not come to show {status_text!r}; it shows "
                             f"{status.inner_text()!r}") from None
    return status.inner_text()


def run_tokenize(page, status_text: str) -> str:
    return click_and_wait(page, "tokenize-run", "tokenize-status", status_text)


def check_tokenize_tab(page, expect, models, files: Path) -> None:
    from masktok.demo.tabs.tokenize import tokenize_mask
    from masktok.masks import rle_to_mask

    tokenizer = models.tokenizer
    # Bad inputs first: each gives a message, never a stack trace.
    upload(page, "tokenize-image-file", files / "notes.txt")
    expect(page.locator("#tokenize-status")).to_contain_text("is not an image", timeout=TIMEOUT_MS)
    upload(page, "tokenize-mask-file", files / "small_mask.png")
    run_tokenize(page, "a mask must have its image's size")
    assert words_value(page) == ""

    # Uploaded image + RLE JSON → the words the tokenizer gives for that mask.
    upload(page, "tokenize-image-file", files / "photo.jpg")
    expect(page.locator("#tokenize-status")).to_contain_text("loaded", timeout=TIMEOUT_MS)
    upload(page, "tokenize-mask-file", files / "mask.json")
    mask = rle_to_mask(json.loads((files / "mask.json").read_text()))
    photo = Image.open(files / "photo.jpg").convert("RGB")
    expected = tokenize_mask(tokenizer, photo, mask)
    status = run_tokenize(page, "code(s) for a")
    assert f"of {int(mask.sum())} pixels" in status
    assert words_value(page) == expected.words

    # Brush strokes become the mask: a stroke across the middle, a few percent of the image.
    page.locator("#tokenize-mask-source label", has_text="brush strokes").click()
    paint(page, "tokenize-editor", (0.42, 0.4), (0.6, 0.6))
    status = run_tokenize(page, f"code(s) for a {photo.height}×{photo.width} mask")
    painted = int(status.rsplit(" of ", 1)[1].split()[0])
    assert 0 < painted < 0.2 * photo.height * photo.width and painted != int(mask.sum())
    assert words_value(page).startswith(tokenizer.vocabulary.start_token)

    # The sample picker: image and mask file together, then the prefix slider.
    choose(page, "tokenize-sample", "2/0 ·")
    expect(page.locator("#tokenize-status")).to_contain_text("sample 2/0 loaded", timeout=TIMEOUT_MS)
    expected = tokenize_mask(tokenizer, models.samples.image("2"), models.samples.masks("2")[0])
    run_tokenize(page, f"{expected.length} code(s) for a")
    assert words_value(page) == expected.words
    assert page.locator("#tokenize-short textarea").input_value() == expected.short
    expect(page.locator("#tokenize-iou")).to_contain_text(
        f"IoU {expected.ious[-1]:.3f} from the first {expected.length} of {expected.length}")
    expect(page.locator("#tokenize-overlay img")).to_be_visible()
    if expected.length > 1:
        prefix = min(4, expected.length - 1)
        number = page.locator("#tokenize-prefix input[type=number]")
        number.fill(str(prefix))
        number.press("Enter")
        expect(page.locator("#tokenize-iou")).to_contain_text(
            f"IoU {expected.ious[prefix - 1]:.3f} from the first {prefix} of {expected.length}",
            timeout=TIMEOUT_MS)


def check_decode_tab(page, expect, models) -> None:
    from masktok.words import SAMTOK_VOCABULARY, format_mask_words

    page.get_by_role("tab", name="Decode").click()
    # Words of the other tokenizer family are recognised.
    samtok_words = format_mask_words((11, 91), SAMTOK_VOCABULARY)
    page.locator("#decode-text textarea").fill(f"The dog is {samtok_words}.")
    click_and_wait(page, "decode-run", "decode-status", "words of a SAMTok tokenizer")
    # A sample's example answer plus a span cut short: each mask in its colour, statuses shown.
    choose(page, "decode-sample", "1 ·")
    text_box = page.locator("#decode-text textarea")
    expect(text_box).to_have_value(models.samples.example_answer(models.tokenizer, "1"),
                                   timeout=TIMEOUT_MS)
    vocab = models.tokenizer.vocabulary
    text_box.fill(text_box.input_value() + f" And {vocab.start_token}{vocab.code_token(0, 7)}")
    count = models.samples.masks("1").shape[0]
    click_and_wait(page, "decode-run", "decode-status",
                   f"{count + 1} mask span(s): {count + 1} decoded")
    highlight = page.locator("#decode-highlight")
    for k in range(count):
        expect(highlight).to_contain_text(f"mask {k}")
    expect(highlight).to_contain_text(f"mask {count} · unterminated")
    expect(page.locator("#decode-table")).to_contain_text("closed the unterminated span")
    expect(page.locator("#decode-overlay img")).to_be_visible()


def check_chat_tab(page, expect) -> None:
    page.get_by_role("tab", name="Chat").click()
    # More <mask> placeholders than drawn regions: a message, nothing is sent.
    page.locator("#chat-prompt textarea").fill("Compare <mask> and <mask>.")
    click_and_wait(page, "chat-send", "chat-status", "2 <mask> placeholder(s) for 0 drawn")
    # A painted region goes in as words; the scripted answer's masks come back.
    paint(page, "chat-editor", (0.45, 0.45), (0.55, 0.55))
    page.locator("#chat-prompt textarea").fill("What is <mask>?")
    click_and_wait(page, "chat-send", "chat-status", "answer with 2 mask span(s): 2 decoded")
    history = page.locator("#chat-history")
    expect(history).to_contain_text("What is [region 0]?")
    expect(history).to_contain_text("It is [mask 0] beside [mask 1 · unterminated]")
    expect(page.locator("#chat-highlight")).to_contain_text("mask 1 · unterminated")
    expect(page.locator("#chat-overlay img")).to_be_visible()


def screenshot(page, tab: str) -> Path:
    """Save a full-page screenshot of ``tab`` with warning toasts hidden.

    Toasts time out on their own, so clicking their close buttons races their removal; a style
    rule hides them instead (every check reads the status lines, never the toasts).
    """
    page.get_by_role("tab", name=tab).click()
    page.add_style_tag(content="[data-testid=toast-body], .toast-wrap { display: none !important; }")
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=status-tracker]:not(.hide)')",
        timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"demo_{tab.lower()}.png"
    page.screenshot(path=str(path), full_page=True)
    assert Image.open(path).size[0] > 0
    return path


@pytest.mark.slow
def test_demo_in_a_real_browser(demo_server, upload_files):
    from playwright.sync_api import expect, sync_playwright

    url, models, _ = demo_server
    (ARTIFACTS / "failure.png").unlink(missing_ok=True)
    outside: list[str] = []

    def local_only(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", local_only)
            page.goto(url)
            expect(page.locator("#demo-header")).to_contain_text("HiMTok", timeout=TIMEOUT_MS)
            try:
                check_tokenize_tab(page, expect, models, upload_files)
                tokenize_shot = screenshot(page, "Tokenize")
                check_decode_tab(page, expect, models)
                decode_shot = screenshot(page, "Decode")
                check_chat_tab(page, expect)
                chat_shot = screenshot(page, "Chat")
                assert "Traceback" not in page.content()
            except Exception:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
                raise
        finally:
            browser.close()
    assert outside == [], f"the page reached outside localhost: {outside}"
    for shot in (tokenize_shot, decode_shot, chat_shot):
        assert shot.is_file()
