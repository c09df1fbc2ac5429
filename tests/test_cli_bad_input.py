"""Every ``masktok`` command, fed bad input: exit code 2, exactly one ``error:`` line naming the
input and the problem, no Python traceback.

The table runs through the root command group (what the console script runs), in process; a few
cases also run through the installed ``masktok`` script in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from masktok.cli import app
from masktok.cli.errors import BAD_INPUT_EXIT_CODE, DEBUG_ENV
from masktok.default_model import default_tokenizer_path
from masktok.masks import mask_to_polygons, masks_to_rles
from masktok.output_lock import lock_path
from masktok.tokenizers.samtok import SAMTok, tiny_test_config

H, W = 40, 56


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Good and bad inputs on disk, by name (used as ``{name}`` in the table's arguments)."""
    root = tmp_path_factory.mktemp("bad_input")
    f: dict[str, Path] = {"root": root}
    SAMTok.from_config(tiny_test_config(), seed=0).save_pretrained(root / "samtok")
    f["samtok"] = root / "samtok"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "image.png")
    f["image"] = root / "image.png"
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 5:20, 5:30] = True
    masks[1, 25:39, 30:55] = True
    (root / "masks.json").write_text(json.dumps(masks_to_rles(masks)))
    f["masks"] = root / "masks.json"
    (root / "small.json").write_text(json.dumps(masks_to_rles(np.ones((1, 50, 50), dtype=bool))))
    f["small_masks"] = root / "small.json"
    (root / "polygons.json").write_text(json.dumps([{"segmentation": mask_to_polygons(masks[0])}]))
    f["polygons"] = root / "polygons.json"
    (root / "three.rle.json").write_text(json.dumps(masks_to_rles(np.concatenate([masks, masks[:1]]))))
    f["three_rles"] = root / "three.rle.json"
    (root / "object.json").write_text(json.dumps({"masks": {"not": "a list"}}))
    f["not_a_list"] = root / "object.json"
    (root / "bad_rle.json").write_text(json.dumps([{"size": [H, W], "counts": 12}]))
    f["bad_rle"] = root / "bad_rle.json"
    (root / "plain.json").write_text(json.dumps([{"a": 1}]))
    f["plain_json"] = root / "plain.json"
    (root / "broken.json").write_text('[{"size": [4, 4], "counts"')
    f["broken_json"] = root / "broken.json"
    (root / "not_an_image.png").write_bytes(b"this is text, not a PNG\n" * 4)
    f["not_an_image"] = root / "not_an_image.png"
    (root / "a_file").write_text("x")
    f["a_file"] = root / "a_file"
    # Tokenizer folders with damaged files.
    for name, data in (("random_bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
                       ("truncated", (default_tokenizer_path() / "model.safetensors").read_bytes()[:5000])):
        folder = root / name
        folder.mkdir()
        shutil.copy(default_tokenizer_path() / "config.json", folder / "config.json")
        (folder / "model.safetensors").write_bytes(data)
        f[name] = folder
    (root / "samtok_damaged").mkdir()
    shutil.copy(root / "samtok" / "config.json", root / "samtok_damaged" / "config.json")
    (root / "samtok_damaged" / "model.safetensors").write_bytes(b"\x00" * 100)
    f["samtok_damaged"] = root / "samtok_damaged"
    for name, text in (("bad_config", "{not json"), ("unknown_type", '{"tokenizer_type": "fancy"}')):
        (root / name).mkdir()
        (root / name / "config.json").write_text(text)
        f[name] = root / name
    # A one-image COCO dataset.
    coco = {"images": [{"id": 1, "file_name": "image.png", "height": H, "width": W}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 375.0,
                             "bbox": [5, 5, 25, 15], "segmentation": mask_to_polygons(masks[0])}],
            "categories": [{"id": 1, "name": "thing"}]}
    (root / "coco.json").write_text(json.dumps(coco))
    f["coco"] = root / "coco.json"
    (root / "predictions.jsonl").write_text(json.dumps({"id": 1, "answer": "It is "
                                                        "<|mt_start|><|mt_3|><|mt_end|>."}) + "\n")
    f["predictions"] = root / "predictions.jsonl"
    (root / "referring.jsonl").write_text(json.dumps({"id": 1, "height": H, "width": W, "sentence": "a thing",
                                                      "masks": masks_to_rles(masks[:1])}) + "\n")
    f["referring"] = root / "referring.jsonl"
    Image.fromarray(np.full((10, 10), 255, dtype=np.uint8)).save(root / "small_mask.png")
    (root / "labels").mkdir()
    f["label_folder"] = root / "labels"
    (root / "locked").mkdir()
    lock_path(root / "locked", "rank0").write_text(json.dumps(
        {"host": os.uname().nodename, "pid": os.getpid(), "started": "2025-01-01T00:00:00Z",
         "command": "masktok tokenize-dataset (another run)", "token": "x", "process_start": None,
         "info": {"rank": 0, "world_size": 1}}))
    f["locked"] = root / "locked"
    (root / "empty_dir").mkdir()
    f["empty_dir"] = root / "empty_dir"
    f["missing"] = root / "does_not_exist"
    return f


