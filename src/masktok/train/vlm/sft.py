"""Supervised fine-tuning of a vision-language model on mask words: a thin recipe on TRL.

    from masktok.train.vlm.config import ModelSettings, SFTRecipe, TrainSettings
    from masktok.train.vlm.sft import run_sft

    result = run_sft(SFTRecipe(
        model=ModelSettings("Qwen2.5-VL-3B-SAMTok", vocabulary="samtok"),
        train=TrainSettings("runs/sft", epochs=1, learning_rate=2e-5, batch_size=8),
        data=("sft/res.trl.jsonl", "sft/gres.trl.jsonl")))

What the recipe does (the SAMTok recipe, supplementary §B): the model is loaded from a Hugging
Face folder; the mask words are added when asked (:func:`masktok.mllm.add_mask_vocabulary`);
the vision tower is frozen while the projector and the language model train (or, with LoRA, a
LoRA adapter on the language model's linear layers plus the input embedding and LM head,
for the new words); the loss covers every assistant turn (TRL's own assistant-only loss where
the chat template allows it, else :class:`~masktok.train.vlm.data.AssistantTurnCollator`; see
:mod:`masktok.train.vlm.assistant_loss`); bf16 autocast runs on CUDA; TRL's
``SFTTrainer`` does the rest, so DDP and FSDP come from ``torchrun`` / ``accelerate launch``
(see ``docs/recipes.md``). The model preparation here is shared with :mod:`masktok.train.vlm.grpo`.

Outputs: ``output_dir/checkpoint-*``, ``output_dir/final/`` (model + processor, LoRA merged,
and the source folder's mask tokenizer when it has one, so ``masktok chat`` loads it) and
``output_dir/result.json``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from masktok.output_lock import hold_run_output
from masktok.train.vlm.config import LoraSettings, ModelSettings, SFTRecipe, TrainSettings
from masktok.words import MaskVocabulary
from masktok.words.vocabulary import OFFICIAL_VOCABULARIES, get_vocabulary

VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")
PROJECTOR_NAMES = ("merger", "deepstack_merger_list", "multi_modal_projector")


# ---------------------------------------------------------------------------------------------
# Model preparation (shared with the GRPO recipe)


def load_model_and_processor(settings: ModelSettings) -> tuple[Any, Any]:
    """(model, processor) from ``settings.path`` in ``settings.weight_dtype``, in train mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from masktok.mllm.internvl import is_official_internvl, load_official_internvl

    folder = Path(settings.path)
    if not (folder / "config.json").is_file():
        raise ValueError(f"model.path: {folder} is not a Hugging Face model folder (no config.json)")
    if is_official_internvl(folder):  # remote-code layout: converted to the native classes
        loaded = load_official_internvl(folder, dtype=getattr(torch, settings.weight_dtype))
        return loaded.model.train(), loaded.processor
    kwargs: dict[str, Any] = {"dtype": getattr(torch, settings.weight_dtype)}
    if settings.attn_implementation is not None:
        kwargs["attn_implementation"] = settings.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
    processor = AutoProcessor.from_pretrained(folder)
    return model.train(), processor


def detect_vocabulary(processor: Any) -> MaskVocabulary:
    """The mask vocabulary (SAMTok's or HiMTok's default) the tokenizer holds completely."""
    from masktok.mllm.vocabulary import text_tokenizer

    known = text_tokenizer(processor).get_vocab()
    found = [v for v in OFFICIAL_VOCABULARIES.values() if all(t in known for t in v.tokens())]
    if len(found) != 1:
        raise ValueError(
            f"model: its tokenizer holds {len(found)} complete mask vocabularies "
            f"({[v.name for v in found]}); pass vocabulary= one of {list(OFFICIAL_VOCABULARIES)} to add one")
    return found[0]


def ensure_mask_vocabulary(model: Any, processor: Any, vocabulary: str | None
                           ) -> tuple[MaskVocabulary, dict[str, int]]:
    """The vocabulary and its token ids, adding the words first when ``vocabulary`` is given and
    the tokenizer lacks them (SAMTok's mean + 0.02·std·noise initialisation)."""
    from masktok.mllm.vocabulary import add_mask_vocabulary, mask_token_ids

    if vocabulary is None:
        vocab = detect_vocabulary(processor)
    else:
        vocab = get_vocabulary(vocabulary)
        add_mask_vocabulary(model, processor, vocab)
    return vocab, mask_token_ids(processor, vocab)


