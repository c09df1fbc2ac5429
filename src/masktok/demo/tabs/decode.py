"""The Decode tab: any text holding mask words (e.g. a model's answer) → its masks on the image.

The text is parsed leniently, so every span is shown with the parser's status: well-formed and
repaired spans are decoded, each in its own colour; the rest are marked as not decoded. Words
spelt for the other tokenizer family are recognised and reported as such.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from masktok.demo.feedback import error_status, info_status, ok_status, warn
from masktok.demo.highlight import MarkedSpan, highlighted_text
from masktok.demo.inputs import DemoInputError, read_image_file
from masktok.demo.models import DemoModels, family_name
from masktok.masks.render import render_masks
from masktok.words import MaskSpan, MaskVocabulary, SpanStatus, format_short, parse_mask_words
from masktok.words.vocabulary import OFFICIAL_VOCABULARIES

FILE_BOX_HEIGHT = 110
OVERLAY_HEIGHT = 440


@dataclass
class DecodedText:
    """A text's mask spans and the masks decoded from them.

    Attributes:
        text: the input text.
        spans: every span the parser found, in order.
        decoded: per span, whether it was decoded.
        masks: (M, H, W) bool, the decoded masks in text order (M = number of decoded spans).
        problem: a message when the words look meant for another tokenizer, else None.
    """

    text: str
    spans: list[MaskSpan]
    decoded: list[bool]
    masks: np.ndarray
    problem: str | None = None

    @property
    def marked(self) -> list[MarkedSpan]:
        return [MarkedSpan(s.start, s.end, s.status.value, d) for s, d in zip(self.spans, self.decoded)]

    def summary(self) -> str:
        repaired = sum(d and not s.ok for s, d in zip(self.spans, self.decoded))
        undecoded = [s.status.value for s, d in zip(self.spans, self.decoded) if not d]
        parts = [f"{len(self.spans)} mask span(s): {len(self.masks)} decoded"]
        if repaired:
            parts.append(f"{repaired} of them repaired by the lenient parser")
        if undecoded:
            parts.append(f"{len(undecoded)} not decoded ({', '.join(undecoded)})")
        return "; ".join(parts)


def foreign_words_problem(text: str, spans: list[MaskSpan], vocab: MaskVocabulary) -> str | None:
    """A message when spans that ``vocab`` cannot read are well formed words of another official
    vocabulary (SAMTok spells codes ``<|mt_0011|>``, HiMTok ``<|mt_11|>``), else None."""
    if not any(SpanStatus.MALFORMED_TOKEN in (s.status, *s.problems) for s in spans):
        return None
    for other in OFFICIAL_VOCABULARIES.values():
        readable = [s for s in parse_mask_words(text, other, lenient=True) if s.ok] if other != vocab else []
        if readable:
            break
    else:
        return None
    example = text[readable[0].start:readable[0].end]
    return (f"text: {len(readable)} mask span(s) are words of a {family_name(other)} tokenizer "
            f"(e.g. {example}), but this demo decodes with {family_name(vocab)}, which spells a "
            f"code as {vocab.code_token(0, 11)}; start the demo with a {family_name(other)} "
            "tokenizer (--tokenizer PATH) to decode them")


def decode_text(tokenizer: Any, image: Image.Image, text: str) -> DecodedText:
    """Parse ``text`` leniently and decode its decodable spans at ``image``'s size.

    Raises:
        DemoInputError: empty text, or a text without any mask span.
    """
    if not text or not text.strip():
        raise DemoInputError("text: empty; paste a text holding mask words, e.g. a model's answer")
    result = tokenizer.decode_words(tokenizer.embed_image(image), text,
                                    size=(image.height, image.width), lenient=True)
    spans = list(result.spans)
    if not spans:
        vocab = tokenizer.vocabulary
        raise DemoInputError(f"text: no mask words found; a mask is spelt {vocab.start_token}, "
                             f"then codes such as {vocab.code_token(0, 11)}, then {vocab.end_token}")
    chosen = set(result.decoded_span_indices)
    masks = torch.as_tensor(result.masks).detach().cpu().numpy().astype(bool)
    return DecodedText(text=text, spans=spans, decoded=[i in chosen for i in range(len(spans))],
                       masks=masks, problem=foreign_words_problem(text, spans, tokenizer.vocabulary))


def spans_table(result: DecodedText, vocab: MaskVocabulary) -> str:
    """A markdown table: one row per span with its status, codes (short form) and repairs."""
    rows = ["| span | status | decoded | codes | repairs |", "|---|---|---|---|---|"]
    for i, (span, decoded) in enumerate(zip(result.spans, result.decoded)):
        if len(span.codes) >= max(vocab.min_codes, 1):
            codes = format_short(span.codes, vocab)
        else:  # nothing, or a prefix too short for the short form (a level-1-only SAMTok word)
            codes = ", ".join(str(c) for c in span.codes) or "—"
        repairs = "; ".join(span.repairs) or "—"
        rows.append(f"| {i} | {span.status.value} | {'yes' if decoded else 'no'} | "
                    f"{html.escape(codes)} | {html.escape(repairs)} |")
    return "\n".join(rows)


class DecodeTab:
    """Callbacks and layout of the Decode tab."""

    def __init__(self, models: DemoModels) -> None:
        self.models = models

    def pick_sample(self, value: str | None) -> tuple:
        """Sample image ``"i"`` → (image, example answer with its masks' words, image file,
        status)."""
        import gradio as gr

        if not value:
            return (gr.update(),) * 4
        try:
            image = self.models.samples.image(value)
            text = self.models.samples.example_answer(self.models.tokenizer, value)
        except ValueError as err:
            warn(str(err))
            return (*(gr.update(),) * 3, error_status(str(err)))
        status = info_status(f"sample {value} loaded with an example answer; press Decode (or "
                             "edit the text first)")
        return image, text, None, status

    def load_image(self, path: str | None) -> tuple:
        """An uploaded image file → (image, status)."""
        import gradio as gr

        if not path:
            return gr.update(), gr.update()
        try:
            image = read_image_file(path)
        except ValueError as err:
            warn(str(err))
            return gr.update(), error_status(str(err))
        return image, ok_status(f"image {image.height}×{image.width} loaded")

    def run(self, image: Image.Image | None, text: str) -> tuple:
        """→ (highlighted text, overlay, spans table, status)."""
        import gradio as gr

        try:
            if image is None:
                raise DemoInputError("image: none loaded; pick a sample or upload an image file")
            result = decode_text(self.models.tokenizer, image.convert("RGB"), text)
        except ValueError as err:
            warn(str(err))
            return gr.update(value=None), None, "", error_status(str(err))
        pieces, color_map = highlighted_text(result.text, result.marked)
        overlay = render_masks(image, result.masks)
        table = spans_table(result, self.models.tokenizer.vocabulary)
        if result.problem is not None:
            warn(result.problem)
            status = error_status(result.problem)
        else:
            status = ok_status(result.summary())
        return gr.update(value=pieces, color_map=color_map), overlay, table, status

    def build(self) -> None:
        """Create the tab's components inside the current ``gr.Blocks``."""
        import gradio as gr

        samples = self.models.samples
        first = samples.image_choices()[0][1]
        with gr.Row():
            with gr.Column(scale=2):
                sample = gr.Dropdown(choices=samples.image_choices(), value=first,
                                     label="Sample image (fills in an example answer)",
                                     elem_id="decode-sample")
                image_file = gr.File(label="…or upload an image file", type="filepath",
                                     height=FILE_BOX_HEIGHT, elem_id="decode-image-file")
                text = gr.Textbox(value=samples.example_answer(self.models.tokenizer, first),
                                  label="Text with mask words", lines=6, elem_id="decode-text",
                                  placeholder="e.g. The dog <|mt_start|>…<|mt_end|> sits.")
                run = gr.Button("Decode", variant="primary", elem_id="decode-run")
            with gr.Column(scale=3):
                image = gr.Image(value=samples.image(first), label="Image", type="pil",
                                 format="png", interactive=False,
                                 elem_id="decode-image")
        status = gr.Markdown(elem_id="decode-status")
        with gr.Row():
            with gr.Column(scale=2):
                highlight = gr.HighlightedText(label="Mask spans", show_legend=False,
                                               elem_id="decode-highlight")
            with gr.Column(scale=3):
                overlay = gr.Image(label="Decoded masks (colours as in the text)", type="pil",
                                   format="png", interactive=False,
                                   height=OVERLAY_HEIGHT, elem_id="decode-overlay")
        table = gr.Markdown(elem_id="decode-table")
        sample.change(self.pick_sample, sample, [image, text, image_file, status])
        image_file.upload(self.load_image, image_file, [image, status])
        run.click(self.run, [image, text], [highlight, overlay, table, status])