MALFORMED = "a <|mt_start|><|mt_17|>"  # an unclosed span
SAMTOK_WORDS = "<|mt_start|><|mt_0001|><|mt_0017|><|mt_end|>"

# (case id, arguments with {file} placeholders, substrings the error line must hold: the input
# and the problem).
CASES: list[tuple[str, list[str], list[str]]] = [
    # root
    ("unknown-command", ["frobnicate"], ["frobnicate"]),
    ("version-extra-argument", ["version", "now"], ["unexpected extra argument", "now"]),
    # words
    ("words-unknown-command", ["words", "pars"], ["pars"]),
    ("words-parse-strict-malformed", ["words", "parse", MALFORMED], ["himtok", "unterminated"]),
    ("words-parse-unknown-vocabulary", ["words", "parse", "x", "-t", "bogus"], ["--tokenizer", "bogus"]),
    ("words-parse-bad-codebook", ["words", "parse", "x", "-t", "himtok", "--codebook-size", "0"],
     ["--codebook-size", "codebook_size"]),
    ("words-parse-unknown-option", ["words", "parse", "x", "--strict"], ["--strict"]),
    ("words-format-code-out-of-range", ["words", "format", "17", "5000"], ["5000", "outside"]),
    ("words-format-samtok-code-out-of-range", ["words", "format", "-t", "samtok", "11", "256"], ["256", "outside"]),
    ("words-format-not-a-number", ["words", "format", "17", "x"], ["codes", "integer"]),
    ("words-format-no-codes", ["words", "format"], ["CODES"]),
    ("words-format-fixed-vocabulary", ["words", "format", "1", "--codebook-size", "600"],
     ["--tokenizer", "fixed"]),
    ("words-format-missing-tokenizer-folder", ["words", "format", "1", "-t", "{missing}"], ["--tokenizer", "does_not_exist"]),
    ("words-short-strict-malformed", ["words", "short", MALFORMED], ["himtok", "unterminated"]),
    # masks convert
    ("masks-missing-input", ["masks", "convert", "{missing}.png", "{root}/o.png"], ["does_not_exist.png", "no such file"]),
    ("masks-not-an-image", ["masks", "convert", "{not_an_image}", "{root}/o.rle.json"], ["not_an_image.png", "not a readable image"]),
    ("masks-broken-json", ["masks", "convert", "{broken_json}", "{root}/o.png", "--from", "rle"], ["broken.json", "not valid JSON"]),
    ("masks-unknown-from", ["masks", "convert", "{masks}", "{root}/o.png", "--from", "svg"], ["--from", "svg"]),
    ("masks-unknown-output-suffix", ["masks", "convert", "{masks}", "{root}/o.txt"], ["o.txt", "output format"]),
    ("masks-bad-png-kind", ["masks", "convert", "{masks}", "{root}/o.png", "--png-kind", "jpeg"], ["--png-kind", "jpeg"]),
    ("masks-bad-holes", ["masks", "convert", "{masks}", "{root}/o.png", "--holes", "keep"], ["--holes", "keep"]),
    ("masks-json-neither", ["masks", "convert", "{plain_json}", "{root}/o.png"], ["plain.json", "neither RLE"]),
    ("masks-three-into-binary", ["masks", "convert", "{three_rles}", "{root}/o.png", "--png-kind", "binary"],
     ["3 masks", "binary PNG"]),
    ("masks-bad-rle-counts", ["masks", "convert", "{bad_rle}", "{root}/o.png", "--from", "rle"], ["bad_rle.json", "counts"]),
    # encode (default tokenizer: the shipped HiMTok)
    ("encode-no-masks-option", ["encode"], ["--masks"]),
    ("encode-missing-masks-file", ["encode", "-m", "{missing}.json"], ["--masks", "does_not_exist.json"]),
    ("encode-broken-masks-json", ["encode", "-m", "{broken_json}"], ["--masks", "broken.json", "not valid JSON"]),
    ("encode-masks-not-a-list", ["encode", "-m", "{not_a_list}"], ["--masks", "object.json", "list"]),
    ("encode-bad-rle", ["encode", "-m", "{bad_rle}"], ["--masks", "bad_rle.json", "counts"]),
    ("encode-polygons-without-image", ["encode", "-m", "{polygons}"], ["polygons.json", "--image"]),
    ("encode-mask-size-not-image-size", ["encode", "-i", "{image}", "-m", "{small_masks}"],
     ["small.json", "50x50", "40x56"]),
    ("encode-missing-image-himtok", ["encode", "-i", "{missing}.jpg", "-m", "{masks}"], ["--image", "does_not_exist.jpg"]),
    ("encode-image-not-an-image", ["encode", "-i", "{not_an_image}", "-m", "{masks}"], ["--image", "not a readable image"]),
    ("encode-cuda-without-gpu", ["encode", "-m", "{masks}", "--device", "cuda"], ["--device", "cuda", "no CUDA GPU"]),
    ("encode-unknown-device", ["encode", "-m", "{masks}", "--device", "gpu0"], ["--device", "gpu0"]),
    ("encode-unknown-dtype", ["encode", "-m", "{masks}", "--dtype", "int8"], ["--dtype", "int8"]),
    ("encode-missing-tokenizer", ["encode", "-t", "{missing}", "-m", "{masks}"], ["--tokenizer", "does_not_exist"]),
    ("encode-random-bytes-safetensors", ["encode", "-t", "{random_bytes}", "-m", "{masks}"],
     ["random_bytes/model.safetensors", "not a valid safetensors file"]),
    ("encode-truncated-safetensors", ["encode", "-t", "{truncated}", "-m", "{masks}"],
     ["truncated/model.safetensors", "not a valid safetensors file"]),
    ("encode-damaged-samtok-safetensors", ["encode", "-t", "{samtok_damaged}", "-i", "{image}", "-m", "{masks}"],
     ["samtok_damaged/model.safetensors", "not a valid safetensors file"]),
    ("encode-tokenizer-bad-config", ["encode", "-t", "{bad_config}", "-m", "{masks}"], ["bad_config/config.json", "JSON"]),
    ("encode-tokenizer-unknown-type", ["encode", "-t", "{unknown_type}", "-m", "{masks}"], ["unknown_type", "fancy"]),
    ("encode-tokenizer-empty-folder", ["encode", "-t", "{empty_dir}", "-m", "{masks}"], ["empty_dir", "cannot tell"]),
    ("encode-samtok-without-image", ["encode", "-t", "{samtok}", "-m", "{masks}"], ["--image", "samtok"]),
    # decode
    ("decode-no-words", ["decode"], ["--words"]),
    ("decode-strict-malformed", ["decode", "-w", MALFORMED], ["himtok", "unterminated"]),
    ("decode-samtok-words-for-himtok", ["decode", "-w", SAMTOK_WORDS], ["himtok", "malformed"]),
    ("decode-size-not-hxw", ["decode", "-w", "x", "--size", "10"], ["--size", "10"]),
    ("decode-size-zero", ["decode", "-w", "x", "--size", "0x5"], ["--size", "0x5"]),
    ("decode-overlay-without-image", ["decode", "-w", "x", "--overlay", "{root}/o.png"], ["--overlay", "--image"]),
    ("decode-size-differs-from-overlay-image", ["decode", "-w", "x", "-i", "{image}", "--overlay", "{root}/o.png",
                                                "--size", "64x64"], ["--size", "64x64", "40x56"]),
    ("decode-threshold-out-of-range-himtok", ["decode", "-w", "x", "--threshold", "5"], ["threshold", "(0, 1)"]),
    ("decode-threshold-not-a-number", ["decode", "-w", "x", "--threshold", "half"], ["--threshold", "a valid number"]),
    ("decode-missing-image-himtok", ["decode", "-w", "x", "-i", "{missing}.jpg"], ["--image", "does_not_exist.jpg"]),
    ("decode-samtok-without-image", ["decode", "-t", "{samtok}", "-w", SAMTOK_WORDS], ["--image", "samtok"]),
    ("decode-cuda-without-gpu", ["decode", "-w", "x", "--device", "cuda:0"], ["--device", "cuda:0", "no CUDA GPU"]),
    ("decode-random-bytes-safetensors", ["decode", "-t", "{random_bytes}", "-w", "x"], ["not a valid safetensors file"]),
    # roundtrip
    ("roundtrip-prefix-zero-negative", ["roundtrip", "-o", "{root}/rt", "--prefix-lengths", "0,-1"],
     ["--prefix-lengths", "[0, -1]"]),
    ("roundtrip-prefix-too-long", ["roundtrip", "-o", "{root}/rt", "--prefix-lengths", "4,33"], ["--prefix-lengths", "33"]),
    ("roundtrip-prefix-not-integers", ["roundtrip", "-o", "{root}/rt", "--prefix-lengths", "a,b"], ["--prefix-lengths", "a,b"]),
    ("roundtrip-prefix-too-long-samtok", ["roundtrip", "-t", "{samtok}", "-o", "{root}/rt", "--prefix-lengths", "1,3"],
     ["--prefix-lengths", "1..2"]),
    ("roundtrip-out-is-a-file", ["roundtrip", "-o", "{a_file}"], ["--out", "a_file"]),
    ("roundtrip-missing-tokenizer", ["roundtrip", "-t", "{missing}", "-o", "{root}/rt"], ["--tokenizer", "does_not_exist"]),
    ("roundtrip-cuda-without-gpu", ["roundtrip", "--device", "cuda", "-o", "{root}/rt"], ["--device", "no CUDA GPU"]),
    # tokenize-dataset
    ("tokenize-unknown-kind", ["tokenize-dataset", "lvis", "--out", "{root}/td"], ["kind", "lvis"]),
    ("tokenize-coco-without-annotations", ["tokenize-dataset", "coco", "--out", "{root}/td"], ["coco", "annotations"]),
    ("tokenize-missing-annotations", ["tokenize-dataset", "coco", "--annotations", "{missing}.json", "--out", "{root}/td"],
     ["annotations", "does_not_exist.json"]),
    ("tokenize-broken-annotations", ["tokenize-dataset", "coco", "--annotations", "{broken_json}", "--out", "{root}/td"],
     ["broken.json"]),
    ("tokenize-samtok-without-images", ["tokenize-dataset", "coco", "--tokenizer", "{samtok}",
                                        "--annotations", "{coco}", "--out", "{root}/td"], ["--images", "samtok"]),
    ("tokenize-zero-images-per-shard", ["tokenize-dataset", "coco", "--annotations", "{coco}", "--out", "{root}/td",
                                        "--images-per-shard", "0"], ["images_per_shard", "0"]),
    ("tokenize-bad-orphan-policy", ["tokenize-dataset", "yolo", "--images", "{root}", "--labels", "{label_folder}",
                                    "--out", "{root}/td", "--orphan-labels", "maybe"], ["orphan", "maybe"]),
    ("tokenize-output-held-by-a-live-run", ["tokenize-dataset", "coco", "--annotations", "{coco}", "--out", "{locked}"],
     ["locked", "another run", "pid"]),
    ("tokenize-cuda-without-gpu", ["tokenize-dataset", "coco", "--annotations", "{coco}", "--out", "{root}/td",
                                   "--device", "cuda"], ["--device", "no CUDA GPU"]),
    # build-sft
    ("build-sft-unknown-task", ["build-sft", "captions", "--out", "{root}/sft"], ["TASK", "captions"]),
    ("build-sft-bad-formats", ["build-sft", "res", "--out", "{root}/sft", "--formats", "llava,csv"], ["--formats", "csv"]),
    ("build-sft-res-without-annotations", ["build-sft", "res", "--out", "{root}/sft"], ["res", "--annotations"]),
    ("build-sft-instance-without-images", ["build-sft", "instance", "--annotations", "{coco}", "--out", "{root}/sft"],
     ["instance", "--images"]),
    ("build-sft-missing-text-tokenizer", ["build-sft", "res", "--out", "{root}/sft", "--text-tokenizer", "{missing}"],
     ["--text-tokenizer", "does_not_exist"]),
    ("build-sft-missing-tokenizer", ["build-sft", "res", "--out", "{root}/sft", "--tokenizer", "{missing}"],
     ["--tokenizer", "does_not_exist"]),
    # eval
    ("eval-missing-predictions", ["eval", "res", "-p", "{missing}.jsonl", "-a", "{referring}", "-o", "{root}/ev"],
     ["--predictions", "does_not_exist.jsonl"]),
    ("eval-text-answers-without-tokenizer", ["eval", "res", "-p", "{predictions}", "-a", "{referring}", "-o", "{root}/ev"],
     ["mask words", "--tokenizer"]),
    ("eval-missing-tokenizer", ["eval", "res", "-p", "{predictions}", "-a", "{referring}", "-o", "{root}/ev", "-t",
                                "{missing}"], ["--tokenizer", "does_not_exist"]),
    ("eval-cuda-without-gpu", ["eval", "res", "-p", "{predictions}", "-a", "{referring}", "-o", "{root}/ev",
                               "--device", "cuda"], ["--device", "no CUDA GPU"]),
    ("eval-rec-bad-input-size", ["eval", "rec", "-p", "{predictions}", "-a", "{referring}", "-o", "{root}/ev",
                                 "--input-size", "big"], ["--input-size", "big"]),
    ("eval-recon-bad-prefix-lengths", ["eval", "recon", "-a", "{coco}", "-o", "{root}/ev", "--prefix-lengths", "0,4"],
     ["--prefix-lengths", "0,4"]),
    ("eval-ovseg-label-folder-without-classes", ["eval", "ovseg", "-p", "{predictions}", "-a", "{label_folder}",
                                                 "-o", "{root}/ev"], ["--annotations", "--classes"]),
    # train
    ("train-tokenizer-unknown-family", ["train", "tokenizer", "--family", "vqgan", "--run-dir", "{root}/tr"],
     ["family", "vqgan"]),
    ("train-tokenizer-bad-val-lengths", ["train", "tokenizer", "--val-prefix-lengths", "1,x"],
     ["--val-prefix-lengths", "1,x"]),
    ("train-tokenizer-cuda-without-gpu", ["train", "tokenizer", "--device", "cuda"], ["--device", "no CUDA GPU"]),
    ("train-tokenizer-himtok-without-data", ["train", "tokenizer", "--run-dir", "{root}/tr"], ["HiMTok", "data"]),
    ("train-export-no-checkpoint", ["train", "export", "{empty_dir}", "{root}/exported"], ["empty_dir", "no checkpoint"]),
    ("train-sft-missing-model", ["train", "sft", "--model", "{missing}", "--data", "{predictions}", "--output-dir",
                                 "{root}/sft_run"], ["--model", "does_not_exist"]),
    ("train-grpo-missing-data", ["train", "grpo", "--model", "{empty_dir}", "--data", "{missing}.jsonl",
                                 "--output-dir", "{root}/grpo_run"], ["--data", "does_not_exist.jsonl"]),
    # vlm
    ("vlm-add-vocab-no-config", ["vlm", "add-vocab", "{empty_dir}", "{root}/vlm_out"], ["empty_dir", "config.json"]),
    ("vlm-add-vocab-unknown-vocab", ["vlm", "add-vocab", "{empty_dir}", "{root}/vlm_out", "--vocab", "bpe"],
     ["--vocab", "bpe"]),
    # chat
    ("chat-missing-model", ["chat", "--model", "{missing}", "--image", "{image}", "--prompt", "hi"],
     ["--model", "does_not_exist"]),
    ("chat-image-not-an-image", ["chat", "--model", "{empty_dir}", "--image", "{not_an_image}", "--prompt", "hi"],
     ["--image", "not a readable image"]),
    ("chat-cuda-without-gpu", ["chat", "--model", "{empty_dir}", "--image", "{image}", "--prompt", "hi", "--device",
                               "cuda"], ["--device", "no CUDA GPU"]),
    ("chat-mask-size-not-image-size", ["chat", "--model", "{empty_dir}", "--image", "{image}", "--prompt", "<mask>",
                                       "--mask", "{root}/small_mask.png"], ["--mask", "small_mask.png", "40x56"]),
    # serve
    ("serve-folder-without-config", ["serve", "{empty_dir}", "--dry-run"], ["empty_dir", "config.json"]),
    ("serve-port-out-of-range", ["serve", "{empty_dir}", "--dry-run", "--port", "70000"], ["port", "70000"]),
    # demo
    ("demo-missing-tokenizer", ["demo", "--tokenizer", "{missing}"], ["--tokenizer", "does_not_exist"]),
    ("demo-port-zero", ["demo", "--port", "0"], ["--port", "greater than or equal to 1"]),
    ("demo-cuda-without-gpu", ["demo", "--device", "cuda"], ["--device", "no CUDA GPU"]),
]


