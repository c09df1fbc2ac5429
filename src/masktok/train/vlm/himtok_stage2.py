"""HiMTok's stage 2 (paper §3.3, Fig. 3b): the LMM and HiMTok's de-tokenizer trained together,
as a TRL ``SFTTrainer`` subclass.

    masktok train himtok-stage2 --config recipes/himtok_stage2.yaml

    from masktok.train.vlm.himtok_stage2 import run_himtok_stage2
    result = run_himtok_stage2(HiMTokStage2Recipe(
        model=ModelSettings("runs/lmm", vocabulary="himtok", max_pixels=448 * 448),
        train=HiMTokStage2TrainSettings("runs/stage2", epochs=1),
        data=("sft/himtok.trl.jsonl",), mask_tokenizer="runs/stage1/final"))

The loss of a batch is TRL's cross-entropy (its fused LM head; assistant turns) plus
``mask_loss_weight`` × the hierarchical mask loss of every labelled mask span with a ground
truth, on masks de-tokenized from the model's own code distributions
(:mod:`masktok.train.vlm.detokenizer_loss`). How it is wired, with public hooks only:

- the tokenizer's :class:`~masktok.tokenizers.himtok.model.HiMTokModel` is attached to the VLM as
  ``mask_decoder`` (the official LMM's name for it), so the Trainer moves it to the device, DDP
  synchronises its gradients and the optimizer holds its trainable weights; LoRA leaves it
  alone. The encoder and the codebook stay frozen; the latent and pixel decoders train unless
  ``train_decoder`` is false;
- :meth:`HiMTokStage2Trainer.compute_loss` writes the frozen encoder's codes into the spans
  (``encode_masks``) and runs TRL's ``compute_loss``; a forward hook on the backbone computes
  the mask loss from the final hidden states inside the forward, and a hook on the model adds it
  to the forward's output, so DDP counts the de-tokenizer as used;
- every checkpoint holds ``mask_tokenizer/`` (``resume`` reads it back); ``final/`` is a chat
  folder: the LMM, its processor, the trained tokenizer in ``mask_tokenizer/`` and
  ``masktok_chat.json``.

Logged besides TRL's metrics: ``mask_loss``, ``mask_bce``, ``mask_dice``, ``mask_iou`` (IoU of
the full-level decoded masks with the ground truth, teacher forced) and ``mask_count``.
Sharded training (FSDP, DeepSpeed ZeRO-3) is refused: the hooks read the LM head and the
de-tokenizer outside their owners' forward.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from masktok.output_lock import hold_run_output
from masktok.train.vlm.config import HiMTokStage2Recipe
from masktok.train.vlm.detokenizer_loss import (
    DetokenizerLoss,
    MaskBatch,
    code_logits,
    detokenizer_loss,
    encode_ground_truth,
    write_codes,
)
from masktok.train.vlm.sft import RecipeResult, export_final, prepare_model, sft_config

MASK_DECODER = "mask_decoder"
MASK_METRICS = ("mask_loss", "mask_bce", "mask_dice", "mask_iou", "mask_count")


def load_stage2_tokenizer(recipe: HiMTokStage2Recipe) -> Any:
    """The recipe's HiMTok tokenizer (float32, CPU): ``recipe.mask_tokenizer``, else the model
    folder's own.

    Raises:
        ValueError: no tokenizer there, or not a HiMTok one.
    """
    from masktok.tokenizers.himtok import HiMTok

    try:
        if recipe.mask_tokenizer is None:
            from masktok.mllm.loading import load_mask_tokenizer

            tokenizer = load_mask_tokenizer(recipe.model.path, dtype=torch.float32)
        else:
            from masktok.tokenizers import load_tokenizer

            tokenizer = load_tokenizer(recipe.mask_tokenizer, dtype=torch.float32)
    except FileNotFoundError as error:
        raise ValueError(f"mask_tokenizer: {error}") from None
    if not isinstance(tokenizer, HiMTok):
        raise ValueError(f"mask_tokenizer: {type(tokenizer).__name__} found; stage 2 trains HiMTok's "
                         f"de-tokenizer")
    return tokenizer


def set_mask_model_trainable(mask_model: torch.nn.Module, train_decoder: bool) -> None:
    """Freeze the encoder, latent tokens and codebook; the latent and pixel decoders train when
    ``train_decoder``."""
    mask_model.requires_grad_(False)
    mask_model.decoder.requires_grad_(train_decoder)
    mask_model.pixel_decoder.requires_grad_(train_decoder)


class SaveMaskTokenizer(TrainerCallback):
    """Writes the (trained) mask tokenizer into every checkpoint as ``mask_tokenizer/``."""

    def __init__(self, mask_tokenizer: Any):
        self.mask_tokenizer = mask_tokenizer

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        from masktok.mllm.loading import MASK_TOKENIZER_DIR

        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            self.mask_tokenizer.save_pretrained(folder / MASK_TOKENIZER_DIR)


class HiMTokStage2Trainer(SFTTrainer):
    """``trl.SFTTrainer`` whose loss adds HiMTok's hierarchical mask loss (see the module
    docstring).

    Args:
        mask_tokenizer: the :class:`~masktok.tokenizers.himtok.HiMTok` whose model is attached
            and trained.
        recipe: the stage-2 options (weights, levels, ``encode_masks``, ``train_decoder``).
        code_token_ids: (V,) the model's token id of each code.
        Everything else: as ``trl.SFTTrainer``; ``model`` must be the Hugging Face model (not yet
        wrapped by peft) and ``data_collator`` a :class:`MaskTargetCollator`.

    Attributes:
        last_mask_loss: the :class:`DetokenizerLoss` of the latest batch with masks.
    """

    def __init__(self, *args: Any, mask_tokenizer: Any, recipe: HiMTokStage2Recipe,
                 code_token_ids: torch.Tensor, **kwargs: Any) -> None:
        model = kwargs.get("model", args[0] if args else None)
        if model is None or hasattr(model, "get_base_model"):
            raise ValueError("model: pass the Hugging Face model itself (peft wraps it here)")
        model.add_module(MASK_DECODER, mask_tokenizer.model)
        super().__init__(*args, **kwargs)
        from transformers.integrations import is_deepspeed_zero3_enabled

        if self.is_fsdp_enabled or (self.is_deepspeed_enabled and is_deepspeed_zero3_enabled()):
            raise ValueError("HiMTok stage 2 runs on one device or under DDP; FSDP and DeepSpeed "
                             "ZeRO-3 sharding are not supported")
        self.mask_tokenizer = mask_tokenizer
        self.mask_model = mask_tokenizer.model
        self.recipe = recipe
        self.code_token_ids = code_token_ids.long()
        set_mask_model_trainable(self.mask_model, recipe.train_decoder)
        self.last_mask_loss: DetokenizerLoss | None = None
        self._pending: MaskBatch | None = None
        self._result: DetokenizerLoss | None = None
        self._mask_logs: dict[str, defaultdict[str, list[float]]] = {
            "train": defaultdict(list), "eval": defaultdict(list)}
        self._hooks = [self.language_model().base_model.register_forward_hook(self._on_backbone),
                       self.model.register_forward_hook(self._on_model)]
        self.add_callback(SaveMaskTokenizer(mask_tokenizer))

    def language_model(self) -> Any:
        """The Hugging Face model inside the peft / DDP wrappers (it holds ``mask_decoder``)."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    # ---- hooks ------------------------------------------------------------------------------
    def _on_backbone(self, module: Any, args: Any, output: Any) -> None:
        if self._pending is None or self._result is not None:
            return
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        head = self.language_model().get_output_embeddings()
        batch = self._pending
        logits = code_logits(hidden, head.weight, getattr(head, "bias", None), batch, self.code_token_ids)
        recipe = self.recipe
        self._result = detokenizer_loss(
            self.mask_model, logits, batch.spans[:, 2], batch.frames, scale=recipe.code_logit_scale,
            num_partial=recipe.num_partial_levels, bce_weight=recipe.bce_weight,
            dice_weight=recipe.dice_weight)

    def _on_model(self, module: Any, args: Any, output: Any) -> Any:
        if self._result is not None and isinstance(output, dict):
            output["mask_loss"] = self._result.loss  # reachable from the output: DDP sees it used
        return output

    # ---- loss -------------------------------------------------------------------------------
    def mask_batch(self, inputs: dict[str, Any]) -> MaskBatch | None:
        """Take the ground truth out of ``inputs``, write the encoder's codes into the spans
        (``encode_masks``), keep the spans whose codes are in the loss."""
        batch = MaskBatch.pop(inputs)
        if batch is None or len(batch) == 0:
            return None
        if self.recipe.encode_masks:
            codes = encode_ground_truth(self.mask_model, batch)
            inputs["input_ids"], inputs["labels"] = write_codes(
                inputs["input_ids"], inputs["labels"], batch, codes, self.code_token_ids)
        rows, firsts = batch.spans[:, 0], batch.spans[:, 1]
        labelled = inputs["labels"][rows.to(inputs["labels"].device), firsts.to(inputs["labels"].device)] != -100
        batch = batch.select(labelled.to(batch.spans.device))
        return batch if len(batch) else None

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        batch = self.mask_batch(inputs)
        active = batch is not None and self.recipe.mask_loss_weight > 0
        self._pending, self._result = (batch if active else None), None
        try:
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
        finally:
            result, self._pending, self._result = self._result, None, None
        loss, outputs = out if return_outputs else (out, None)
        if active:
            if result is None:
                raise RuntimeError("the backbone's forward hook did not run: the model's forward no "
                                   "longer goes through its base_model")
            self.last_mask_loss = result
            weight = self.recipe.mask_loss_weight / self._accumulation_divisor(num_items_in_batch)
            loss = loss + weight * result.loss
            self._record(result)
        return (loss, outputs) if return_outputs else loss

    def _accumulation_divisor(self, num_items_in_batch: Any) -> int:
        """How many micro-batches the Trainer sums without dividing (the cross-entropy is then
        already divided by the whole step's token count; the mask loss is a per-batch mean)."""
        if not self.model.training:
            return 1
        scaled = self.loss_is_scaled_for_ga
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) \
                or self.compute_loss_func is not None
        steps = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        return int(steps) if scaled else 1

    def _record(self, result: DetokenizerLoss) -> None:
        mode = "train" if self.model.training else "eval"
        values = torch.stack([result.loss.detach().float(), result.bce.float(), result.dice.float(),
                              result.iou.float(), torch.tensor(float(result.num_masks), device=result.iou.device)])
        gathered = self.accelerator.gather_for_metrics(values.unsqueeze(0)).mean(dim=0).tolist()
        for key, value in zip(MASK_METRICS, gathered):
            self._mask_logs[mode][key].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        prefix = "" if mode == "train" else "eval_"
        for key, series in self._mask_logs[mode].items():
            if series:
                logs[prefix + key] = sum(series) / len(series)
        self._mask_logs[mode].clear()
        super().log(logs, start_time)