def vision_tower_name(model: Any) -> str:
    """Dotted name of the vision tower (Qwen: ``model.visual``)."""
    for name, _ in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES:
            return name
    raise ValueError(f"model: {type(model).__name__} has no vision tower named one of "
                     f"{VISION_TOWER_NAMES}")


def projector_names(model: Any) -> list[str]:
    """Dotted names of the vision-to-language projector modules (Qwen: ``merger``, and Qwen3-VL's
    deepstack mergers, one entry per list element)."""
    names = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in PROJECTOR_NAMES:
            continue
        if isinstance(module, torch.nn.ModuleList):
            names.extend(f"{name}.{i}" for i in range(len(module)))
        else:
            names.append(name)
    return names


def set_trainable(model: Any, settings: ModelSettings) -> None:
    """Full fine-tuning: everything trains but the vision tower (when frozen); the projector
    trains when ``train_projector``."""
    model.requires_grad_(True)
    if settings.freeze_vision:
        tower = vision_tower_name(model)
        model.get_submodule(tower).requires_grad_(False)
    for name in projector_names(model):
        model.get_submodule(name).requires_grad_(settings.train_projector)


def lora_config(model: Any, lora: LoraSettings, token_ids: dict[str, int], *,
                train_projector: bool, exclude: tuple[str, ...] = ()) -> Any:
    """A peft ``LoraConfig``: LoRA on the language model's ``lora.target_modules`` (a pattern that
    excludes the vision tower and the top-level modules named in ``exclude``), the input
    embedding and LM head trainable for the mask words as ``lora.new_tokens`` says, and the
    projector fully trained when ``train_projector``.

    Raises:
        ValueError: ``new_tokens="rows"`` on a model whose LM head is tied to its embedding.
    """
    from peft import LoraConfig

    excluded = "|".join(re.escape(name) for name in (vision_tower_name(model), *exclude))
    targets = "|".join(re.escape(t) for t in lora.target_modules)
    pattern = rf"^(?!(?:{excluded})\.).*\.({targets})$"
    new_ids = sorted(set(token_ids.values()))
    embed_name = _leaf_name(model, model.get_input_embeddings())
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    modules_to_save = projector_names(model) if train_projector else []
    head_name = None if head is None or tied else _leaf_name(model, head)
    trainable_tokens = None
    if lora.new_tokens == "full":
        modules_to_save += [embed_name] + ([head_name] if head_name else [])
    else:
        if tied:
            raise ValueError(
                "lora.new_tokens: 'rows' needs an untied LM head (TRL's fused LM head reads the "
                "head's weight and bias, which peft's row-wise wrapper of a tied head lacks); "
                "use 'full' for this model")
        trainable_tokens = {embed_name: new_ids}
        if head_name:
            modules_to_save.append(head_name)
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=pattern, modules_to_save=modules_to_save or None,
                      trainable_token_indices=trainable_tokens, ensure_weight_tying=tied,
                      task_type="CAUSAL_LM")