def _arguments(template: list[str], files: dict[str, Path]) -> list[str]:
    return [part.format(**{k: str(v) for k, v in files.items()}) for part in template]


@pytest.fixture
def no_gpu(monkeypatch):
    """The CUDA cases must fail the same way on a machine that has a GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_the_table_covers_every_command():
    assert len(CASES) >= 60 and len({case_id for case_id, _, _ in CASES}) == len(CASES)
    commands = {args[0] if args[0] not in ("words", "masks", "eval", "train", "vlm") else " ".join(args[:2])
                for _, args, _ in CASES}
    expected = {"encode", "decode", "roundtrip", "tokenize-dataset", "build-sft", "chat", "demo", "version", "serve",
                "words parse", "words format", "words short", "masks convert", "vlm add-vocab",
                "train tokenizer", "train export", "train sft", "train grpo",
                *(f"eval {task}" for task in ("res", "rec", "recon", "ovseg"))}
    assert expected <= commands


@pytest.mark.parametrize("case_id,template,expected", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line(case_id, template, expected, files, no_gpu):
    result = CliRunner().invoke(app, _arguments(template, files))
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == BAD_INPUT_EXIT_CODE, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text.lower() in errors[0].lower(), (text, errors[0])


def test_the_output_lock_of_the_table_was_not_taken_over(files):
    """The live lock of the table's 'another run' is still there, unchanged."""
    holder = json.loads(lock_path(files["locked"], "rank0").read_text())
    assert holder["pid"] == os.getpid() and holder["token"] == "x"
    assert not list(files["locked"].glob("*.parquet"))


