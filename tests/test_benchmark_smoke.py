"""The throughput benchmarks run end to end on the CPU with tiny models (their GPU numbers are in
BENCHMARKS.md; here only that the scripts work and report what they say)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def _run(script: str, *args: str, out) -> dict:
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), "--device", "cpu", "--size", "test",
                           *args, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_dataset_tokenization_benchmark(tmp_path):
    result = _run("tokenize_dataset_throughput.py", "--images", "10", "--masks-per-image", "3", "--workers", "1",
                  "--images-per-shard", "4", "--steady-after", "4", "--reference-images", "1",
                  out=tmp_path / "tds.json")
    assert "errors" not in result, result.get("errors")
    pipeline = result["pipeline_eager"]
    assert pipeline["images"] == 10 and pipeline["masks"] == result["tokenizer_alone_eager"]["masks"] > 10
    assert result["end_to_end_eager"]["masks"] == pipeline["masks"]
    assert result["per_mask_reencoding"]["codes_equal_fraction"] == 1.0


@pytest.mark.slow
def test_encode_breakdown_benchmark(tmp_path):
    result = _run("samtok_encode_breakdown.py", "--images-per-batch", "2", "--masks-per-image", "2",
                  "--height", "40", "--width", "52", "--repeats", "1", "--no-compile", out=tmp_path / "b.json")
    stages = {row["stage"] for row in result["rows"]}
    assert {"device: mask encoder transformer", "device: whole mask side (eager)", "host: pin_memory copy"} <= stages
    assert all(row["ms"] >= 0 for row in result["rows"])


@pytest.mark.slow
def test_samtok_throughput_benchmark(tmp_path):
    result = _run("samtok_throughput.py", "--images", "4", "--masks-per-image", "1", "2", "--reference-images", "1",
                  "--latency-repeats", "2", out=tmp_path / "s.json")
    assert "errors" not in result, result.get("errors")
    assert {"encoder", "checks", "throughput", "latency_ms"} <= set(result)


@pytest.mark.slow
def test_himtok_stage2_benchmark(tmp_path, test_data):
    out = tmp_path / "stage2"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "himtok_stage2_gpu.py"), "--out", str(out),
                           "--scale", "tiny", "--tokenizer", "tiny", "--steps", "2", "--samples", "4",
                           "--batch-size", "2", "--warmup-steps", "1", "--data", str(test_data / "coco_val2014_100")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "himtok_stage2.json").read_text())
    assert result["steps"] == 2 and result["conversations"] == 4 and len(result["curve"]) == 2
    assert result["masks_per_second_steady"] > 0 and result["peak_process_rss_gib"] > 0
    assert 0 <= result["eval_mask_iou_before"] <= 1 and (out / "himtok_stage2_curve.png").stat().st_size > 0
    assert (out / "run" / "final" / "mask_tokenizer" / "model.safetensors").is_file()


@pytest.mark.slow
def test_multi_gpu_scaling_benchmark(tmp_path):
    """Two gloo processes on the CPU: same rows as one, a killed rank resumed, DDP loss curves."""
    out = tmp_path / "scaling.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "multi_gpu_scaling.py"),
                           "--device", "cpu", "--nproc", "1,2", "--size", "test", "--images", "12",
                           "--masks-per-image", "2", "--images-per-shard", "2", "--workers", "0",
                           "--train-steps", "4", "--samtok-train-size", "test", "--train-global-batch", "8",
                           "--train-global-images", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert all(run["rows_equal_single_gpu"] for run in result["tokenize"].values())
    resume = result["kill_and_resume"]
    assert resume["first_run_exit_code"] != 0 and resume["output_equals_single_gpu"]
    assert resume["resume_kept"] == resume["shards_finished_before_resume"] and resume["resume_wrote"] > 0
    assert set(result["train"]) == {"himtok", "samtok"}
def test_himtok_decode_paths_benchmark(tmp_path):
    out = tmp_path / "paths.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "himtok_decode_paths.py"), "--device", "cpu",
                           "--config", "masktok-box-v2", "--masks", "6", "--encode-masks", "4", "--unique-masks", "3",
                           "--previous-masks", "3", "--repeats", "1", "--height", "40", "--width", "56", "--memory",
                           "--memory-masks", "5", "--memory-size", "300", "400", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    paths = {row["path"] for row in result["rows"]}
    assert {"model decode", "decode → device", "decode → host", "decode → RLE", "previous decode",
            "encode from host"} <= paths
    assert all(row["masks_per_s"] > 0 for row in result["rows"])
    assert result["memory"]["masks"] == 5 and result["memory"]["peak_rss_after_mib"] >= result["memory"]["peak_rss_before_mib"]
    differing = re.search(r"pixels differing from the previous full-frame paste: (\d+) of (\d+)", done.stdout)
    assert differing is not None and int(differing.group(1)) <= int(differing.group(2)) // 10_000