def _leaf_name(model: Any, module: torch.nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    raise ValueError(f"model: module {type(module).__name__} is not part of the model")


def use_bf16(precision: str) -> bool:
    """Whether bf16 autocast runs: ``auto`` → on CUDA only."""
    if precision == "fp32":
        return False
    if precision == "bf16" and not torch.cuda.is_available():
        raise ValueError("train.precision: 'bf16' needs a CUDA device; use 'auto' or 'fp32' on CPU")
    return torch.cuda.is_available()


def checkpointing_argument() -> str:
    """The TrainingArguments field switching activation checkpointing: ``activation_checkpointing``
    in recent transformers, ``gradient_checkpointing`` (its older name) before."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def trainer_arguments(train: TrainSettings, model: ModelSettings) -> dict[str, Any]:
    """The fields of a TRL config (``SFTConfig`` / ``GRPOConfig``) both recipes share."""
    arguments = dict(
        output_dir=train.output_dir, max_steps=train.max_steps, num_train_epochs=train.epochs,
        learning_rate=train.learning_rate, weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm, warmup_steps=train.warmup_ratio,  # < 1: a ratio
        lr_scheduler_type=train.lr_scheduler, per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, bf16=use_bf16(train.precision), seed=train.seed,
        logging_steps=train.logging_steps,
        save_strategy="steps" if train.save_steps else "no", save_steps=train.save_steps or 500,
        save_total_limit=train.save_total_limit, report_to=list(train.report_to) or "none",
        dataloader_num_workers=train.dataloader_workers, disable_tqdm=False,
    )
    arguments[checkpointing_argument()] = model.gradient_checkpointing
    arguments.update(train.extra)
    return arguments


def set_image_budget(processor: Any, max_pixels: int) -> None:
    """Let the processor scale every image to at most ``max_pixels`` pixels (Qwen-VL image
    processors: ``size["longest_edge"]``).

    Raises:
        ValueError: the processor has no such budget, or ``max_pixels`` is below its minimum.
    """
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    if size is None or size.get("longest_edge") is None:
        raise ValueError(f"model.max_pixels: the processor's image processor "
                         f"({type(image_processor).__name__}) has no pixel budget to set")
    smallest = size.get("shortest_edge") or 0
    if max_pixels < smallest:
        raise ValueError(f"model.max_pixels: {max_pixels} is below the processor's minimum of "
                         f"{smallest} pixels per image")
    image_processor.size = {"shortest_edge": smallest, "longest_edge": int(max_pixels)}


def prepare_model(settings: ModelSettings, model: Any = None, processor: Any = None, *,
                  lora_exclude: tuple[str, ...] = ()
                  ) -> tuple[Any, Any, MaskVocabulary, dict[str, int], Any]:
    """Load (unless given), add the mask words, set the image budget and what trains.

    ``lora_exclude`` names top-level modules LoRA must leave alone (e.g. a mask de-tokenizer
    attached to the model). Returns (model, processor, vocabulary, token ids, peft config or
    None); with LoRA the trainer wraps the model with the returned config.
    """
    if (model is None) != (processor is None):
        raise ValueError("model and processor: pass both or neither")
    if model is None:
        model, processor = load_model_and_processor(settings)
    vocab, token_ids = ensure_mask_vocabulary(model, processor, settings.vocabulary)
    if settings.max_pixels is not None:
        set_image_budget(processor, settings.max_pixels)
    if settings.lora is None:
        set_trainable(model, settings)
        return model, processor, vocab, token_ids, None
    peft_config = lora_config(model, settings.lora, token_ids, train_projector=settings.train_projector,
                              exclude=lora_exclude)
    return model, processor, vocab, token_ids, peft_config


# ---------------------------------------------------------------------------------------------
# Export


@dataclass
class RecipeResult:
    """What a recipe run produced: folders, steps, the trainer's log rows."""

    output_dir: str
    final_dir: str
    global_step: int
    merged_lora: bool
    mask_tokenizer_copied: bool
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def write(self) -> Path:
        path = Path(self.output_dir) / "result.json"
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path


def copy_mask_tokenizer(source: str | Path, target: str | Path) -> bool:
    """Give ``target`` the mask tokenizer of the chat folder ``source`` (any layout of
    :func:`masktok.mllm.loading.find_mask_tokenizer`): masktok folders and official files are
    copied as they are (official files: every file of the family's ``official_files``, e.g.
    SAMTok's tokenizer file, its SAM 2 file and a sidecar config; the chat settings of a manifest
    too); a tokenizer inside official InternVL shards is written out in masktok's format with the
    official decoding settings. False when ``source`` holds none; a folder with several
    candidates raises."""
    from masktok.mllm import loading
    from masktok.tokenizers import tokenizer_class

    source, target = Path(source), Path(target)
    found = loading.tokenizer_candidates(source)
    if not found:
        return False
    kind, location = loading.find_mask_tokenizer(source)  # several candidates raise
    if kind == loading.MASKTOK:
        shutil.copytree(location, target / loading.MASK_TOKENIZER_DIR, dirs_exist_ok=True)
        if (source / loading.MANIFEST_NAME).is_file():
            shutil.copy2(source / loading.MANIFEST_NAME, target / loading.MANIFEST_NAME)
    elif location.is_dir():  # the weight shards hold it (official InternVL2.5-HiMTok)
        from masktok.mllm.internvl.convert import OFFICIAL_CHAT_SETTINGS

        mask_tokenizer = loading.load_mask_tokenizer(source)
        loading.write_mask_tokenizer(target, mask_tokenizer, settings=OFFICIAL_CHAT_SETTINGS)
    else:
        for pattern in tokenizer_class(kind).official_files:
            for path in sorted(source.glob(pattern)):
                shutil.copy2(path, target / path.name)
    return True


def export_final(trainer: Any, processor: Any, settings: ModelSettings) -> RecipeResult:
    """Write ``output_dir/final``: the model (LoRA merged into it, unless FSDP or DeepSpeed shards
    it: then the adapter) with its processor and the source folder's mask tokenizer, plus ``result.json``."""
    from peft import PeftModel

    output_dir = Path(trainer.args.output_dir)
    final = output_dir / "final"
    is_lora = isinstance(trainer.model, PeftModel)
    merge = is_lora and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled)
    if not merge:
        trainer.save_model(str(final))  # handles FSDP / DeepSpeed state gathering
    copied = False
    if trainer.is_world_process_zero():
        if merge:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(final)
        processor.save_pretrained(final)
        copied = copy_mask_tokenizer(settings.path, final)
    result = RecipeResult(str(output_dir), str(final), trainer.state.global_step, merge, copied,
                          list(trainer.state.log_history))
    if trainer.is_world_process_zero():
        result.write()
    return result


