"""The Tokenize tab: an image and one mask → its mask words, the reconstruction and its IoU.

The mask comes from a file (binary PNG or COCO RLE JSON) or from brush strokes on the image. The
reconstruction is decoded from every prefix of the codes (HiMTok: 1 … 32 codes, coarse to fine;
SAMTok: level 1 alone, then both levels) so a slider can walk through them without running the
model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from masktok.demo.feedback import error_status, ok_status, warn
from masktok.demo.inputs import (DemoInputError, check_mask_size, check_not_empty, editor_image,
                                 editor_masks, editor_value, read_image_file, read_mask_file)
from masktok.demo.models import DemoModels
from masktok.masks.iou import dense_intersection_union, iou_from_counts
from masktok.eval.report import Overlay, render_overlay
from masktok.words import format_mask_words, format_short

MASK_FROM_FILE = "mask file"
MASK_FROM_BRUSH = "brush strokes"
FILE_BOX_HEIGHT = 110
OVERLAY_HEIGHT = 440
OVERLAY_LEGEND = "green: mask only · red: reconstruction only · yellow: both"


@dataclass
class Reconstruction:
    """One mask through the tokenizer and back.

    Attributes:
        image: the RGB image (W, H).
        mask: (H, W) bool, the input mask.
        codes: its L codes.
        words: its mask words.
        short: the short form, e.g. ``<11-347>``.
        masks: (L, H, W) bool; row k-1 is decoded from the first k codes.
        ious: (L,) float64 IoU of each row with ``mask``.
    """

    image: Image.Image
    mask: np.ndarray
    codes: tuple[int, ...]
    words: str
    short: str
    masks: np.ndarray
    ious: np.ndarray

    @property
    def length(self) -> int:
        return len(self.codes)

    def check_length(self, length: Any) -> int:
        if isinstance(length, float) and length.is_integer():
            length = int(length)
        if not isinstance(length, (int, np.integer)) or not 1 <= length <= self.length:
            raise DemoInputError(f"prefix length: expected a whole number in [1, {self.length}], "
                                 f"got {length!r}")
        return int(length)

    def overlay(self, length: int) -> Image.Image:
        """The image with the mask and its reconstruction from the first ``length`` codes."""
        length = self.check_length(length)
        return render_overlay(Overlay(name="reconstruction", gt=self.mask,
                                      pred=self.masks[length - 1], image=np.asarray(self.image)))

    def iou_text(self, length: int) -> str:
        length = self.check_length(length)
        return (f"**IoU {self.ious[length - 1]:.3f}** from the first {length} of {self.length} "
                f"code(s)")

    def curve_text(self) -> str:
        """IoU per prefix length, one line."""
        if self.length == 1:
            return ""
        steps = " · ".join(f"{k}: {iou:.2f}" for k, iou in enumerate(self.ious, start=1))
        return f"IoU by number of codes — {steps}"


def prefix_reconstructions(tokenizer: Any, image: Any, codes: torch.Tensor,
                           size: tuple[int, int]) -> np.ndarray:
    """codes (L,) → (L, H, W) bool: row k-1 decoded from the first k codes, every prefix in one
    batched call (the ``lengths`` argument)."""
    length = int(codes.shape[0])
    rows = codes[None].expand(length, length).clone()
    out = tokenizer.decode(image, rows, size=size, lengths=torch.arange(1, length + 1))
    return out.detach().cpu().numpy().astype(bool)


def tokenize_mask(tokenizer: Any, image: Image.Image, mask: np.ndarray) -> Reconstruction:
    """``mask`` (H, W) of ``image`` → its codes, words and every prefix reconstruction.

    Raises:
        DemoInputError: a mask of another size than the image, or an empty mask.
    """
    mask = check_not_empty(check_mask_size(mask, image))
    image_input = tokenizer.embed_image(image)
    codes = tokenizer.encode(image_input, mask[None])[0]
    values = tuple(int(c) for c in codes.tolist())
    masks = prefix_reconstructions(tokenizer, image_input, codes, mask.shape)
    inter, union = dense_intersection_union(masks, np.broadcast_to(mask, masks.shape))
    return Reconstruction(image=image, mask=mask, codes=values,
                          words=format_mask_words(values, tokenizer.vocabulary),
                          short=format_short(values, tokenizer.vocabulary), masks=masks,
                          ious=iou_from_counts(inter, union, empty=1.0))


def choose_mask(value: Any, image: Image.Image, mask_file: str | None, source: str) -> np.ndarray:
    """The mask the user asked for: the uploaded file or the brush strokes, (H, W) bool."""
    if source == MASK_FROM_FILE:
        if not mask_file:
            raise DemoInputError("mask file: none uploaded; upload a binary PNG or COCO RLE JSON, "
                                 f"pick a sample, or choose '{MASK_FROM_BRUSH}' and draw")
        return read_mask_file(mask_file)
    if source == MASK_FROM_BRUSH:
        strokes = editor_masks(value, image)
        if strokes.shape[0] == 0:
            raise DemoInputError("brush strokes: none drawn; paint the mask on the image with the "
                                 "brush first")
        return strokes.any(axis=0)
    raise DemoInputError(f"mask source: expected '{MASK_FROM_FILE}' or '{MASK_FROM_BRUSH}', "
                         f"got {source!r}")


class TokenizeTab:
    """Callbacks and layout of the Tokenize tab (callbacks are plain methods, testable alone)."""

    def __init__(self, models: DemoModels) -> None:
        self.models = models

    # ---- callbacks ----------------------------------------------------------------------------
    def pick_sample(self, value: str | None) -> tuple:
        """Sample mask ``"i/j"`` → (editor value, mask file, mask source, image file, status)."""
        import gradio as gr

        if not value:
            return (gr.update(),) * 5
        try:
            image = self.models.samples.image(self.models.samples.parse_mask_value(value)[0])
            path = self.models.samples.mask_png(value)
        except ValueError as err:
            warn(str(err))
            return (*(gr.update(),) * 4, error_status(str(err)))
        return (editor_value(image), str(path), MASK_FROM_FILE, None,
                ok_status(f"sample {value} loaded; press Tokenize"))

    def load_image(self, path: str | None) -> tuple:
        """An uploaded image file → (editor value, status)."""
        import gradio as gr

        if not path:
            return gr.update(), gr.update()
        try:
            image = read_image_file(path)
        except ValueError as err:
            warn(str(err))
            return gr.update(), error_status(str(err))
        return editor_value(image), ok_status(f"image {image.height}×{image.width} loaded")

    def run(self, value: Any, mask_file: str | None, source: str) -> tuple:
        """→ (state, words, short form, overlay, IoU, IoU curve, prefix slider, status)."""
        import gradio as gr

        try:
            image = editor_image(value)
            mask = choose_mask(value, image, mask_file, source)
            result = tokenize_mask(self.models.tokenizer, image, mask)
        except ValueError as err:
            warn(str(err))
            return (None, "", "", None, "", "", gr.update(visible=False), error_status(str(err)))
        slider = gr.update(minimum=1, maximum=result.length, value=result.length, step=1,
                           visible=result.length > 1, interactive=True)
        status = ok_status(f"{result.length} code(s) for a {mask.shape[0]}×{mask.shape[1]} mask "
                           f"of {int(mask.sum())} pixels")
        return (result, result.words, result.short, result.overlay(result.length),
                result.iou_text(result.length), result.curve_text(), slider, status)

    def show_prefix(self, result: Reconstruction | None, length: Any) -> tuple:
        """Slider moved → (overlay, IoU) for the first ``length`` codes."""
        import gradio as gr

        if result is None:
            return gr.update(), gr.update()
        try:
            return result.overlay(length), result.iou_text(length)
        except ValueError as err:
            warn(str(err))
            return gr.update(), error_status(str(err))

    # ---- layout -------------------------------------------------------------------------------
    def build(self) -> None:
        """Create the tab's components inside the current ``gr.Blocks``."""
        import gradio as gr

        samples = self.models.samples
        first = samples.mask_choices()[0][1]
        with gr.Row():
            with gr.Column(scale=2):
                sample = gr.Dropdown(choices=samples.mask_choices(), value=first,
                                     label="Sample mask (image/mask · category)",
                                     elem_id="tokenize-sample")
                image_file = gr.File(label="…or upload an image file", type="filepath",
                                     height=FILE_BOX_HEIGHT, elem_id="tokenize-image-file")
                mask_file = gr.File(value=str(samples.mask_png(first)), type="filepath",
                                    label="Mask file: binary PNG or COCO RLE JSON",
                                    height=FILE_BOX_HEIGHT, elem_id="tokenize-mask-file")
                source = gr.Radio(choices=[MASK_FROM_FILE, MASK_FROM_BRUSH], value=MASK_FROM_FILE,
                                  label="Mask from", elem_id="tokenize-mask-source")
                run = gr.Button("Tokenize", variant="primary", elem_id="tokenize-run")
            with gr.Column(scale=3):
                editor = gr.ImageEditor(
                    value=editor_value(samples.image(samples.parse_mask_value(first)[0])),
                    label="Image (choose 'brush strokes' and paint a mask)", type="pil",
                    sources=(), transforms=(), layers=False, format="png",
                    brush=gr.Brush(colors=["#ff3b30"], color_mode="fixed"),
                    placeholder="Pick a sample mask or upload an image file",
                    elem_id="tokenize-editor", interactive=True)
        status = gr.Markdown(elem_id="tokenize-status")
        with gr.Row():
            with gr.Column(scale=2):
                words = gr.Textbox(label="Mask words", lines=3, buttons=["copy"],
                                   elem_id="tokenize-words")
                short = gr.Textbox(label="Short form", elem_id="tokenize-short")
                iou = gr.Markdown(elem_id="tokenize-iou")
                curve = gr.Markdown(elem_id="tokenize-curve")
            with gr.Column(scale=3):
                overlay = gr.Image(label=f"Reconstruction ({OVERLAY_LEGEND})", type="pil",
                                   format="png", interactive=False,
                                   height=OVERLAY_HEIGHT, elem_id="tokenize-overlay")
                prefix = gr.Slider(minimum=1, maximum=2, value=2, step=1, visible=False,
                                   label="Codes used (coarse → fine)", elem_id="tokenize-prefix")
        state = gr.State(None)
        # Progress shows on the status line only: an image editor that shows progress while it
        # receives a new value can stay stuck in its "processing" state (gradio 6).
        sample.change(self.pick_sample, sample, [editor, mask_file, source, image_file, status],
                      show_progress_on=[status])
        image_file.upload(self.load_image, image_file, [editor, status], show_progress_on=[status])
        run.click(self.run, [editor, mask_file, source],
                  [state, words, short, overlay, iou, curve, prefix, status])
        prefix.change(self.show_prefix, [state, prefix], [overlay, iou])
