"""Evaluating a checkpoint on a split: metrics.json, predictions.jsonl, a confusion-matrix plot, a table."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import apply_overrides, config_to_dict
from ..data import ErrorReport, collate, load_index, worker_context
from ..errors import CheckpointError, DatasetError
from ..runtime import autocast, select_device
from ..tasks import DecodeOptions
from ._checkpoint import Checkpoint
from ._data import build_split_dataset
from ._inference import checkpoint_config, checkpoint_task, encoder_from_checkpoint, model_from_checkpoint

__all__ = ["evaluate", "format_table"]


def format_table(metrics: dict[str, Any], *, title: str = "") -> str:
    """A two-column text table of the scalar metrics."""
    rows = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    width = max([len(k) for k, _ in rows] + [6])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  value")
    lines.append("-" * (width + 10))
    for k, v in rows:
        lines.append(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return "\n".join(lines)


def _plain(value):
    """JSON-safe copy (tensors / numpy to lists and floats)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def evaluate(checkpoint_path: str | os.PathLike, *, split: str | None = None, cfg_overrides: list[str] | None = None,
             out: str | os.PathLike | None = None, progress: bool = True, meteor: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint on a split (the ``seqvision eval`` command).

    Args:
        checkpoint_path: ``best.pt`` / ``last.pt``.
        split: split name (default ``cfg.eval.split`` or ``cfg.data.test_split``).
        cfg_overrides: ``key=value`` strings applied to the checkpoint's config (e.g. ``eval.beam_size=5``,
            ``data.root=/elsewhere``).
        out: folder for the outputs (default ``<checkpoint folder>/eval_<split>``).
        progress: tqdm bar.
        meteor: captioning: also compute METEOR (Java; loading it takes a few seconds). The other caption
            metrics do not depend on it.

    Returns:
        ``{"metrics": dict, "table": str, "split": str, "num_videos": int, "errors": [(path, reason)],
        "files": {"metrics": path, "predictions": path, "confusion": path | None}}``. The metrics are the task's
        full set (:meth:`seqvision.tasks.Task.metrics`): ``classification_metrics`` (``accuracy``, ``top1``,
        ...), ``frame_metrics``, or ``caption_scores`` (beam search with ``cfg.eval.beam_size``).
    """
    path = Path(checkpoint_path)
    ckpt = Checkpoint.load(path)
    cfg = checkpoint_config(ckpt, path=path, overrides=apply_overrides(copy.deepcopy(ckpt.config), cfg_overrides))
    split = split or cfg.eval.split or cfg.data.test_split
    out_dir = Path(out) if out else path.parent / f"eval_{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    device = select_device(cfg.train.device, key="train.device")
    task = checkpoint_task(ckpt, path=path)
    model = model_from_checkpoint(ckpt, cfg, task, path=path).to(device).eval()
    encoder = encoder_from_checkpoint(ckpt, cfg, path=path).to(device).eval() if cfg.train.input == "video" else None

    index = load_index(cfg.data, seed=cfg.seed)
    records = index.split(split)
    if not records:
        raise DatasetError(f"data.test_split: the dataset has no videos in split {split!r} "
                           f"(splits: {getattr(index, 'splits', '?')})")
    mismatch = task.check_index(index)
    if mismatch:
        raise CheckpointError(f"{path}: {mismatch}")
    dataset = build_split_dataset(cfg, records, split, train=False, progress=progress)
    workers = cfg.train.num_workers if cfg.train.input == "features" else cfg.data.num_workers
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate, multiprocessing_context=worker_context(dataset, workers))
    decode = DecodeOptions.from_config(cfg)
    metrics_acc = task.metrics(full=True, meteor=meteor)
    predictions: list[dict] = []
    errors: list[tuple[str, str]] = []
    bar = tqdm(loader, desc=f"eval {split}", unit="batch", disable=not progress, leave=False)
    report = ErrorReport()  # only for the systemic-failure rule; `errors` lists every failure
    with torch.inference_mode():
        for batch in bar:
            errors.extend((str(p), str(r)) for p, r in batch.get("errors", []) or [])
            report.check(batch, total=len(dataset))  # stops the run when every video fails
            if _batch_size(batch) == 0:
                continue
            inputs = (batch["features"].float() if "features" in batch else batch["video"]).to(device)
            lengths = batch["lengths"].to(device)
            with autocast(device, cfg.train.amp):
                x = encoder(inputs).float() if encoder is not None else inputs  # (B, T, D)
                outputs = task.predict(model, x, lengths, decode)
            metrics_acc.update(batch, outputs)
            predictions.extend(task.records(batch, outputs, truth=True))
    bar.close()
    if not predictions:
        raise DatasetError(f"split {split!r}: no video could be evaluated ({len(errors)} failed to load)")

    metrics = _plain(metrics_acc.compute())
    files: dict[str, str | None] = dict(task.plots(metrics, out_dir))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary = {"checkpoint": str(path), "split": split, "task": task.name, "num_videos": len(predictions),
               "num_failed": len(errors), "metrics": metrics}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p) + "\n")
    if errors:
        (out_dir / "errors.json").write_text(json.dumps([{"path": p, "reason": r} for p, r in errors], indent=2),
                                             encoding="utf-8")
    files["metrics"] = str(out_dir / "metrics.json")
    files["predictions"] = str(out_dir / "predictions.jsonl")
    table = format_table(scalars, title=f"{path.name} on {split!r}: {len(predictions)} videos"
                                        + (f", {len(errors)} failed to load" if errors else ""))
    return {"metrics": metrics, "table": table, "split": split, "num_videos": len(predictions), "errors": errors,
            "files": files, "out": str(out_dir), "config": config_to_dict(cfg)}


def _batch_size(batch: dict) -> int:
    lengths = batch.get("lengths")
    return 0 if lengths is None else len(lengths)