def detach_mask_model(trainer: HiMTokStage2Trainer) -> None:
    """Take the de-tokenizer off the VLM (before exporting it) and back to the CPU."""
    for hook in trainer._hooks:
        hook.remove()
    model = trainer.language_model()
    if MASK_DECODER in model._modules:
        delattr(model, MASK_DECODER)
    trainer.mask_model.cpu()


def resume_mask_tokenizer(trainer: HiMTokStage2Trainer) -> str | None:
    """Load the newest checkpoint's ``mask_tokenizer/`` into the attached model; → its path
    (None: no checkpoint yet)."""
    from transformers.trainer_utils import get_last_checkpoint

    from masktok.mllm.loading import MASK_TOKENIZER_DIR
    from masktok.tokenizers import load_tokenizer

    output_dir = Path(trainer.args.output_dir)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        return None
    folder = Path(last) / MASK_TOKENIZER_DIR
    if not folder.is_dir():
        raise ValueError(f"{last}: the checkpoint has no {MASK_TOKENIZER_DIR}/ to resume the "
                         f"de-tokenizer from")
    state = load_tokenizer(folder, dtype=torch.float32).model.state_dict()
    trainer.mask_model.load_state_dict(state)
    return str(folder)


def build_himtok_stage2_trainer(recipe: HiMTokStage2Recipe, *, model: Any = None, processor: Any = None,
                                mask_tokenizer: Any = None, train_dataset: Any = None,
                                eval_dataset: Any = None, callbacks: list[Any] | None = None
                                ) -> HiMTokStage2Trainer:
    """A ready :class:`HiMTokStage2Trainer`; ``model``/``processor``/``mask_tokenizer``/datasets
    override what the recipe would load."""
    from masktok.mllm.loading import check_pairing
    from masktok.train.vlm.assistant_loss import assistant_collator
    from masktok.train.vlm.mask_targets import MaskTargetCollator, load_mask_sft_dataset

    model, processor, _, _, peft_config = prepare_model(recipe.model, model, processor,
                                                        lora_exclude=(MASK_DECODER,))
    mask_tokenizer = mask_tokenizer if mask_tokenizer is not None else load_stage2_tokenizer(recipe)
    vocabulary = mask_tokenizer.vocabulary
    token_ids = check_pairing(processor, mask_tokenizer)  # the VLM must hold the tokenizer's words
    code_ids = torch.tensor([token_ids[vocabulary.code_token(0, c)] for c in range(vocabulary.codebook_size)])
    load = dict(vocabulary=vocabulary, image_root=recipe.image_root, max_samples=recipe.max_samples)
    if train_dataset is None:
        train_dataset = load_mask_sft_dataset(recipe.data, **load)
    if eval_dataset is None and recipe.eval_data:
        eval_dataset = load_mask_sft_dataset(recipe.eval_data, **load)
    base, trl_loss = assistant_collator(processor, max_length=recipe.max_length, loss_on=recipe.loss_on)
    collator = MaskTargetCollator(base, vocabulary, token_ids, frame_size=mask_tokenizer.config.image_size,
                                  box_first=mask_tokenizer.config.box_prefix)
    args = sft_config(recipe, trl_assistant_loss=trl_loss, evaluate=eval_dataset is not None)
    return HiMTokStage2Trainer(model=model, args=args, data_collator=collator,
                               train_dataset=train_dataset, eval_dataset=eval_dataset,
                               processing_class=processor, peft_config=peft_config,
                               callbacks=callbacks, mask_tokenizer=mask_tokenizer, recipe=recipe,
                               code_token_ids=code_ids)


