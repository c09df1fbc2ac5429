"""Training logs: a CSV file (always) and TensorBoard event files (optional, ``tensorboard`` package).

    log = MetricsLogger(run_dir, tensorboard=True)
    log.log(step, {"loss": 0.3, "lr": 1e-4})
    log.close()

The CSV (``metrics.csv``) has one row per logged step; columns are the union of keys seen so far
(a new key rewrites the header once, so the file stays a plain rectangular CSV). Appending to an
existing file (a resumed run) keeps its rows up to the resumed step and drops later ones, so the
log of a resumed run reads as if it had never stopped.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path


class MetricsLogger:
    """CSV + TensorBoard scalar logger for rank 0."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = False, resume_step: int | None = None,
                 filename: str = "metrics.csv"):
        self.path = Path(run_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, float | int]] = []
        self.columns: list[str] = ["step"]
        if resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                for row in csv.DictReader(f):
                    if int(row["step"]) <= resume_step:
                        self.rows.append({k: (float(v) if k != "step" else int(v)) for k, v in row.items() if v != ""})
            for row in self.rows:
                self._add_columns(row)
        self._rewrite()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ValueError("TensorBoard logging needs the 'tensorboard' package "
                                 "(pip install tensorboard), or turn it off (--no-tensorboard)") from exc
            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                        purge_step=resume_step + 1 if resume_step is not None else None)

    def _add_columns(self, row: dict) -> bool:
        new = [k for k in row if k not in self.columns]
        self.columns.extend(new)
        return bool(new)

    def _rewrite(self) -> None:
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record scalar ``values`` at ``step`` (non-finite values are written as they are)."""
        row: dict[str, float | int] = {"step": int(step)}
        row.update({k: float(v) for k, v in values.items()})
        self.rows.append(row)
        if self._add_columns(row):
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                if math.isfinite(float(value)):
                    self.writer.add_scalar(key, float(value), int(step))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
