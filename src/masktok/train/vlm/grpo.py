"""GRPO on mask generation with SAMTok's textual answer-matching reward: a thin recipe on TRL.

    from masktok.train.vlm.grpo import run_grpo
    from masktok.train.vlm.config import GRPORecipe, ModelSettings, TrainSettings

    result = run_grpo(GRPORecipe(
        model=ModelSettings("runs/sft/final"),
        train=TrainSettings("runs/grpo", max_steps=500, learning_rate=1e-6, batch_size=16),
        data=("sft/gres.trl.jsonl",), num_generations=8))

Each conversation of the SFT JSONL becomes a prompt (every message before its last assistant
turn, with its images) and a ground truth (that turn's text); TRL's ``GRPOTrainer`` samples
``num_generations`` completions per prompt and scores them with
:class:`masktok.train.vlm.rewards.TRLReward` — exact code tuples / max(#predicted, #ground truth), no
mask decoding — optionally mixed with the format reward. Model preparation (mask words, frozen
vision tower, LoRA) is the SFT recipe's (:func:`masktok.train.vlm.sft.prepare_model`).

Batches: the processor pads prompts on the left, as TRL's rollouts and its per-token
log-probabilities expect (TRL sets that only for a processor it loads itself; a right-padded
processor misplaces the image token types of every shorter prompt once a step holds prompts of
different lengths).

Constrained rollouts: TRL builds its ``GenerationConfig`` from ``generation_kwargs`` and offers
no way to hand ``generate`` a ``LogitsProcessor``, so :class:`MaskGRPOTrainer` (a minimal
subclass, public hooks only) wraps the policy's ``generate`` for the duration of ``train()`` to
add masktok's :class:`~masktok.mllm.constrained.MaskGrammarLogitsProcessor`: every sampled span
is well formed. The log-probabilities of the loss stay the policy's own (unconstrained), as TRL
computes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

from masktok.output_lock import hold_run_output
from masktok.train.vlm.config import GRPORecipe
from masktok.train.vlm.rewards import TRLReward
from masktok.train.vlm.sft import RecipeResult, export_final, prepare_model, trainer_arguments
from masktok.words import MaskVocabulary

try:  # the [train] extra; the import error names it when missing
    from trl import GRPOTrainer
except ImportError as _error:  # pragma: no cover - exercised only without the extra
    raise ImportError("masktok.train.vlm.grpo needs TRL: pip install 'masktok[train]'") from _error


Processors = Sequence[Any] | Callable[[int], Sequence[Any]]


def _length_limit(args: tuple, kwargs: dict[str, Any], model: Any) -> int:
    """Total length limit (prompt + new tokens) of a ``generate`` call."""
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    if input_ids is None:
        raise ValueError("generate: rollouts must pass input_ids to find the length limit")
    config = kwargs.get("generation_config") or model.generation_config
    if config.max_new_tokens is not None:
        return int(input_ids.shape[1] + config.max_new_tokens)
    return int(config.max_length)


@contextmanager
def extra_logits_processors(model: Any, processors: Processors):
    """Within the block, ``model.generate`` also applies ``processors`` (after any the caller
    passes): a sequence, or a callable that makes them from the call's total length limit
    (prompt + ``max_new_tokens``), so that a grammar can close its spans in time. The instance
    attribute shadows the class method and is removed on exit."""
    from transformers import LogitsProcessorList

    original = model.generate
    had_own = "generate" in vars(model)

    def generate(*args: Any, **kwargs: Any) -> Any:
        extra = processors(_length_limit(args, kwargs, model)) if callable(processors) else processors
        combined = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        combined.extend(extra)
        return original(*args, logits_processor=combined, **kwargs)

    model.generate = generate
    try:
        yield model
    finally:
        if had_own:
            model.generate = original
        else:
            del model.generate


class MaskGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` whose rollouts also pass through extra logits processors (the
    policy's ``generate`` is wrapped while :meth:`train` runs; rollouts are its only caller).

    Args:
        logits_processors: ``transformers`` logits processors applied in every rollout's
            ``generate``, or a callable making them from the call's length limit (see
            :func:`grammar_processors`).
        Everything else: as ``trl.GRPOTrainer``.

    Raises:
        ValueError: processors with vLLM or continuous-batching rollouts, which do not go
            through ``model.generate``.
    """

    def __init__(self, *args: Any, logits_processors: Processors = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logits_processors = logits_processors
        if self._has_processors() and (self.args.use_vllm or self.args.use_transformers_continuous_batching):
            raise ValueError("logits_processors: rollouts through vLLM or continuous batching do not "
                             "call model.generate; turn constrained decoding off for them")

    def _has_processors(self) -> bool:
        return callable(self.logits_processors) or len(self.logits_processors) > 0

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """``GRPOTrainer.train`` with the processors added to every rollout's ``generate`` (TRL
        unwraps DDP / FSDP / DeepSpeed to this same model object before generating)."""
        if not self._has_processors():
            return super().train(*args, **kwargs)
        with extra_logits_processors(self.model, self.logits_processors):
            return super().train(*args, **kwargs)


def grammar_processors(processor: Any, vocab: MaskVocabulary, num_codes: int | None = None
                       ) -> Callable[[int], list[Any]]:
    """masktok's grammar-constrained decoding for ``vocab`` over ``processor``'s token ids, as a
    callable of the length limit (spans are opened only when they can close before it)."""
    from masktok.mllm.constrained import MaskGrammarLogitsProcessor
    from masktok.mllm.vocabulary import mask_token_ids

    token_ids = mask_token_ids(processor, vocab)
    MaskGrammarLogitsProcessor(vocab, token_ids, num_codes=num_codes)  # validates now, not mid-run

    def make(max_length: int) -> list[Any]:
        return [MaskGrammarLogitsProcessor(vocab, token_ids, num_codes=num_codes,
                                           max_length=max_length)]

    return make


def reward_functions(recipe: GRPORecipe, vocab: MaskVocabulary) -> tuple[list[TRLReward], list[float]]:
    """The answer reward (``recipe.reward``) and, when weighted, the format reward, with weights
    (1 − format_weight, format_weight)."""
    functions = [TRLReward(recipe.reward, vocab)]
    weights = [1.0 - recipe.format_weight]
    if recipe.format_weight > 0:
        functions.append(TRLReward("format", vocab, r1=recipe.r1))
        weights.append(recipe.format_weight)
    return functions, weights


def build_grpo_trainer(recipe: GRPORecipe, *, model: Any = None, processor: Any = None,
                       train_dataset: Any = None, callbacks: list[Any] | None = None
                       ) -> MaskGRPOTrainer:
    """A ready :class:`MaskGRPOTrainer` for ``recipe``; ``model``/``processor``/``train_dataset``
    override what the recipe would load."""
    from trl import GRPOConfig

    from masktok.train.vlm.data import load_grpo_dataset

    model, processor, vocab, _, peft_config = prepare_model(recipe.model, model, processor)
    processor.tokenizer.padding_side = "left"  # TRL's rollouts and log-probabilities need it
    if train_dataset is None:
        train_dataset = load_grpo_dataset(recipe.data, image_root=recipe.image_root,
                                          max_samples=recipe.max_samples)
    functions, weights = reward_functions(recipe, vocab)
    arguments = trainer_arguments(recipe.train, recipe.model)
    arguments.update(
        num_generations=recipe.num_generations, max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature, top_p=recipe.top_p, beta=recipe.beta,
        epsilon=recipe.epsilon, loss_type=recipe.loss_type, num_iterations=recipe.num_iterations,
        reward_weights=weights, generation_kwargs=dict(recipe.generation_kwargs) or None,
        remove_unused_columns=False)
    processors = grammar_processors(processor, vocab, recipe.num_codes) if recipe.constrained else ()
    return MaskGRPOTrainer(model=model, reward_funcs=functions, args=GRPOConfig(**arguments),
                           train_dataset=train_dataset, processing_class=processor,
                           peft_config=peft_config, callbacks=callbacks,
                           logits_processors=processors)


def run_grpo(recipe: GRPORecipe, *, model: Any = None, processor: Any = None,
             train_dataset: Any = None, resume: bool = False) -> RecipeResult:
    """Train ``recipe`` and export ``output_dir/final`` like the SFT recipe (the output folder
    held by this run alone while it runs)."""
    with hold_run_output(recipe.train.output_dir, command="masktok train grpo"):
        trainer = build_grpo_trainer(recipe, model=model, processor=processor,
                                     train_dataset=train_dataset)
        trainer.train(resume_from_checkpoint=True if resume else None)
        return export_final(trainer, trainer.processing_class, recipe.model)


def reward_curve(log_history: Sequence[dict[str, Any]], key: str = "reward") -> list[tuple[int, float]]:
    """(step, value) of every log row holding ``key`` (TRL logs the weighted mean reward as
    ``reward`` and each function's as ``rewards/<name>/mean``)."""
    return [(int(row["step"]), float(row[key])) for row in log_history if key in row and "step" in row]