# ---------------------------------------------------------------------------------------------
# The recipe


def sft_config(recipe: SFTRecipe, *, trl_assistant_loss: bool, evaluate: bool) -> Any:
    """The ``trl.SFTConfig`` of an SFT-style recipe (also HiMTok's stage 2)."""
    from trl import SFTConfig

    arguments = trainer_arguments(recipe.train, recipe.model)
    arguments.update(max_length=recipe.max_length, remove_unused_columns=False,
                     dataset_kwargs={"skip_prepare_dataset": True},
                     assistant_only_loss=trl_assistant_loss)
    if evaluate:
        arguments.update(eval_strategy="steps", eval_steps=recipe.eval_steps)
    return SFTConfig(**arguments)


def build_sft_trainer(recipe: SFTRecipe, *, model: Any = None, processor: Any = None,
                      train_dataset: Any = None, eval_dataset: Any = None,
                      callbacks: list[Any] | None = None) -> Any:
    """A ready TRL ``SFTTrainer`` for ``recipe``; ``model``/``processor``/datasets override what
    the recipe would load."""
    from trl import SFTTrainer

    from masktok.train.vlm.assistant_loss import assistant_collator
    from masktok.train.vlm.data import load_sft_dataset

    model, processor, _, _, peft_config = prepare_model(recipe.model, model, processor)
    if train_dataset is None:
        train_dataset = load_sft_dataset(recipe.data, image_root=recipe.image_root,
                                         max_samples=recipe.max_samples)
    if eval_dataset is None and recipe.eval_data:
        eval_dataset = load_sft_dataset(recipe.eval_data, image_root=recipe.image_root,
                                        max_samples=recipe.max_samples)
    collator, trl_loss = assistant_collator(processor, max_length=recipe.max_length,
                                            loss_on=recipe.loss_on)
    args = sft_config(recipe, trl_assistant_loss=trl_loss, evaluate=eval_dataset is not None)
    return SFTTrainer(model=model, args=args, data_collator=collator,
                      train_dataset=train_dataset, eval_dataset=eval_dataset,
                      processing_class=processor, peft_config=peft_config, callbacks=callbacks)


def run_sft(recipe: SFTRecipe, *, model: Any = None, processor: Any = None,
            train_dataset: Any = None, resume: bool = False) -> RecipeResult:
    """Train ``recipe`` and export ``output_dir/final`` (see the module docstring). The output
    folder is this run's alone while it runs (:func:`masktok.output_lock.hold_run_output`)."""
    with hold_run_output(recipe.train.output_dir, command="masktok train sft"):
        trainer = build_sft_trainer(recipe, model=model, processor=processor, train_dataset=train_dataset)
        trainer.train(resume_from_checkpoint=True if resume else None)
        return export_final(trainer, trainer.processing_class, recipe.model)