def export_himtok_stage2(trainer: HiMTokStage2Trainer) -> RecipeResult:
    """Write ``output_dir/final`` as a chat folder: the LMM (LoRA merged) and its processor, the
    trained tokenizer in ``mask_tokenizer/`` and ``masktok_chat.json``; plus ``result.json``."""
    import json

    from masktok.mllm.loading import MANIFEST_NAME, write_mask_tokenizer

    detach_mask_model(trainer)
    result = export_final(trainer, trainer.processing_class, trainer.recipe.model)
    if trainer.is_world_process_zero():
        final = Path(result.final_dir)
        manifest = final / MANIFEST_NAME  # the source folder's, when it had one: keep its chat settings
        settings = json.loads(manifest.read_text()).get("settings") if manifest.is_file() else None
        for pattern in type(trainer.mask_tokenizer).official_files:  # superseded by the trained one
            for path in final.glob(pattern):
                path.unlink()
        write_mask_tokenizer(final, trainer.mask_tokenizer, settings=settings)
        result.mask_tokenizer_copied = True
        result.write()
    return result


def run_himtok_stage2(recipe: HiMTokStage2Recipe, *, model: Any = None, processor: Any = None,
                      mask_tokenizer: Any = None, train_dataset: Any = None,
                      resume: bool = False) -> RecipeResult:
    """Train ``recipe`` and export ``output_dir/final`` (see the module docstring; the output
    folder held by this run alone while it runs)."""
    with hold_run_output(recipe.train.output_dir, command="masktok train himtok-stage2"):
        trainer = build_himtok_stage2_trainer(recipe, model=model, processor=processor,
                                              mask_tokenizer=mask_tokenizer, train_dataset=train_dataset)
        return train_himtok_stage2(trainer, resume=resume)


def train_himtok_stage2(trainer: HiMTokStage2Trainer, *, resume: bool = False) -> RecipeResult:
    """Run a built trainer (from the newest checkpoint when ``resume``) and export."""
    if resume:
        resume_mask_tokenizer(trainer)
    trainer.train(resume_from_checkpoint=True if resume else None)
    return export_himtok_stage2(trainer)
