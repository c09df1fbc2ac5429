"""The ``vllm serve`` command for a masktok or official model folder, with the grammar plugin.

:func:`vllm_serve_command` reads the folder's tokenizer to learn its mask vocabulary, then
returns the command line and the environment the server needs: the plugin
(``--logits-processors``), the vocabulary (``MASKTOK_MASK_VOCABULARY``) and the served model name.
The folder is a Hugging Face model folder whose tokenizer holds the mask words; official SAMTok
VLM folders and folders saved by ``MaskChat.save_pretrained`` both are.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from masktok.serving.vllm_protocol import PLUGIN_CLASS
from masktok.serving.vocabulary_spec import (VOCABULARY_ENV, infer_vocabulary,
                                             parse_vocabulary_spec, vocabulary_spec)
from masktok.words import MaskVocabulary


@dataclass(frozen=True)
class ServeCommand:
    """A ready-to-run server command.

    Attributes:
        argv: the command line (``vllm serve MODEL_DIR …``).
        env: variables to add to the environment.
        vocabulary: the mask vocabulary the grammar enforces.
        served_model_name: the name clients ask for.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    vocabulary: MaskVocabulary | None = None
    served_model_name: str = ""

    def full_env(self) -> dict[str, str]:
        """The current environment plus :attr:`env`."""
        return {**os.environ, **self.env}


def model_vocabulary(model_dir: str | Path, spec: str | None = None) -> MaskVocabulary:
    """The mask vocabulary of the folder's tokenizer (or ``spec``, checked against it).

    Raises:
        ValueError: not a model folder, no tokenizer, or a tokenizer without the mask words.
    """
    from transformers import AutoTokenizer

    from masktok.mllm.vocabulary import mask_token_ids

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: not a Hugging Face model folder (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder}: cannot load its tokenizer ({error})") from None
    vocab = parse_vocabulary_spec(spec) if spec else infer_vocabulary(tokenizer.get_vocab())
    mask_token_ids(tokenizer, vocab)
    return vocab


def find_vllm(vllm: str | Path | None = None) -> str:
    """The ``vllm`` executable: ``vllm`` as given, else ``$MASKTOK_VLLM``, else on the PATH."""
    candidate = str(vllm) if vllm else os.environ.get("MASKTOK_VLLM", "vllm")
    found = shutil.which(candidate)
    if found is None:
        raise ValueError(f"vllm: {candidate!r} is not an executable; install vLLM (`pip install "
                         f"masktok[vllm]` on a GPU machine, scripts/install_vllm.sh for the CPU "
                         f"build) or pass --vllm PATH")
    return found


def vllm_serve_command(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                       served_model_name: str | None = None, mask_vocabulary: str | None = None,
                       grammar: bool = True, vllm: str | Path | None = None,
                       extra_args: list[str] | tuple[str, ...] = ()) -> ServeCommand:
    """The command that serves ``model_dir`` with vLLM and the mask-word grammar.

    Args:
        model_dir: the model folder.
        host, port: where the OpenAI-compatible API listens.
        served_model_name: the name clients ask for (default: the folder's name).
        mask_vocabulary: ``samtok:256x2`` / ``himtok:1024x32``; default: read off the tokenizer.
        grammar: load the grammar plugin (on for every request unless it opts out).
        vllm: the vllm executable (see :func:`find_vllm`).
        extra_args: more ``vllm serve`` arguments, passed through as given.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port: expected an int in 1..65535, got {port!r}")
    folder = Path(model_dir)
    vocab = model_vocabulary(folder, mask_vocabulary)
    name = served_model_name or folder.resolve().name
    argv = [find_vllm(vllm), "serve", str(folder), "--host", host, "--port", str(port),
            "--served-model-name", name]
    if grammar:
        argv += ["--logits-processors", PLUGIN_CLASS]
    argv += list(extra_args)
    return ServeCommand(argv=argv, env={VOCABULARY_ENV: vocabulary_spec(vocab)},
                        vocabulary=vocab, served_model_name=name)
