"""Small configs of the VLM training recipes (``masktok train sft | grpo | himtok-stage2``).

Each recipe is one dataclass built from three parts: which model and what to train in it
(:class:`ModelSettings`, with an optional :class:`LoraSettings`), how long and how fast
(:class:`TrainSettings`; GRPO and HiMTok stage 2 have their own defaults), and the recipe's own
data and objective (:class:`SFTRecipe`, :class:`GRPORecipe`, :class:`HiMTokStage2Recipe`). Every
field is checked on construction; a bad value raises ``ValueError`` naming the field.

These dataclasses are the one source of defaults and help texts: the command line and the YAML
recipe files are read through them (:mod:`masktok.train.vlm.recipe_args`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from masktok.words.vocabulary import OFFICIAL_VOCABULARIES

VOCABULARY_NAMES = tuple(OFFICIAL_VOCABULARIES)
NEW_TOKEN_MODES = ("rows", "full")
PRECISIONS = ("auto", "bf16", "fp32")
WEIGHT_DTYPES = ("float32", "bfloat16")
LOSS_SCOPES = ("assistant", "all")
REWARD_KINDS = ("match", "partial", "gcg")
# The language model's linear layers in Qwen2.5-VL / Qwen3-VL (and most decoder LLMs).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a positive value, got {value!r}")


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter on the language model (the vision tower never gets one).

    Attributes:
        rank, alpha, dropout: LoRA's r, lora_alpha and lora_dropout.
        target_modules: names of the language model's linear layers to adapt; matched only
            inside the language model (the vision tower is excluded by the pattern).
        new_tokens: how the mask words become trainable. ``"full"``: the whole input embedding
            and LM head train (peft ``modules_to_save``; a tied head stays tied to the trained
            embedding). ``"rows"``: only the mask words' rows of the input embedding train (peft
            ``trainable_token_indices``) and the whole LM head (``modules_to_save``; TRL's fused
            LM head reads the head's weight and bias directly, which peft's row-wise wrapper
            does not expose) — lighter, for untied heads only.
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    new_tokens: str = "full"

    def __post_init__(self) -> None:
        _positive("lora.rank", self.rank)
        _positive("lora.alpha", self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout: expected a value in [0, 1), got {self.dropout!r}")
        if not self.target_modules or not all(isinstance(t, str) and t.isidentifier()
                                              for t in self.target_modules):
            raise ValueError(f"lora.target_modules: expected module names such as 'q_proj', got "
                             f"{self.target_modules!r}")
        _choice("lora.new_tokens", self.new_tokens, NEW_TOKEN_MODES)


@dataclass(frozen=True)
class ModelSettings:
    """The model to train and which of its parts learn.

    Attributes:
        path: a Hugging Face image-text-to-text folder (Qwen2.5-VL, Qwen3-VL, …), e.g. one written
            by ``masktok vlm add-vocab`` or a masktok chat folder.
        vocabulary: ``"samtok"`` / ``"himtok"``: add these mask words when the tokenizer lacks
            them; None: the tokenizer must already hold exactly one of the two vocabularies.
        freeze_vision: keep the vision tower frozen (the SAMTok recipe).
        train_projector: keep the vision-to-language projector (Qwen's ``merger``) trainable
            even when the tower is frozen (the SAMTok recipe).
        lora: train a LoRA adapter instead of the full language model.
        weight_dtype: dtype the weights are loaded in; ``"float32"`` keeps fp32 master weights
            (bf16 then runs as autocast), ``"bfloat16"`` halves memory (sensible with LoRA).
        attn_implementation: passed to ``from_pretrained`` (None: the library's default).
        gradient_checkpointing: trade compute for activation memory.
        max_pixels: the processor's pixel budget per image (None: as the folder's processor
            says); images above it are scaled down. HiMTok's stage 2 trains at low resolution
            (448² = 200704), stage 3 at high resolution. The exported processor keeps it.
    """

    path: str = field(metadata={"flat_name": "model"})
    vocabulary: str | None = None
    freeze_vision: bool = True
    train_projector: bool = True
    lora: LoraSettings | None = None
    weight_dtype: str = "float32"
    attn_implementation: str | None = "sdpa"
    gradient_checkpointing: bool = False
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"model.path: expected a model folder, got {self.path!r}")
        if self.vocabulary is not None:
            _choice("model.vocabulary", self.vocabulary, VOCABULARY_NAMES)
        _choice("model.weight_dtype", self.weight_dtype, WEIGHT_DTYPES)
        if self.max_pixels is not None:
            _positive("model.max_pixels", self.max_pixels)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation and bookkeeping shared by both recipes (they map onto TRL's configs).

    Attributes:
        output_dir: checkpoints, logs and ``final/``.
        max_steps: optimizer steps (-1: run ``epochs`` over the data).
        epochs: passes over the data when ``max_steps`` is -1.
        learning_rate, weight_decay, max_grad_norm, warmup_ratio, lr_scheduler: AdamW and its
            schedule.
        batch_size: per device; SFT: conversations; GRPO: completions (a multiple of
            ``num_generations``).
        grad_accum: gradient accumulation steps.
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"bf16"`` or ``"fp32"``.
        seed: model init of adapters, data order, sampling.
        logging_steps, save_steps, save_total_limit: logs and checkpoints (save_steps 0: only
            the final export).
        report_to: trackers for ``transformers.Trainer`` (e.g. ``("tensorboard",)``).
        dataloader_workers: worker processes decoding images.
        extra: further TRL config fields, passed through unchanged (e.g. ``{"fsdp": "full_shard"}``).
    """

    output_dir: str
    max_steps: int = -1
    epochs: float = 1.0
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    batch_size: int = 8
    grad_accum: int = 1
    precision: str = "auto"
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    report_to: tuple[str, ...] = ()
    dataloader_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ValueError("train.output_dir: expected a folder")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"train.max_steps: expected -1 or a positive step count, got {self.max_steps}")
        if self.max_steps == -1:
            _positive("train.epochs", self.epochs)
        _positive("train.learning_rate", self.learning_rate)
        _positive("train.batch_size", self.batch_size)
        _positive("train.grad_accum", self.grad_accum)
        _positive("train.logging_steps", self.logging_steps)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"train.warmup_ratio: expected a value in [0, 1), got {self.warmup_ratio}")
        if self.save_steps < 0 or self.save_total_limit < 1 or self.dataloader_workers < 0:
            raise ValueError("train.save_steps and train.dataloader_workers must be ≥ 0 and "
                             f"train.save_total_limit ≥ 1, got {self.save_steps}, "
                             f"{self.dataloader_workers}, {self.save_total_limit}")
        _choice("train.precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class GRPOTrainSettings(TrainSettings):
    """:class:`TrainSettings` with GRPO's defaults: the SAMTok paper's RL learning rate (1e-6), a
    constant schedule without warm-up, 16 completions per device and step, a log row per step."""

    learning_rate: float = 1e-6
    lr_scheduler: str = "constant"
    warmup_ratio: float = 0.0
    batch_size: int = 16
    logging_steps: int = 1


@dataclass(frozen=True)
class HiMTokStage2TrainSettings(TrainSettings):
    """:class:`TrainSettings` with HiMTok stage 2's learning rate (paper, appendix D: 4e-5)."""

    learning_rate: float = 4e-5


@dataclass(frozen=True)
class SFTRecipe:
    """Supervised fine-tuning on SFT JSONL (``messages`` + ``images``, as ``masktok build-sft``
    writes it).

    Attributes:
        model, train: see :class:`ModelSettings`, :class:`TrainSettings`.
        data: training JSONL files.
        eval_data: held-out JSONL files (evaluated every ``eval_steps``; empty: none).
        image_root: folder that relative image paths start from (None: the working directory).
        max_length: longest tokenized conversation; longer ones lose text at their end, and one
            whose images would be cut raises.
        loss_on: ``"assistant"`` (every assistant turn, its end-of-turn token included) or
            ``"all"`` tokens.
        max_samples: use at most this many conversations per file list (None: all).
        eval_steps: steps between evaluations when ``eval_data`` is given.
    """

    model: ModelSettings
    train: TrainSettings
    data: tuple[str, ...]
    eval_data: tuple[str, ...] = ()
    image_root: str | None = None
    max_length: int = 2048
    loss_on: str = "assistant"
    max_samples: int | None = None
    eval_steps: int = 500

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data: expected at least one SFT JSONL file")
        _positive("max_length", self.max_length)
        _choice("loss_on", self.loss_on, LOSS_SCOPES)
        if self.max_samples is not None:
            _positive("max_samples", self.max_samples)
        _positive("eval_steps", self.eval_steps)


@dataclass(frozen=True)
class GRPORecipe:
    """GRPO with the textual answer-matching reward on SFT JSONL: every conversation's last
    assistant turn is the ground truth, everything before it the prompt.

    Attributes:
        model, train: see :class:`ModelSettings`, :class:`TrainSettings` (the SAMTok paper's RL
            learning rate is 1e-6).
        data: JSONL files (the SFT format).
        image_root, max_samples: as in :class:`SFTRecipe`.
        reward: ``"match"`` (exact code tuples), ``"partial"`` (per-level credit) or ``"gcg"``
            (codes and phrases).
        format_weight: weight of the format reward (well-formed spans; with ``r1`` also the
            ``<think>…</think><answer>…</answer>`` layout); the answer reward gets 1 − weight.
        r1: ask the format reward for the R1 layout.
        num_generations: completions per prompt (the group of GRPO's advantage).
        max_completion_length: new tokens per completion.
        temperature, top_p: sampling of the rollouts.
        beta: KL weight towards the starting model (0: no reference model is kept).
        epsilon: PPO clip range.
        loss_type: TRL's GRPO loss normalisation (``"dapo"``, ``"grpo"``, ``"dr_grpo"``, …).
        num_iterations: updates per batch of rollouts.
        constrained: sample the rollouts through masktok's grammar (only well-formed spans).
        num_codes: with ``constrained``, force this many codes per span (HiMTok's fixed
            lengths; None: the vocabulary's grammar).
        generation_kwargs: further ``generate`` settings (e.g. ``{"repetition_penalty": 1.05}``).
    """

    model: ModelSettings
    train: GRPOTrainSettings
    data: tuple[str, ...]
    image_root: str | None = None
    max_samples: int | None = None
    reward: str = "match"
    format_weight: float = 0.0
    r1: bool = False
    num_generations: int = 8
    max_completion_length: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0
    epsilon: float = 0.2
    loss_type: str = "dapo"
    num_iterations: int = 1
    constrained: bool = True
    num_codes: int | None = None
    generation_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data: expected at least one JSONL file")
        _choice("reward", self.reward, REWARD_KINDS)
        if not 0.0 <= self.format_weight <= 1.0:
            raise ValueError(f"format_weight: expected a value in [0, 1], got {self.format_weight}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations: GRPO needs at least 2 completions per prompt, got "
                             f"{self.num_generations}")
        if self.train.batch_size % self.num_generations:
            raise ValueError(f"train.batch_size ({self.train.batch_size}) must be a multiple of "
                             f"num_generations ({self.num_generations}): it counts completions")
        _positive("max_completion_length", self.max_completion_length)
        _positive("temperature", self.temperature)
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p: expected a value in (0, 1], got {self.top_p}")
        if self.beta < 0 or self.epsilon <= 0:
            raise ValueError(f"beta must be ≥ 0 and epsilon > 0, got {self.beta}, {self.epsilon}")
        _positive("num_iterations", self.num_iterations)
        if self.num_codes is not None and not self.constrained:
            raise ValueError("num_codes: only used by constrained decoding; set constrained=True")
        if self.max_samples is not None:
            _positive("max_samples", self.max_samples)


@dataclass(frozen=True)
class HiMTokStage2Recipe(SFTRecipe):
    """HiMTok's stage 2 (paper §3.3, Fig. 3b): SFT whose loss adds, to the cross-entropy, the
    hierarchical mask loss on masks de-tokenized from the model's own predicted code
    distributions. The de-tokenizer trains with the model (or stays frozen); the encoder is frozen.

    Data: the SFT JSONL with the ground-truth mask of each mask span in ``masks`` (see
    :mod:`masktok.train.vlm.mask_targets`); a record without masks adds cross-entropy only.

    Attributes:
        mask_tokenizer: the HiMTok tokenizer: a masktok folder (e.g. stage 1's ``final/``) or an
            official ``himtok.pth``; None: the one in the model folder.
        mask_loss_weight: weight of the mask loss next to the cross-entropy (0: cross-entropy only).
        train_decoder: train the de-tokenizer (latent and pixel decoder) with the model; false
            keeps it frozen. The encoder and the codebook are always frozen.
        encode_masks: write the codes of every span that has a ground-truth mask with the frozen
            encoder while training (the text may hold placeholder codes, as the official data
            does); false trains on the codes the text holds.
        num_partial_levels: prefix levels sampled per mask besides its full level, with
            p(l) ∝ 1 / (l + 8).
        code_logit_scale: the predicted distribution at a code position is softmax(scale · the
            logits of the code tokens) (the official model uses 2).
        bce_weight, dice_weight: weights of BCE and Dice inside each level's mask loss.
    """

    train: HiMTokStage2TrainSettings
    mask_tokenizer: str | None = None
    mask_loss_weight: float = 1.0
    train_decoder: bool = True
    encode_masks: bool = True
    num_partial_levels: int = 3
    code_logit_scale: float = 2.0
    bce_weight: float = 1.0
    dice_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask_tokenizer is not None and not self.mask_tokenizer:
            raise ValueError("mask_tokenizer: expected a tokenizer folder or file, got ''")
        if self.mask_loss_weight < 0:
            raise ValueError(f"mask_loss_weight: expected a value ≥ 0, got {self.mask_loss_weight}")
        if self.num_partial_levels < 0:
            raise ValueError(f"num_partial_levels: expected a count ≥ 0, got {self.num_partial_levels}")
        _positive("code_logit_scale", self.code_logit_scale)
        if min(self.bce_weight, self.dice_weight) < 0 or self.bce_weight + self.dice_weight == 0:
            raise ValueError(f"bce_weight and dice_weight: expected values ≥ 0, not both 0, got "
                             f"{self.bce_weight}, {self.dice_weight}")
