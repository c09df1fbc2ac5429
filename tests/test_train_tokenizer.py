"""The tokenizer trainer on CPU: tiny models, real + synthetic masks, exact resume, SAMTok recipe."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from masktok.train.tokenizer import checkpointing as ckpt
from masktok.train.tokenizer.trainer import TrainConfig, export_checkpoint, train_tokenizer, warmup_cosine
from masktok.train.tokenizer.config import HiMTokTrainConfig, SAMTokTrainConfig

REPO = Path(__file__).resolve().parents[1]


def tiny_himtok_config(quantizer: str = "vq"):
    from masktok.tokenizers.himtok import PixelDecoderConfig, masktok_s_config

    return replace(masktok_s_config(), name="tiny", image_size=32, patch_size=8, num_latent_tokens=8,
                   encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
                   decoder_heads=2, codebook_size=64, quantizer=quantizer,
                   pixel_decoder=PixelDecoderConfig(z_channels=16, hidden_channels=8, channel_mult=(1, 1, 2, 2),
                                                    num_res_blocks=1, out_channels=1, norm_groups=4,
                                                    legacy_shortcut=False))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    from masktok.tokenizers.himtok import HiMTok

    path = tmp_path_factory.mktemp("tiny_himtok")
    HiMTok.from_config(tiny_himtok_config(), seed=0).save_pretrained(path)
    return path


def _config(tiny_model_dir: Path, run_dir: Path, **kw) -> TrainConfig:
    base = dict(model=str(tiny_model_dir), synthetic_fraction=1.0, batch_size=4, steps=6, checkpoint_every=2,
                log_every=1, progress=False, device="cpu", run_dir=str(run_dir), val_prefix_lengths=(1, 4, 8),
                lr=1e-3)
    base.update(kw)
    return TrainConfig.from_dict({"family": "himtok", **base})


def _rows(run_dir: Path) -> dict[int, dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return {int(r["step"]): r for r in csv.DictReader(f) if r.get("loss")}


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 0.1, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 0.1, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 0.1, 0.0) == pytest.approx(0.5, abs=0.02)
    assert warmup_cosine(100, 100, 0.1, 0.2) == pytest.approx(0.2)


@pytest.mark.slow
def test_train_on_real_and_synthetic_masks(tiny_model_dir, tmp_path, test_data):
    from masktok.tokenizers.himtok import HiMTok

    coco = f"coco:{test_data}/coco_val2014_100/instances_val2014_100.json"
    refseg = f"mask_png:{test_data}/refseg_examples/masks"
    cfg = _config(tiny_model_dir, tmp_path / "run", data=(coco,), val_data=(refseg,), synthetic_fraction=0.5,
                  steps=4, tensorboard=True)
    result = train_tokenizer(cfg)
    assert result.step == 4 and not result.stopped_early
    assert set(result.validation) == {"val_miou@1", "val_miou@4", "val_miou@8"}
    assert all(0.0 <= v <= 1.0 for v in result.validation.values())
    rows = _rows(tmp_path / "run")
    assert sorted(rows) == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows.values())
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    tok = HiMTok.from_pretrained(result.export_dir)
    masks = torch.zeros(2, 40, 50, dtype=torch.bool)
    masks[:, 5:30, 10:40] = True
    assert tok.decode(None, tok.encode(None, masks), size=(40, 50)).shape == (2, 40, 50)
    # The exported weights are the trained ones, not the initial ones.
    start = HiMTok.from_pretrained(tiny_model_dir).model.state_dict()
    trained = tok.model.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)


@pytest.mark.slow
def test_resume_continues_exactly(tiny_model_dir, tmp_path):
    full = train_tokenizer(_config(tiny_model_dir, tmp_path / "full"))
    first = train_tokenizer(_config(tiny_model_dir, tmp_path / "split", stop_at_step=3))
    assert first.step == 3 and first.stopped_early and first.export_dir is None
    second = train_tokenizer(_config(tiny_model_dir, tmp_path / "split"), resume=True)
    assert second.step == 6
    a, b = _rows(tmp_path / "full"), _rows(tmp_path / "split")
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):  # the same next batches, the same losses
        assert a[step]["batch_sum"] == b[step]["batch_sum"]
        assert float(a[step]["loss"]) == pytest.approx(float(b[step]["loss"]), rel=1e-6)
    wa = ckpt.load_checkpoint(tmp_path / "full" / "checkpoints" / "step-000006.pt")["model"]
    wb = ckpt.load_checkpoint(tmp_path / "split" / "checkpoints" / "step-000006.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_a_different_run(tiny_model_dir, tmp_path):
    train_tokenizer(_config(tiny_model_dir, tmp_path / "run", stop_at_step=2))
    with pytest.raises(ValueError, match="'lr'"):
        train_tokenizer(_config(tiny_model_dir, tmp_path / "run", lr=5e-3), resume=True)
    with pytest.raises(ValueError, match="no checkpoint"):
        train_tokenizer(_config(tiny_model_dir, tmp_path / "empty"), resume=True)


def test_checkpoint_parts_and_corruption(tiny_model_dir, tmp_path):
    cfg = _config(tiny_model_dir, tmp_path / "run", stop_at_step=2, checkpoint_part_mb=0.05,
                  checkpoint_optimizer_dtype="bfloat16")
    train_tokenizer(cfg)
    parts = sorted((tmp_path / "run" / "checkpoints").glob("step-000002.pt.part*"))
    assert len(parts) > 1 and all(p.stat().st_size <= 0.05 * 2 ** 20 for p in parts)
    state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step-000002.pt")
    assert state["step"] == 2 and state["data"]["step"] == 2
    exported = export_checkpoint(tmp_path / "run", tmp_path / "exported", "float16")
    assert (exported / "model.safetensors").is_file()
    parts[-1].write_bytes(parts[-1].read_bytes()[:10])
    with pytest.raises(ValueError, match="unreadable or truncated"):
        ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step-000002.pt")


def _cli(run_dir: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from masktok.cli import main; main()", "train", "tokenizer",
            "--model", str(model), "--synthetic-fraction", "1", "--batch-size", "4", "--steps", "400",
            "--checkpoint-every", "2", "--log-every", "1", "--lr", "1e-3", "--no-progress", "--device", "cpu",
            "--run-dir", str(run_dir), "--keep-checkpoints", "3", *extra]


def test_killed_run_resumes_with_the_same_next_batch(tiny_model_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed, tiny_model_dir), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill it once a checkpoint is on disk (it runs 400 steps, saving every 2; if it ends first,
    # the assertion below says so).
    while proc.poll() is None and not ckpt.list_checkpoint_steps(killed / "checkpoints"):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = ckpt.list_checkpoint_steps(killed / "checkpoints")
    assert steps and steps[-1] < 400, "the run must be killed mid-way, after a checkpoint"
    resumed_from = steps[-1]
    stop = resumed_from + 2
    subprocess.run(_cli(killed, tiny_model_dir, "--resume", "--stop-at-step", str(stop)), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    reference = tmp_path / "reference"
    subprocess.run(_cli(reference, tiny_model_dir, "--stop-at-step", str(stop)), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    a, b = _rows(reference), _rows(killed)
    for step in range(resumed_from + 1, stop + 1):
        assert a[step]["batch_sum"] == b[step]["batch_sum"]
        assert float(a[step]["loss"]) == pytest.approx(float(b[step]["loss"]), rel=1e-6)
    wa = ckpt.load_checkpoint(reference / "checkpoints" / f"step-{stop:06d}.pt")["model"]
    wb = ckpt.load_checkpoint(killed / "checkpoints" / f"step-{stop:06d}.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_samtok_recipe_trains_only_the_mask_encoder_and_decoder(tmp_path):
    from real_data import yolo_from_coco

    from masktok.tokenizers.samtok import SAMTok, SAMTokModel, tiny_test_config

    images, labels, _ = yolo_from_coco(tmp_path / "yolo", 3)  # real COCO photos and polygons
    yolo = f"yolo:{images},{labels}"
    torch.manual_seed(0)
    before = SAMTokModel(tiny_test_config()).state_dict()
    family = SAMTokTrainConfig(model="tiny-test", data=(yolo,), val_data=(yolo,), batch_size=2,
                               masks_per_image=3)
    cfg = TrainConfig(tokenizer=family, steps=3, checkpoint_every=0, log_every=1, progress=False, device="cpu",
                      run_dir=str(tmp_path / "sam"), lr=1e-3, seed=0)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    result = train_tokenizer(cfg)
    assert set(result.validation) == {"val_miou@1", "val_miou@2"}
    after = SAMTok.from_pretrained(result.export_dir).model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k].to(before[k].dtype))}
    assert any(k.startswith("mask_encoder.") for k in changed)
    assert any(k.startswith("sam2.mask_decoder.transformer.") for k in changed)
    frozen = ("sam2.vision_encoder.", "sam2.prompt_encoder.", "sam2.mask_decoder.iou_prediction_head.",
              "sam2.mask_decoder.pred_obj_score_head.")
    assert not any(k.startswith(frozen) for k in changed)
    assert any(k.startswith("quantizer.") and "ema" in k for k in changed)  # EMA codebooks moved
    rows = _rows(tmp_path / "sam")
    assert {"ema_perplexity_l0", "batch_perplexity_l1", "commitment"} <= set(rows[1])


def test_config_errors():
    with pytest.raises(ValueError, match="family"):
        TrainConfig.from_dict({"family": "other"})
    with pytest.raises(ValueError, match="real masks"):
        HiMTokTrainConfig(synthetic_fraction=0.5)
    with pytest.raises(ValueError, match="SAMTok training needs"):
        SAMTokTrainConfig()
    with pytest.raises(ValueError, match="tokenizer"):
        TrainConfig(tokenizer="himtok")
    with pytest.raises(ValueError, match="unknown himtok training config keys"):
        TrainConfig.from_dict({"family": "himtok", "synthetic_fraction": 1.0, "speed": 3})


def test_an_older_flat_config_with_both_families_settings_reads_back():
    """Runs saved before the split stored one flat config holding both families' settings."""
    legacy = {"family": "himtok", "model": "masktok-s", "synthetic_fraction": 1.0, "masks_per_image": 8,
              "dead_code_threshold": 1.0, "batch_size": 16, "steps": 5}
    config = TrainConfig.from_dict(legacy)
    assert config.tokenizer == HiMTokTrainConfig(synthetic_fraction=1.0, batch_size=16) and config.steps == 5


