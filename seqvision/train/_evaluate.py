"""Evaluating a checkpoint on a split: metrics.json, predictions.jsonl, a confusion-matrix plot, a table."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import apply_overrides, config_from_dict, config_to_dict
from ..data import ErrorReport
from ..errors import CheckpointError, DatasetError
from ..runtime import autocast, select_device
from ._checkpoint import load_checkpoint
from ._inference import encoder_from_checkpoint, model_from_checkpoint

__all__ = ["evaluate", "format_table"]

log = logging.getLogger("seqvision.train")


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
        "files": {"metrics": path, "predictions": path, "confusion": path | None}}``. Classification metrics
        come from ``seqvision.metrics.classification_metrics`` (``accuracy``, ...), frame labelling from
        ``frame_metrics``, captioning from ``caption_scores`` (beam search with ``cfg.eval.beam_size``).
    """
    path = Path(checkpoint_path)
    ckpt = load_checkpoint(path, map_location="cpu")
    data = apply_overrides(copy.deepcopy(ckpt["config"]), cfg_overrides)
    cfg = config_from_dict(data, source=str(path))
    split = split or cfg.eval.split or cfg.data.test_split
    out_dir = Path(out) if out else path.parent / f"eval_{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    device = select_device(cfg.train.device)
    model, vocab = model_from_checkpoint(ckpt, cfg, path=path)
    model.to(device).eval()
    task = getattr(model, "task", cfg.model.task)
    encoder = encoder_from_checkpoint(ckpt, cfg, path=path).to(device).eval() if cfg.train.input == "video" else None
    label_names = list(ckpt.get("label_names") or [])
    frame_label_names = list(ckpt.get("frame_label_names") or [])

    from ..data import load_index
    from ._data import build_split_dataset, get_collate

    index = load_index(cfg.data, seed=cfg.seed)
    records = index.split(split)
    if not records:
        raise DatasetError(f"data.test_split: the dataset has no videos in split {split!r} "
                           f"(splits: {getattr(index, 'splits', '?')})")
    if task == "classify" and label_names and list(index.label_names) != label_names:
        raise CheckpointError(f"{path}: the checkpoint's classes differ from the dataset's "
                              f"({len(label_names)} vs {len(index.label_names)} names)")
    dataset = build_split_dataset(cfg, records, split, train=False, progress=progress)
    workers = cfg.train.num_workers if cfg.train.input == "features" else cfg.data.num_workers
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=False, num_workers=workers,
                        collate_fn=get_collate())
    beam = cfg.eval.beam_size
    max_len = cfg.eval.max_len or cfg.model.max_caption_len

    predictions: list[dict] = []
    errors: list[tuple[str, str]] = []
    all_scores: list[torch.Tensor] = []  # (B, K) or (B, T, K) per batch
    all_labels: list[torch.Tensor] = []
    candidates: dict[str, str] = {}
    references: dict[str, list[str]] = {}
    bar = tqdm(loader, desc=f"eval {split}", unit="batch", disable=not progress, leave=False)
    report = ErrorReport()  # only for the systemic-failure rule; `errors` lists every failure
    with torch.inference_mode():
        for batch in bar:
            errors.extend((str(p), str(r)) for p, r in batch.get("errors", []) or [])
            report.check(batch, total=len(dataset))  # stops the run when every video fails
            lengths_cpu = batch.get("lengths")
            if lengths_cpu is None or len(lengths_cpu) == 0:
                continue
            inputs = batch["features"].float() if "features" in batch else batch["video"]
            inputs = inputs.to(device)
            lengths = lengths_cpu.to(device)
            with autocast(device, cfg.train.amp):
                x = encoder(inputs).float() if encoder is not None else inputs  # (B, T, D)
                if task == "caption":
                    outputs = model.predict(x, lengths, beam_size=beam, max_len=max_len,
                                            length_penalty=cfg.eval.length_penalty)
                else:
                    outputs = model.predict(x, lengths)
            ids, paths = batch.get("id", []), batch.get("path", [])
            if task == "classify":
                probs = outputs["probs"] if "probs" in outputs else outputs["logits"].float().softmax(-1)
                probs = probs.float().cpu()  # (B, K)
                all_scores.append(probs)
                all_labels.append(batch["label"].cpu())
                for i in range(probs.shape[0]):
                    true = int(batch["label"][i])
                    pred = int(probs[i].argmax())
                    predictions.append({"id": ids[i], "path": paths[i],
                                        "label": label_names[true] if label_names else true,
                                        "predicted": label_names[pred] if label_names else pred,
                                        "correct": true == pred,
                                        "probabilities": {(label_names[k] if label_names else str(k)):
                                                          round(float(p), 6) for k, p in enumerate(probs[i])}})
            elif task == "frames":
                scores = outputs["probs"] if "probs" in outputs else outputs["logits"].float().softmax(-1)
                preds = scores.float().argmax(-1).cpu()  # (B, T)
                name = (lambda j: frame_label_names[j] if frame_label_names else j)
                for i in range(preds.shape[0]):
                    n = int(lengths_cpu[i])
                    truth = batch["frame_labels"][i][:n].cpu()
                    all_scores.append(preds[i][:n])
                    all_labels.append(truth)
                    predictions.append({"id": ids[i], "path": paths[i],
                                        "frame_labels": [name(j) if j >= 0 else None for j in truth.tolist()],
                                        "predicted": [name(j) for j in preds[i][:n].tolist()]})
            else:
                for i, text in enumerate(outputs["texts"]):
                    vid = str(ids[i])
                    candidates[vid] = text
                    references[vid] = list(batch["captions"][i])
                    predictions.append({"id": vid, "path": paths[i], "caption": text,
                                        "references": list(batch["captions"][i])})
    bar.close()
    if not predictions:
        raise DatasetError(f"split {split!r}: no video could be evaluated ({len(errors)} failed to load)")

    files: dict[str, str | None] = {"confusion": None}
    metrics: dict[str, Any]
    if task == "classify":
        metrics = _classification(torch.cat(all_scores), torch.cat(all_labels), label_names)
        files["confusion"] = _confusion_plot(metrics, label_names, out_dir)
    elif task == "frames":
        metrics = _frames(all_scores, all_labels, frame_label_names)
        files["confusion"] = _confusion_plot(metrics, frame_label_names, out_dir)
    else:
        from ..metrics import caption_scores

        metrics = {k: float(v) for k, v in caption_scores(references, candidates, meteor=meteor).items()}
    metrics = _plain(metrics)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary = {"checkpoint": str(path), "split": split, "task": task, "num_videos": len(predictions),
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


def _classification(probs: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict:
    try:
        from ..metrics import classification_metrics
    except ImportError:
        classification_metrics = None
    if classification_metrics is not None:
        m = dict(classification_metrics(probs, labels, label_names=names or None))
        m.setdefault("accuracy", m.get("top1"))  # the name training uses for the same number
        return m
    pred = probs.argmax(-1)
    k = min(5, probs.shape[-1])
    topk = (probs.topk(k, -1).indices == labels[:, None]).any(-1)
    return {"accuracy": float((pred == labels).float().mean()), f"top{k}_accuracy": float(topk.float().mean())}


def _frames(preds: list[torch.Tensor], targets: list[torch.Tensor], names: list[str]) -> dict:
    """Per-clip predicted / true frame ids (each ``(T_i,)``), padded with -100 to ``(N, T)``."""
    t_max = max(int(p.numel()) for p in preds)
    P = torch.full((len(preds), t_max), -100, dtype=torch.long)
    Y = torch.full((len(preds), t_max), -100, dtype=torch.long)
    for i, (p, y) in enumerate(zip(preds, targets)):
        P[i, : p.numel()] = p
        Y[i, : y.numel()] = y
    try:
        from ..metrics import confusion_matrix, frame_metrics
    except ImportError:
        keep = Y != -100
        return {"frame_accuracy": float((P[keep] == Y[keep]).float().mean())}
    m = dict(frame_metrics(P, Y))
    keep = Y != -100
    if names and keep.any():
        m["confusion_matrix"] = _plain(confusion_matrix(P[keep], Y[keep], len(names)))
    return m


def _confusion_plot(metrics: dict, names: list[str], out_dir: Path) -> str | None:
    matrix = metrics.get("confusion_matrix") if isinstance(metrics, dict) else None
    if matrix is None:
        return None
    try:
        from ..report import plot_confusion_matrix
    except ImportError:
        return None
    target = out_dir / "confusion_matrix.png"
    try:
        plot_confusion_matrix(matrix, names, target)
    except Exception as exc:  # noqa: BLE001 - the metrics are already computed; a plot must not lose them
        log.warning("could not plot the confusion matrix: %s", exc)
        return None
    return str(target)
