"""``masktok train …``: training commands. ``masktok train tokenizer`` trains HiMTok or SAMTok; its
options are made from the training config dataclasses (:mod:`masktok.train.tokenizer.config`)."""

from __future__ import annotations

import inspect

import typer
from rich.console import Console
from rich.table import Table

from masktok.cli.dataclass_options import DataclassOptions, with_options
from masktok.train.tokenizer.config import FAMILY_CONFIGS, HiMTokTrainConfig, SAMTokTrainConfig, TrainConfig

app = typer.Typer(help="Train tokenizers and models.", no_args_is_help=True)


_FAMILY_NAMES = {HiMTokTrainConfig: "HiMTok", SAMTokTrainConfig: "SAMTok"}
_OPTIONS = DataclassOptions(HiMTokTrainConfig, SAMTokTrainConfig, TrainConfig, skip=frozenset({"tokenizer"}),
                            names=_FAMILY_NAMES, alternatives=tuple(_FAMILY_NAMES))


def tokenizer(family: str, resume: bool, **values) -> None:
    """Train a mask tokenizer (single process, or one process per GPU under torchrun).

    Every option's default is the training config's (masktok.train.tokenizer.config)."""
    import os

    from masktok.cli.tokenizer_option import check_device
    from masktok.train.tokenizer.trainer import train_tokenizer

    if family not in FAMILY_CONFIGS:
        raise typer.BadParameter(f"expected one of {', '.join(FAMILY_CONFIGS)}, got {family!r}", param_hint="--family")
    family_cls = FAMILY_CONFIGS[family]
    given = _OPTIONS.given(values)
    if given.get("device", "auto") != "auto":
        check_device(given["device"])
    own, run = _OPTIONS.split(given, family_cls), _OPTIONS.split(given, TrainConfig)
    foreign = sorted(set(given) - set(own) - set(run))
    if foreign:
        flags = ", ".join(_OPTIONS.flag(name) for name in foreign)
        raise typer.BadParameter(f"{flags}: not a setting of {_FAMILY_NAMES[family_cls]} training",
                                 param_hint="--family")
    try:
        config = TrainConfig(tokenizer=family_cls(**own), **run)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    result = train_tokenizer(config, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    console = Console()
    table = Table(title=f"{family} training: step {result.step}/{config.steps} in {result.wall_time_s:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in {**result.final_metrics, **result.validation}.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if result.export_dir:
        console.print(f"tokenizer saved to {result.export_dir}")
    elif result.stopped_early:
        console.print(f"stopped at step {result.step}; continue with the same command plus --resume")


with_options(tokenizer, _OPTIONS,
             inspect.Parameter("family", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                               default=typer.Option("himtok", help="Tokenizer family: " + " or ".join(FAMILY_CONFIGS))),
             inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                               default=typer.Option(False, "--resume",
                                                    help="Continue from the newest checkpoint in RUN_DIR.")))
app.command("tokenizer")(tokenizer)


from masktok.cli.recipes import register as _register_recipes  # noqa: E402  (the VLM recipes on TRL)
_register_recipes(app)


@app.command("export")
def export(
    run_dir: str = typer.Argument(..., help="A training run folder (with checkpoints/)."),
    out: str = typer.Argument(..., help="Output tokenizer folder."),
    dtype: str = typer.Option("float32", help="float32, float16 or bfloat16."),
) -> None:
    """Export a run's newest checkpoint as a tokenizer folder."""
    from masktok.train.tokenizer.trainer import export_checkpoint

    path = export_checkpoint(run_dir, out, dtype)
    Console().print(f"tokenizer saved to {path}")