@pytest.mark.slow
def test_non_finite_loss_stops_with_its_step_and_no_later_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    from masktok.train.tokenizer.objectives import HiMTokObjective

    real_forward = HiMTokObjective.forward
    calls = {"n": 0}

    def forward(self, masks, generator=None):
        loss, metrics = real_forward(self, masks, generator)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 4 else loss), metrics  # step index 3

    monkeypatch.setattr(HiMTokObjective, "forward", forward)
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="at step 3"):
        train_tokenizer(_config(tiny_model_dir, run, steps=8, checkpoint_every=2, log_every=4))
    saved = sorted(int(p.name.split("-")[1].split(".")[0]) for p in (run / "checkpoints").glob("step-*"))
    assert saved == [2]
    assert sorted(_rows(run)) == []


def test_the_cli_takes_its_options_and_defaults_from_the_config_dataclasses(monkeypatch):
    from typer.testing import CliRunner

    from masktok.cli import app
    from masktok.train.tokenizer import trainer
    from masktok.train.tokenizer.trainer import TrainResult

    seen: list[TrainConfig] = []
    monkeypatch.setattr(trainer, "train_tokenizer",
                        lambda config, resume=False: seen.append(config) or TrainResult(step=0, wall_time_s=0.0))
    runner = CliRunner()
    ok = runner.invoke(app, ["train", "tokenizer", "--synthetic-fraction", "1", "--steps", "7",
                             "--val-prefix-lengths", "1,2", "--packed", "a.npz", "--packed", "b.npz", "--no-bf16"])
    assert ok.exit_code == 0, ok.output
    assert seen == [TrainConfig(tokenizer=HiMTokTrainConfig(synthetic_fraction=1.0, val_prefix_lengths=(1, 2),
                                                             packed=("a.npz", "b.npz")), steps=7, bf16=False)]
    wrong = runner.invoke(app, ["train", "tokenizer", "--family", "samtok", "--data", "coco:x.json",
                                "--packed", "a.npz"])
    assert wrong.exit_code == 2 and "not a setting of SAMTok training" in wrong.output and len(seen) == 1
    bad = runner.invoke(app, ["train", "tokenizer", "--synthetic-fraction", "0.5"])
    assert bad.exit_code == 2 and "real masks" in bad.output
    shown = runner.invoke(app, ["train", "tokenizer", "--help"], env={"COLUMNS": "250"}).output
    assert "(default: HiMTok: 'masktok-s'; SAMTok: 'large')" in shown
    assert f"(default: {TrainConfig.__dataclass_fields__['lr'].default!r})" in shown
