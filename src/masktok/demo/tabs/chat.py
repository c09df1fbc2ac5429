"""The Chat tab: talk to a mask-word VLM about an image, with masks in and out.

Regions drawn with the brush (one editor layer per region) become mask words in the next user
turn (at each ``<mask>`` of the prompt, or in front of it); the masks in the answer are decoded
and drawn on the image, and the answer's spans are highlighted with the parser's status.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from masktok.demo.feedback import error_status, info_status, ok_status, warn
from masktok.demo.highlight import MarkedSpan, highlighted_text, span_labels
from masktok.demo.inputs import DemoInputError, editor_image, editor_masks, editor_value, read_image_file
from masktok.demo.models import DemoModels
from masktok.masks.render import render_masks

MASK_PLACEHOLDER = "<mask>"
FILE_BOX_HEIGHT = 110
OVERLAY_HEIGHT = 440
NO_MODEL_NOTE = (
    "No chat model loaded. Start the demo with `masktok demo --model VLM_DIR` (an official SAMTok "
    "VLM folder such as Qwen3-VL-8B-SAMTok, or a folder saved by `MaskChat.save_pretrained`) to "
    "chat with masks in and out.")


def copy_conversation(conversation: Any) -> Any:
    """A copy whose message lists can grow without touching ``conversation`` (the image and the
    tokenizer's cached image embedding are shared)."""
    return dataclasses.replace(conversation, messages=list(conversation.messages),
                               images=list(conversation.images),
                               mask_words=list(conversation.mask_words))


def answer_for_display(text: str, marked: list[MarkedSpan]) -> str:
    """The answer with each mask span replaced by its label (``[mask 0]``, ``[not decoded · …]``)."""
    pieces, cursor = [], 0
    for span, (label, _) in zip(marked, span_labels(marked)):
        pieces.append(text[cursor:span.start])
        pieces.append(f"[{label}]")
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def prompt_for_display(prompt: str, regions: int) -> str:
    """The user's prompt with each ``<mask>`` shown as ``[region k]`` (and the regions counted
    when the prompt has no placeholder)."""
    parts = prompt.split(MASK_PLACEHOLDER)
    text = parts[0] + "".join(f"[region {k}]{part}" for k, part in enumerate(parts[1:]))
    if regions and len(parts) == 1:
        text += f" [{regions} drawn region(s)]"
    return text


def check_placeholders(prompt: str, regions: int) -> None:
    """One ``<mask>`` per drawn region, or none at all."""
    count = prompt.count(MASK_PLACEHOLDER)
    if count not in (0, regions):
        raise DemoInputError(f"prompt: {count} {MASK_PLACEHOLDER} placeholder(s) for {regions} drawn "
                             f"region(s); use one {MASK_PLACEHOLDER} per region (one region per "
                             "layer) or none")


class ChatTab:
    """Callbacks and layout of the Chat tab (needs ``models.chat``)."""

    def __init__(self, models: DemoModels) -> None:
        if models.chat is None:
            raise ValueError("models.chat: the Chat tab needs a chat model")
        self.models = models
        self.chat = models.chat

    def _fresh(self, image: Image.Image, status: str, image_file: Any = None) -> tuple:
        """(editor, image file, conversation, history, highlight, overlay, status) for a new
        conversation."""
        import gradio as gr

        return editor_value(image), image_file, None, [], gr.update(value=None), None, status

    def pick_sample(self, value: str | None) -> tuple:
        """Sample image ``"i"`` → a new conversation about it (see :meth:`_fresh`)."""
        import gradio as gr

        if not value:
            return (gr.update(),) * 7
        try:
            image = self.models.samples.image(value)
        except ValueError as err:
            warn(str(err))
            return (*(gr.update(),) * 6, error_status(str(err)))
        return self._fresh(image, info_status(f"sample {value} loaded; new conversation"))

    def load_image(self, path: str | None) -> tuple:
        """An uploaded image file → a new conversation about it (see :meth:`_fresh`)."""
        import gradio as gr

        if not path:
            return (gr.update(),) * 7
        try:
            image = read_image_file(path)
        except ValueError as err:
            warn(str(err))
            return (*(gr.update(),) * 6, error_status(str(err)))
        return self._fresh(image, info_status(f"image {image.height}×{image.width} loaded; "
                                              "new conversation"), image_file=gr.update())

    def reset(self) -> tuple:
        """→ (conversation, history, highlight, overlay, status)."""
        import gradio as gr

        return None, [], gr.update(value=None), None, info_status("new conversation")

    def send(self, conversation: Any, history: list[dict] | None, value: Any, prompt: str,
             max_new_tokens: Any) -> tuple:
        """One user turn → (conversation, history, editor, prompt, highlight, overlay, status).

        The painted regions (one per editor layer) go with this turn; the strokes are cleared
        from the editor afterwards.
        """
        import gradio as gr

        try:
            if not prompt or not prompt.strip():
                raise DemoInputError("prompt: empty; type a question or instruction")
            image = editor_image(value)
            regions = editor_masks(value, image)
            check_placeholders(prompt, regions.shape[0])
            same_image = conversation is not None and conversation.image.size == image.size \
                and np.array_equal(np.asarray(conversation.image), np.asarray(image))
            turn = copy_conversation(conversation) if same_image else self.chat.start(image)
            shown = list(history or []) if same_image else []
            result = self.chat.send(turn, prompt, regions if regions.shape[0] else None,
                                    max_new_tokens=int(max_new_tokens))
        except ValueError as err:
            warn(str(err))
            return (conversation, history, gr.update(), gr.update(), gr.update(value=None), None,
                    error_status(str(err)))
        marked = [MarkedSpan(m.char_start, m.char_end, m.status, m.decoded) for m in result.masks]
        pieces, color_map = highlighted_text(result.text, marked)
        shown += [{"role": "user", "content": prompt_for_display(prompt, regions.shape[0])},
                  {"role": "assistant", "content": answer_for_display(result.text, marked)}]
        overlay = render_masks(image, result.decoded_masks)
        bad = len(result.malformed)
        status = ok_status(f"answer with {len(result.masks)} mask span(s): "
                           f"{len(result.rles)} decoded, {bad} malformed")
        return (turn, shown, editor_value(image), "",
                gr.update(value=pieces, color_map=color_map), overlay, status)

    def build(self) -> None:
        """Create the tab's components inside the current ``gr.Blocks``."""
        import gradio as gr

        samples = self.models.samples
        first = samples.image_choices()[0][1]
        with gr.Row():
            with gr.Column(scale=3):
                sample = gr.Dropdown(choices=samples.image_choices(), value=first,
                                     label="Sample image", elem_id="chat-sample")
                image_file = gr.File(label="…or upload an image file", type="filepath",
                                     height=FILE_BOX_HEIGHT, elem_id="chat-image-file")
                editor = gr.ImageEditor(
                    value=editor_value(samples.image(first)),
                    label="Image: paint regions to ask about (one layer per region; sent "
                          "with the next message)", type="pil",
                    sources=(), transforms=(), layers=True, format="png",
                    brush=gr.Brush(colors=["#ff3b30"], color_mode="fixed"),
                    placeholder="Pick a sample image or upload an image file",
                    elem_id="chat-editor", interactive=True)
            with gr.Column(scale=3):
                history = gr.Chatbot(label="Conversation", height=360, elem_id="chat-history")
                prompt = gr.Textbox(label=f"Prompt ({MASK_PLACEHOLDER} marks where a drawn region "
                                          "goes)", lines=2, elem_id="chat-prompt",
                                    placeholder="Please segment the dog in this image.")
                max_new_tokens = gr.Slider(minimum=8, maximum=1024, step=8,
                                           value=min(self.chat.settings.max_new_tokens, 1024),
                                           label="Max new tokens", elem_id="chat-max-tokens")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="chat-send")
                    reset = gr.Button("New conversation", elem_id="chat-reset")
        status = gr.Markdown(elem_id="chat-status")
        with gr.Row():
            highlight = gr.HighlightedText(label="Last answer's mask spans", show_legend=False,
                                           elem_id="chat-highlight")
            overlay = gr.Image(label="Masks in the last answer", type="pil", format="png",
                               interactive=False,
                                   height=OVERLAY_HEIGHT, elem_id="chat-overlay")
        conversation = gr.State(None)
        fresh = [editor, image_file, conversation, history, highlight, overlay, status]
        # Progress shows on the status line only: an image editor that shows progress while it
        # receives a new value can stay stuck in its "processing" state (gradio 6).
        sample.change(self.pick_sample, sample, fresh, show_progress_on=[status])
        image_file.upload(self.load_image, image_file, fresh, show_progress_on=[status])
        reset.click(self.reset, None, [conversation, history, highlight, overlay, status])
        send.click(self.send, [conversation, history, editor, prompt, max_new_tokens],
                   [conversation, history, editor, prompt, highlight, overlay, status],
                   show_progress_on=[status])


def no_chat_model_note() -> None:
    """The Chat tab's content when no chat model is loaded."""
    import gradio as gr

    gr.Markdown(NO_MODEL_NOTE, elem_id="chat-unavailable")
