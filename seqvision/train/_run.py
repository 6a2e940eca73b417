"""The run directory's side of training: folder and config, ``train.log``, ``metrics.csv``, TensorBoard, the
training-curve plot, ``errors.json``. Only the main rank calls these."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import logging
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from ..config import Config, save_config
from ..data import ErrorReport
from ..errors import ConfigError
from ..report import plot_training_curves

__all__ = ["check_tensorboard", "prepare_run_dir", "log_to_file", "RunLog", "plot_curves", "write_errors",
           "write_run_metrics"]

log = logging.getLogger("seqvision.train")


def check_tensorboard(cfg: Config) -> None:
    """Raise a ConfigError naming ``train.tensorboard`` when it is on and the optional package is missing."""
    if cfg.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard", "needs the 'tensorboard' package, which is not installed: "
                          "pip install 'seqvision[tensorboard]' or set train.tensorboard=false")


def prepare_run_dir(cfg: Config, out: Path) -> None:
    """Create ``out``, drop temporary files a killed save left (the ``.pt`` files are intact), write
    ``config.yaml``."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.pt.*.tmp"):
        stale.unlink(missing_ok=True)
    save_config(cfg, out / "config.yaml")


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Copy the ``seqvision.train`` log (INFO and up) to ``path`` for the duration of the block."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


class RunLog:
    """Per-epoch output: a line in the log (and on the console under tqdm), ``metrics.csv`` rewritten with every
    row, and TensorBoard scalars when ``tensorboard``."""

    def __init__(self, out: Path, *, tensorboard: bool = False, console: bool = True):
        self.out = out
        self.console = console
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: an optional extra, checked up front

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def epoch(self, row: dict, history: list[dict]) -> None:
        keys: list[str] = []
        for r in history:
            keys.extend(k for k in r if k not in keys)
        with open(self.out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
        summary = "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        log.info("%s", summary)
        if self.console:
            tqdm.write(summary)
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_curves(history: list[dict], path: Path, *, title: str) -> None:
    """``training_curves.png`` from the history (a failed plot is a warning: it never fails a finished run)."""
    if not history:
        return
    try:
        plot_training_curves([{k: v for k, v in r.items() if k not in ("lr", "time_s")} for r in history], path,
                             title=title)
    except Exception as exc:  # noqa: BLE001 - a plot must never fail a finished run
        log.warning("could not plot the training curves: %s", exc)


def write_errors(errors: list[tuple[str, str]], path: Path) -> None:
    """``errors.json`` of the videos that failed to load (nothing when none did)."""
    if not errors:
        return
    report = ErrorReport()
    report.add(errors)
    report.write(path)
    log.warning("%d video(s) failed to load; see %s", len(errors), path)


def write_run_metrics(path: Path, *, metric: str, best_metric, best_epoch: int, history: list[dict],
                      baseline: dict) -> None:
    """``metrics.json`` of the run: the selection metric, its best value and epoch, every epoch's row and the
    baseline's metrics (see ``seqvision.train._hooks.baseline_metrics``)."""
    summary = {"metric": metric, "best_metric": best_metric, "best_epoch": best_epoch, "baseline": baseline,
               "history": history}
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