def test_missing_pyarrow_fails_before_any_work(files, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    result = CliRunner().invoke(app, ["tokenize-dataset", "coco", "--annotations", str(files["coco"]),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "Traceback" not in result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "pyarrow" in line and "masktok[train]" in line
    assert not (tmp_path / "out").exists()  # nothing was started


def test_debug_shows_the_traceback(files):
    result = CliRunner().invoke(app, ["--debug", "encode", "-m", str(files["missing"])])
    assert result.exit_code == BAD_INPUT_EXIT_CODE
    assert "Traceback" in result.stderr and result.stderr.rstrip().splitlines()[-1].startswith("error:")


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("masktok")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from masktok.cli import main; main()"]


@pytest.mark.parametrize("args,expected", [
    (["decode", "-w", "<|mt_start|><|mt_3|><|mt_end|>", "--size", "10"], "--size"),
    (["encode", "-m", "{missing}"], "does_not_exist"),
    (["words", "parse", MALFORMED], "unterminated"),
])
def test_the_console_script_prints_one_line(args, expected, files):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    env.pop(DEBUG_ENV, None)
    run = subprocess.run([*_console_script(), *_arguments(args, files)], capture_output=True, text=True, env=env)
    assert run.returncode == BAD_INPUT_EXIT_CODE, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], run.stderr



def test_a_missing_optional_package_is_bad_input_not_a_crash(monkeypatch):
    """A command whose extra is not installed names the package (here: gradio for the demo)."""
    monkeypatch.setitem(sys.modules, "gradio", None)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "Traceback" not in result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "gradio" in line and "masktok[demo]" in line
