"""Frame labelling: one label per frame (temporal segmentation)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import DatasetError
from ..metrics import confusion_matrix, frame_metrics
from ..models import ModelOutput
from ..probes import frame_probes
from ._base import Labels, MetricAccumulator, Task, register_task
from ._classify import confusion_plot

__all__ = ["FramesTask", "FrameAccumulator"]

IGNORE = -100  # target of padded frames and frames without a label


class FrameAccumulator(MetricAccumulator):
    """Per-clip predicted and true frame ids -> :func:`seqvision.metrics.frame_metrics` (and, with
    ``full=True`` and names, the confusion matrix of :func:`seqvision.metrics.confusion_matrix`).

    ``full=False`` gives ``{"frame_accuracy"}``.
    """

    def __init__(self, names: list[str], *, full: bool):
        self.names = list(names)
        self.full = full
        self.preds: list[torch.Tensor] = []  # (T_i,) per clip
        self.targets: list[torch.Tensor] = []

    def update(self, batch: dict, out: ModelOutput) -> None:
        preds = out.logits.detach().argmax(-1).cpu()  # (B, T)
        for i, n in enumerate(torch.as_tensor(batch["lengths"]).tolist()):
            self.preds.append(preds[i, :n])
            self.targets.append(torch.as_tensor(batch["frame_labels"][i][:n]).cpu())

    def state(self) -> Any:
        return (self.preds, self.targets)

    def merge(self, states: list[Any]) -> None:
        self.preds = [p for preds, _ in states for p in preds]
        self.targets = [t for _, targets in states for t in targets]

    def compute(self) -> dict[str, Any]:
        if not self.preds:
            return {}
        t_max = max(int(p.numel()) for p in self.preds)
        P = torch.full((len(self.preds), t_max), IGNORE, dtype=torch.long)  # (N, T)
        Y = torch.full((len(self.preds), t_max), IGNORE, dtype=torch.long)
        for i, (p, y) in enumerate(zip(self.preds, self.targets)):
            P[i, : p.numel()] = p
            Y[i, : y.numel()] = y
        keep = Y != IGNORE
        if not keep.any():
            return {"frame_accuracy": 0.0}
        m = frame_metrics(P, Y)
        if not self.full:
            return {"frame_accuracy": m["frame_accuracy"]}
        if self.names:
            m["confusion_matrix"] = confusion_matrix(P[keep], Y[keep], len(self.names)).tolist()
        return m


@register_task
class FramesTask(Task):
    """Many-to-many: a label per frame (``model.task=frames``); selects on validation frame accuracy."""

    name = "frames"
    default_metric = "frame_accuracy"
    per_frame = True
    online_answer = "each frame's label"
    baseline_target = "frame_labels"

    @classmethod
    def labels_from_index(cls, index, train_records: list, model_cfg) -> Labels:
        if not index.frame_label_names:
            raise DatasetError("model.task: 'frames' needs per-frame labels, and this dataset has none")
        return Labels(list(index.label_names), list(index.frame_label_names))

    @property
    def num_outputs(self) -> int:
        return len(self.labels.frame_label_names)

    @property
    def output_names(self) -> list[str]:
        return self.labels.frame_label_names

    def metrics(self, *, full: bool = False, meteor: bool = False) -> FrameAccumulator:
        return FrameAccumulator(self.labels.frame_label_names, full=full)

    def _name(self, k: int):
        names = self.labels.frame_label_names
        return names[k] if names else k

    def record(self, batch: dict, i: int, out: ModelOutput, *, truth: bool = False, top_k: int = 5) -> dict:
        n = int(batch["lengths"][i])
        predicted = [self._name(j) for j in out.logits[i, :n].argmax(-1).tolist()]
        rec: dict[str, Any] = self.record_head(batch, i, truth=truth)
        if truth:
            true = torch.as_tensor(batch["frame_labels"][i][:n]).tolist()
            rec.update(frame_labels=[self._name(j) if j >= 0 else None for j in true], predicted=predicted)
        else:
            rec["frame_labels"] = predicted
        return rec

    def plots(self, metrics: dict, out_dir) -> dict[str, str | None]:
        return {"confusion": confusion_plot(metrics, self.labels.frame_label_names, out_dir)}

    def window_output(self, model, feats, cfg, *, top_k=5, beam_size=1) -> dict:
        """Every frame of the window labelled: ``{"frame_labels": [name per frame]}``."""
        names = self.output_names
        return {"frame_labels": [names[p] for p in model.predict(feats)["preds"][0].tolist()]}

    def baseline(self, train_clips, train_rest, val_clips, val_rest, *, num_classes, seed):
        """Per-frame linear probes on ``x_t`` and ``[x_t, x_t - x_{t-1}, x_{t+1} - x_t]``
        (:func:`seqvision.probes.frame_probes`)."""
        return frame_probes(train_clips, train_rest, val_clips, val_rest, num_classes, seed), {}
