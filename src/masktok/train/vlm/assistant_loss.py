"""Which tokens a conversation batch is trained on: TRL's own assistant-only loss where the chat
template allows it, masktok's :class:`~masktok.train.vlm.data.AssistantTurnCollator` elsewhere.

TRL (≥ 1.16, with transformers ≥ 5.18 for vision-language models) labels the assistant turns from
the chat template's ``{% generation %}`` markers, and ships marked training variants of the
templates it knows (Qwen2.5-VL, Qwen3-VL, …; ``trl.get_training_chat_template``). A template
with neither markers nor a known training variant (a custom one), or ``loss_on="all"``, gets
masktok's collator, which locates the assistant turns by rendering conversation prefixes.
"""

from __future__ import annotations

from typing import Any

from packaging.version import Version


def trl_training_template(processor: Any) -> str | None:
    """The chat template TRL's assistant-only loss would render with: the processor's own when
    it already carries ``{% generation %}`` markers, TRL's training variant when TRL knows the
    template.

    Raises:
        ValueError: TRL cannot label this template's assistant turns (or this transformers
            version is too old for assistant masks of vision-language models).
    """
    import transformers
    from trl import get_training_chat_template
    from trl.chat_template_utils import has_generation_markers

    if Version(transformers.__version__) < Version("5.18.0.dev0"):
        raise ValueError(f"transformers {transformers.__version__}: assistant masks of vision-language "
                         f"models need ≥ 5.18")
    template = getattr(processor, "chat_template", None)
    if not template:
        raise ValueError("processor: no chat template")
    patched = get_training_chat_template(processor)  # raises ValueError for unknown templates
    if patched is None and not has_generation_markers(template):
        raise ValueError("processor: the chat template has no {% generation %} markers")
    return patched


def uses_trl_assistant_loss(processor: Any, loss_on: str) -> bool:
    """Whether :func:`assistant_collator` hands this processor to TRL."""
    if loss_on != "assistant":
        return False
    try:
        trl_training_template(processor)
    except ValueError:
        return False
    return True


def assistant_collator(processor: Any, *, max_length: int | None, loss_on: str) -> tuple[Any, bool]:
    """(collator, whether it is TRL's) for SFT on conversations ``{"messages", "images"}``.

    TRL's ``DataCollatorForVisionLanguageModeling`` with ``assistant_only_loss`` when
    :func:`uses_trl_assistant_loss`; else :class:`AssistantTurnCollator` (``loss_on`` "assistant"
    or "all"). Both return ``input_ids``, ``attention_mask``, ``labels`` (−100 outside the loss)
    and the processor's image tensors, right-padded.
    """
    from masktok.train.vlm.data import AssistantTurnCollator

    if uses_trl_assistant_loss(processor, loss_on):
        from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

        collator = DataCollatorForVisionLanguageModeling(
            processor=processor, max_length=max_length, assistant_only_loss=True,
            chat_template=trl_training_template(processor))
        return collator, True
    return AssistantTurnCollator(processor, max_length=max_length, loss_on=loss_on), False
