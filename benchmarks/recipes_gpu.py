"""The training recipes at work on a small random VLM: SFT overfitting RES samples, then GRPO
raising the textual answer-matching reward on a toy GRES task; times, rewards and a plot.

    python benchmarks/recipes_gpu.py --out runs/recipes_gpu             # GPU run (bf16 autocast)
    python benchmarks/recipes_gpu.py --out /tmp/recipes --scale tiny    # quick CPU check

The model is a random Qwen2.5-VL built offline (``tests/mllm_fixtures.py``) with the SAMTok words
added; the toy data comes from ``tests/test_recipes_toy.py`` (the recipe tests use the same
builders at a smaller scale). Phases:

1. RES SFT: ``--res-samples`` phrase/image pairs, each answered by one random mask word; greedy
   exact-match rate of the mask words before and after.
2. GRES GRPO: ``--gres-prompts`` prompts with 0/1/2 target masks. A short SFT on each prompt's
   truth plus one wrong answer makes a policy that is right about half the time; GRPO with the
   answer-matching reward and constrained rollouts then trains on the truth. The mean reward of
   64 constrained samples per prompt is measured before and after, and the per-step training
   reward is logged.

Writes ``recipes_gpu.json`` and ``recipes_reward_curve.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SCALES = {  # TinyVLMConfig overrides
    "tiny": dict(),
    "small": dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                  vision_hidden_size=64, vision_depth=2),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--res-samples", type=int, default=32)
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--gres-prompts", type=int, default=12)
    parser.add_argument("--prebias-steps", type=int, default=200)
    parser.add_argument("--grpo-steps", type=int, default=90)
    parser.add_argument("--grpo-lr", type=float, default=5e-4)
    parser.add_argument("--num-generations", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def train_settings(folder: Path, **values):
    from masktok.train.vlm.config import TrainSettings

    base = dict(warmup_ratio=0.0, lr_scheduler="constant", save_steps=0, seed=0,
                extra={"disable_tqdm": True})
    base.update(values)
    return TrainSettings(str(folder), **base)


def greedy_exact(folder: str, rows) -> float:
    """Share of RES rows whose greedy answer is exactly their mask words."""
    from masktok.mllm.loading import load_vlm
    from test_recipes_toy import answer_of, generate_answers

    model, processor = load_vlm(folder, device=device())
    hits = [generate_answers(model, processor, r, max_new_tokens=8)[0] == answer_of(r) for r in rows]
    return sum(hits) / len(rows)


def sampled_reward(folder: str, rows, samples: int) -> float:
    """Mean answer-matching reward of ``samples`` constrained samples per GRES prompt."""
    from masktok.mllm.loading import load_vlm
    from masktok.train.vlm.grpo import grammar_processors
    from masktok.train.vlm.rewards import answer_matching_reward
    from masktok.words import SAMTOK_VOCABULARY
    from test_recipes_toy import answer_of, generate_answers

    torch.manual_seed(0)
    model, processor = load_vlm(folder, device=device())
    grammar = grammar_processors(processor, SAMTOK_VOCABULARY)(10_000)
    total = 0.0
    for row in rows:
        answers = generate_answers(model, processor, row, samples=samples, logits_processor=grammar)
        total += sum(answer_matching_reward(a, answer_of(row)) for a in answers) / samples
    return total / len(rows)


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def plot(path: Path, sft_losses, curve, before: float, after: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([s for s, _ in sft_losses], [v for _, v in sft_losses])
    left.set(title="RES SFT", xlabel="step", ylabel="loss (assistant tokens)", yscale="log")
    steps = [s for s, _ in curve]
    values = [v for _, v in curve]
    window = 10
    running = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
               for i in range(len(values))]
    right.plot(steps, values, alpha=0.35, label="mean reward of the step's rollouts")
    right.plot(steps, running, label=f"running mean ({window} steps)")
    right.axhline(before, color="grey", linestyle="--", label=f"sampled before: {before:.2f}")
    right.axhline(after, color="black", linestyle=":", label=f"sampled after: {after:.2f}")
    right.set(title="GRES GRPO, textual answer-matching reward", xlabel="step", ylabel="reward",
              ylim=(0, 1.02))
    right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    args = parse_args()
    from masktok.train.vlm.grpo import reward_curve, run_grpo
    from masktok.train.vlm.config import GRPORecipe, ModelSettings, SFTRecipe
    from masktok.train.vlm.sft import run_sft
    from mllm_fixtures import TinyVLMConfig
    from test_recipes_toy import gres_toy, res_toy, save_tiny_vlm

    torch.manual_seed(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = replace(TinyVLMConfig(seed=args.seed), **SCALES[args.scale])
    model_dir = save_tiny_vlm(out / "model", config)
    params = sum(t.numel() for t in load_file(str(model_dir / "model.safetensors")).values())
    report = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "scale": args.scale, "parameters": params,
              "config": vars(args) | {"out": str(out)}}

    # 1. RES SFT
    res_path, res_rows = res_toy(out / "res", num_samples=args.res_samples, seed=args.seed)
    exact_before = greedy_exact(str(model_dir), res_rows)
    start = time.perf_counter()
    sft = run_sft(SFTRecipe(model=ModelSettings(str(model_dir)),
                            train=train_settings(out / "sft", max_steps=args.sft_steps,
                                                 learning_rate=3e-3, batch_size=16, logging_steps=5),
                            data=(str(res_path),), max_length=512))
    sft_seconds = time.perf_counter() - start
    exact_after = greedy_exact(sft.final_dir, res_rows)
    sft_losses = reward_curve(sft.log_history, "loss")
    report["sft"] = {"steps": sft.global_step, "seconds": sft_seconds,
                     "seconds_per_step": sft_seconds / sft.global_step,
                     "first_loss": sft_losses[0][1], "last_loss": sft_losses[-1][1],
                     "greedy_exact_before": exact_before, "greedy_exact_after": exact_after}
    print(f"SFT  {sft.global_step} steps in {sft_seconds:.1f} s; loss {sft_losses[0][1]:.3f} → "
          f"{sft_losses[-1][1]:.4f}; greedy exact mask words {exact_before:.0%} → {exact_after:.0%}",
          flush=True)

    # 2. GRES GRPO from a half-right policy
    truth, mixture, gres_rows = gres_toy(out / "gres", num_prompts=args.gres_prompts, seed=args.seed)
    prebias = run_sft(SFTRecipe(model=ModelSettings(str(model_dir)),
                                train=train_settings(out / "prebias", max_steps=args.prebias_steps,
                                                     learning_rate=3e-3, batch_size=16,
                                                     logging_steps=20),
                                data=(str(mixture),), max_length=512))
    before = sampled_reward(prebias.final_dir, gres_rows, args.eval_samples)
    gens = args.num_generations
    start = time.perf_counter()
    grpo = run_grpo(GRPORecipe(model=ModelSettings(prebias.final_dir),
                               train=train_settings(out / "grpo", max_steps=args.grpo_steps,
                                                    learning_rate=args.grpo_lr, batch_size=4 * gens,
                                                    logging_steps=1),
                               data=(str(truth),), num_generations=gens, max_completion_length=16))
    grpo_seconds = time.perf_counter() - start
    after = sampled_reward(grpo.final_dir, gres_rows, args.eval_samples)
    curve = reward_curve(grpo.log_history)
    first, last = curve[:10], curve[-10:]
    report["grpo"] = {"steps": grpo.global_step, "seconds": grpo_seconds,
                      "seconds_per_step": grpo_seconds / grpo.global_step,
                      "rollouts_per_step": 4 * gens, "reward_curve": curve,
                      "train_reward_first10": sum(v for _, v in first) / len(first),
                      "train_reward_last10": sum(v for _, v in last) / len(last),
                      "sampled_reward_before": before, "sampled_reward_after": after}
    report["sft"]["loss_curve"] = sft_losses
    print(f"GRPO {grpo.global_step} steps in {grpo_seconds:.1f} s ({4 * gens} rollouts/step); "
          f"training reward first 10 steps {report['grpo']['train_reward_first10']:.3f} → last 10 "
          f"{report['grpo']['train_reward_last10']:.3f}; sampled reward {before:.3f} → {after:.3f}",
          flush=True)

    (out / "recipes_gpu.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(out / "recipes_reward_curve.png", sft_losses, curve, before, after)
    print(json.dumps({k: v for k, v in report.items() if k not in ("sft", "grpo")}))
    print(f"wrote {out / 'recipes_gpu.json'} and {out / 'recipes_reward_curve.png'}")


if __name__ == "__main__":
    main()
