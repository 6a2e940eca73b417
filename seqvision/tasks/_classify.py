"""Clip classification: one label per clip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..metrics import classification_metrics
from ..models import ModelOutput
from ..probes import clip_probes
from ..report import plot_confusion_matrix
from ._base import MetricAccumulator, Task, register_task

__all__ = ["ClassifyTask", "ClassificationAccumulator", "confusion_plot"]

log = logging.getLogger("seqvision.train")


class ClassificationAccumulator(MetricAccumulator):
    """Scores ``(N, K)`` and true labels ``(N,)`` -> :func:`seqvision.metrics.classification_metrics`.

    ``full=False`` gives ``{"accuracy"}`` (top-1); ``full=True`` every metric of ``classification_metrics`` plus
    ``accuracy`` (= ``top1``, the name training uses).
    """

    def __init__(self, label_names: list[str], *, full: bool):
        self.label_names = list(label_names)
        self.full = full
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def update(self, batch: dict, out: ModelOutput) -> None:
        self.scores.append(out.logits.detach().float().cpu())  # (B, K): any monotone score ranks the same
        self.targets.append(torch.as_tensor(batch["label"]).cpu())  # (B,)

    def state(self) -> Any:
        return (self.scores, self.targets)

    def merge(self, states: list[Any]) -> None:
        self.scores = [s for scores, _ in states for s in scores]
        self.targets = [t for _, targets in states for t in targets]

    def compute(self) -> dict[str, Any]:
        if not self.scores:
            return {}
        scores, targets = torch.cat(self.scores), torch.cat(self.targets)
        names = self.label_names if len(self.label_names) == scores.shape[1] else None
        m = classification_metrics(scores, targets, label_names=names if self.full else None)
        if not self.full:
            return {"accuracy": m["top1"]}
        m["accuracy"] = m["top1"]  # the name training uses for the same number
        return m


def confusion_plot(metrics: dict, names: list[str], out_dir: str | Path) -> str | None:
    """``confusion_matrix.png`` in ``out_dir`` from ``metrics["confusion_matrix"]``, or None without one."""
    matrix = metrics.get("confusion_matrix")
    if matrix is None:
        return None
    target = Path(out_dir) / "confusion_matrix.png"
    try:
        plot_confusion_matrix(matrix, names, target)
    except Exception as exc:  # noqa: BLE001 - the metrics are already computed; a plot must not lose them
        log.warning("could not plot the confusion matrix: %s", exc)
        return None
    return str(target)


@register_task
class ClassifyTask(Task):
    """Many-to-one: a label per clip (``model.task=classify``); selects on validation accuracy."""

    name = "classify"
    default_metric = "accuracy"
    online_window_resets = True
    baseline_target = "label"

    @property
    def num_outputs(self) -> int:
        return len(self.labels.label_names)

    def check_index(self, index) -> str | None:
        names = self.labels.label_names
        if names and list(index.label_names) != names:
            return (f"the checkpoint's classes differ from the dataset's ({len(names)} vs {len(index.label_names)} "
                    "names)")
        return None

    def metrics(self, *, full: bool = False, meteor: bool = False) -> ClassificationAccumulator:
        return ClassificationAccumulator(self.labels.label_names, full=full)

    def _name(self, k: int):
        names = self.labels.label_names
        return names[k] if names else k

    def record(self, batch: dict, i: int, out: ModelOutput, *, truth: bool = False, top_k: int = 5) -> dict:
        probs = out.logits[i].detach().float().softmax(-1).cpu()  # (K,)
        rec: dict[str, Any] = self.record_head(batch, i, truth=truth)
        if truth:
            true, pred = int(batch["label"][i]), int(probs.argmax())
            rec.update(label=self._name(true), predicted=self._name(pred), correct=true == pred,
                       probabilities={str(self._name(k)): round(float(p), 6) for k, p in enumerate(probs)})
            return rec
        vals, idx = probs.topk(min(top_k, probs.numel()))
        rec["top_k"] = [{"label": self._name(j), "probability": round(float(v), 6)}
                        for v, j in zip(vals.tolist(), idx.tolist())]
        rec["label"] = rec["top_k"][0]["label"]
        return rec

    def plots(self, metrics: dict, out_dir) -> dict[str, str | None]:
        return {"confusion": confusion_plot(metrics, self.labels.label_names, out_dir)}

    def baseline(self, train_clips, train_rest, val_clips, val_rest, *, num_classes, seed):
        """Linear probes on the mean and on ``[first, last, last - first]`` (:func:`seqvision.probes.clip_probes`)."""
        return clip_probes(train_clips, train_rest, val_clips, val_rest, num_classes, seed), {}
