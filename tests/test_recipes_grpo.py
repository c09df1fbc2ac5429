"""The GRPO recipe on tiny random VLMs: on a toy GRES task the textual answer-matching reward rises
over the steps; constrained rollouts are always well formed; the CLI runs it."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from masktok.mllm.loading import load_vlm  # noqa: E402
from masktok.train.vlm.grpo import (  # noqa: E402
    extra_logits_processors,
    grammar_processors,
    reward_curve,
    reward_functions,
    run_grpo,
)
from masktok.train.vlm.config import GRPORecipe, ModelSettings, SFTRecipe, TrainSettings  # noqa: E402
from masktok.train.vlm.rewards import answer_matching_reward  # noqa: E402
from masktok.train.vlm.sft import run_sft  # noqa: E402
from masktok.words import SAMTOK_VOCABULARY  # noqa: E402
from test_recipes_toy import (  # noqa: E402,F401
    answer_of,
    generate_answers,
    gres_toy,
    one_thread,
    save_tiny_vlm,
)

QUIET = {"disable_tqdm": True}


def settings(folder, **overrides) -> TrainSettings:
    values = dict(max_steps=2, learning_rate=1e-4, batch_size=8, warmup_ratio=0.0,
                  lr_scheduler="constant", logging_steps=1, save_steps=0, precision="fp32", extra=QUIET)
    values.update(overrides)
    return TrainSettings(str(folder), **values)


def sampled_reward(folder, rows, samples: int = 32) -> float:
    """Mean answer-matching reward of ``samples`` constrained samples per toy prompt."""
    torch.manual_seed(0)
    model, processor = load_vlm(folder)
    grammar = grammar_processors(processor, SAMTOK_VOCABULARY)(10_000)
    total = 0.0
    for row in rows:
        answers = generate_answers(model, processor, row, samples=samples, logits_processor=grammar)
        total += sum(answer_matching_reward(a, answer_of(row)) for a in answers) / samples
    return total / len(rows)


@pytest.mark.slow
def test_grpo_raises_the_mean_textual_reward_on_a_toy_gres_task(tmp_path, one_thread):
    model_dir = save_tiny_vlm(tmp_path / "model")
    truth, mixture, rows = gres_toy(tmp_path / "data", num_prompts=4)
    # Start from a model that answers right about half the time: SFT on truth + wrong answers.
    start = run_sft(SFTRecipe(model=ModelSettings(str(model_dir)),
                              train=settings(tmp_path / "sft", max_steps=100, learning_rate=5e-3,
                                             logging_steps=20),
                              data=(str(mixture),), max_length=256))
    before = sampled_reward(start.final_dir, rows)
    assert 0.25 < before < 0.75

    recipe = GRPORecipe(model=ModelSettings(start.final_dir),
                        train=settings(tmp_path / "grpo", max_steps=16, learning_rate=5e-4,
                                       batch_size=64),
                        data=(str(truth),), num_generations=16, max_completion_length=16)
    result = run_grpo(recipe)
    curve = [value for _, value in reward_curve(result.log_history)]
    assert len(curve) == 16
    assert sum(curve[-4:]) / 4 > sum(curve[:4]) / 4 + 0.1
    after = sampled_reward(result.final_dir, rows)
    assert after > before + 0.15


@pytest.mark.parametrize("constrained", [True, False])
def test_constrained_rollouts_are_always_well_formed(tmp_path, one_thread, constrained):
    model_dir = save_tiny_vlm(tmp_path / "model")
    truth, _, _ = gres_toy(tmp_path / "data", num_prompts=2)
    recipe = GRPORecipe(model=ModelSettings(str(model_dir)), train=settings(tmp_path / "out"),
                        data=(str(truth),), num_generations=4, max_completion_length=12,
                        format_weight=0.5, constrained=constrained)
    result = run_grpo(recipe)
    formats = [v for _, v in reward_curve(result.log_history, "rewards/masktok_format_reward/mean")]
    assert len(formats) == 2
    if constrained:  # a random model, yet every span opened is closed in time and well formed
        assert formats == [1.0, 1.0]
    else:
        assert min(formats) < 0.5


class _Model:
    def __init__(self):
        self.generation_config = type("C", (), {"max_new_tokens": 7, "max_length": 99})()
        self.calls = []

    def generate(self, input_ids=None, logits_processor=None, **kwargs):
        self.calls.append(list(logits_processor))
        return input_ids


def test_extra_logits_processors_wraps_generate_and_restores_it():
    model = _Model()
    seen = []

    def make(limit):
        seen.append(limit)
        return ["grammar"]

    with extra_logits_processors(model, make):
        model.generate(input_ids=torch.zeros((2, 5)), logits_processor=["caller"])
        assert "generate" in vars(model)
    assert "generate" not in vars(model)
    assert seen == [5 + 7] and model.calls == [["caller", "grammar"]]
    with extra_logits_processors(model, ["fixed"]):
        model.generate(input_ids=torch.zeros((1, 3)))
    assert model.calls[-1] == ["fixed"]


def test_reward_functions_mix_answer_and_format():
    recipe = GRPORecipe(model=ModelSettings("m"), train=settings("o", batch_size=8), data=("d",),
                        format_weight=0.25, reward="partial", r1=True)
    functions, weights = reward_functions(recipe, SAMTOK_VOCABULARY)
    assert [f.__name__ for f in functions] == ["masktok_partial_reward", "masktok_format_reward"]
    assert weights == [0.75, 0.25] and functions[1].r1


def test_cli_train_grpo_runs(tmp_path, one_thread):
    from typer.testing import CliRunner

    from masktok.cli import app

    model_dir = save_tiny_vlm(tmp_path / "model")
    truth, _, _ = gres_toy(tmp_path / "data", num_prompts=2)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "train", "grpo", "--model", str(model_dir), "--data", str(truth), "--output-dir", str(out),
        "--max-steps", "1", "--batch-size", "4", "--num-generations", "2",
        "--max-completion-length", "8", "--precision", "fp32", "--save-steps", "0"])
    assert result.exit_code == 0, result.output
    assert "reward" in result.output and (out / "final" / "config.json").is_file()
