"""What a task is: the one place that knows what a model's outputs mean (see docs/DESIGN.md, "Tasks").

Training, evaluation and the CLI are loops over batches that call a :class:`Task`; they know no task by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import Config, ModelConfig
from ..data.vocab import Vocabulary
from ..errors import ConfigError
from ..io import sample_indices
from ..models import ModelOutput, build_model

__all__ = ["Task", "Labels", "DecodeOptions", "MetricAccumulator", "register_task", "get_task", "list_tasks",
           "build_task", "window_clip", "named_top_k"]


@dataclass
class Labels:
    """The names of a task's outputs: from the dataset index when training, from the checkpoint afterwards.

    Attributes:
        label_names: clip classes, in class-id order (``classify``).
        frame_label_names: per-frame classes, in class-id order (``frames``).
        vocab: the caption vocabulary (``caption``).
    """

    label_names: list[str] = field(default_factory=list)
    frame_label_names: list[str] = field(default_factory=list)
    vocab: Vocabulary | None = None


@dataclass(frozen=True)
class DecodeOptions:
    """How a model that generates (the captioner) decodes; other tasks ignore them.

    Attributes:
        beam_size: 1 = greedy (what validation during training uses).
        max_len: at most this many words (None = the model's ``max_caption_len``).
        length_penalty: final scores are ``sum(log p) / num_tokens ** length_penalty`` (0.6 as in Wu et al.
            2016; 1.0, the per-word mean, favours long captions of predictable words).
    """

    beam_size: int = 1
    max_len: int | None = None
    length_penalty: float = 0.6

    @classmethod
    def from_config(cls, cfg: Config, *, beam_size: int | None = None) -> "DecodeOptions":
        """``cfg.eval``'s settings (``eval.max_len`` 0 = the model's); ``beam_size`` overrides ``eval.beam_size``."""
        e = cfg.eval
        return cls(beam_size=int(beam_size or e.beam_size), max_len=e.max_len or None,
                   length_penalty=float(e.length_penalty))


class MetricAccumulator:
    """Collects what a metric needs batch by batch, merges the parts of every DDP rank, computes the metrics
    with :mod:`seqvision.metrics` (never a metric of its own).

    Subclasses implement :meth:`update`, :meth:`state` / :meth:`merge` (plain picklable data) and
    :meth:`compute`.
    """

    def update(self, batch: dict, out: ModelOutput) -> None:
        raise NotImplementedError

    def state(self) -> Any:
        """This rank's collected data (picklable), for :func:`seqvision.train.distributed.all_gather_objects`."""
        raise NotImplementedError

    def merge(self, states: list[Any]) -> None:
        """Replace the collected data by the union of every rank's :meth:`state`."""
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        """The metrics (JSON-safe dict); an empty accumulator gives ``{}``."""
        raise NotImplementedError


class Task:
    """One task: its outputs, its default selection metric, data checks, batch -> loss / predictions, metrics
    and prediction records. Subclass, set ``name`` and ``default_metric``, decorate with :func:`register_task`.

    Args:
        labels: the output names (:class:`Labels`).

    Attributes:
        name: the ``model.task`` value.
        default_metric: the validation metric ``train.metric=auto`` selects ``best.pt`` on (``val_`` + this).
    """

    name: ClassVar[str] = ""
    default_metric: ClassVar[str] = ""
    #: the output has a step per frame, ``(B, T, K)`` (frames), rather than one per clip, ``(B, K)``
    per_frame: ClassVar[bool] = False
    #: how the model runs online (``seqvision.stream``): ``"step"`` = frame by frame with carried state (needs a
    #: unidirectional encoder); ``"window"`` = the offline model on each window of frames (any encoder)
    online: ClassVar[str] = "step"
    #: what one online step answers (for the error when a bidirectional model cannot step)
    online_answer: ClassVar[str] = "the clip's label"
    #: online windows restart the carried state and are reported (``window``, ``frames_in_clip``)
    online_window_resets: ClassVar[bool] = False
    #: the export form (``seqvision.export``): ``"sequence"`` = features -> logits (+ the step model when
    #: unidirectional); ``"encoder_decoder"`` = caption encoder + one-word decoder step
    export_form: ClassVar[str] = "sequence"
    #: the sample key the baseline needs (``seqvision.baselines``); None: the task has no baseline
    baseline_target: ClassVar[str | None] = None
    #: what the baseline is, for logs ("linear probe", "nearest-neighbour captions")
    baseline_kind: ClassVar[str] = "linear probe"

    def __init__(self, labels: Labels | None = None):
        self.labels = labels if labels is not None else Labels()

    # -- data -------------------------------------------------------------------------------------------------

    @classmethod
    def labels_from_index(cls, index, train_records: list, model_cfg: ModelConfig) -> Labels:
        """The output names from a dataset index (``seqvision.data.load_index``) and its training records.

        Raises:
            DatasetError: the dataset cannot train this task (no frame labels, no captions, ...).
        """
        return Labels(list(index.label_names), list(index.frame_label_names))

    def check_index(self, index) -> str | None:
        """Why a dataset index does not fit these labels (evaluation of a checkpoint), or None when it does."""
        return None

    @property
    def num_outputs(self) -> int:
        """K, the width of the model's output (classes, frame labels, vocabulary)."""
        raise NotImplementedError

    @property
    def output_names(self) -> list[str]:
        """The class names a prediction's ids index (clip classes; the frames task: frame classes)."""
        return self.labels.label_names

    def build_model(self, model_cfg: ModelConfig, *, input_dim: int) -> nn.Module:
        """The task model of ``model_cfg`` (``seqvision.models.build_model``) for these labels."""
        return build_model(model_cfg, input_dim=input_dim, num_classes=self.num_outputs, vocab=self.labels.vocab)

    # -- batches ----------------------------------------------------------------------------------------------

    def training_batch(self, batch: dict, *, generator: torch.Generator | None = None) -> dict:
        """The batch as the model's ``loss`` takes it in training (``generator`` draws any random choice, e.g.
        one reference caption per clip; its state is checkpointed). ``generator=None``: the deterministic
        choice used for the validation loss."""
        return batch

    def loss(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor, batch: dict) -> torch.Tensor:
        """Scalar loss of ``x (B, T, D)`` against the batch's targets (the model's own ``loss``)."""
        return model.loss(x, lengths, batch)

    def predict(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                decode: DecodeOptions = DecodeOptions()) -> ModelOutput:
        """The model's predictions for ``x (B, T, D)`` (eval mode, no gradients)."""
        return model.predict(x, lengths)

    # -- metrics and records ----------------------------------------------------------------------------------

    def metrics(self, *, full: bool = False, meteor: bool = False) -> MetricAccumulator:
        """A fresh accumulator. ``full=False``: the per-epoch validation metrics (cheap); ``full=True``: every
        metric ``seqvision eval`` reports (``meteor``: captioning also runs METEOR, a Java process)."""
        raise NotImplementedError

    def record(self, batch: dict, i: int, out: ModelOutput, *, truth: bool = False, top_k: int = 5) -> dict:
        """The JSON record of clip ``i`` of a batch: ``truth=False`` for the CLI's output (``seqvision
        classify|caption --json``), ``truth=True`` for ``predictions.jsonl`` of ``seqvision eval`` (with the
        ground truth beside the prediction)."""
        raise NotImplementedError

    @staticmethod
    def record_head(batch: dict, i: int, *, truth: bool) -> dict:
        """The start of every record: ``id`` then ``path`` (predictions.jsonl), ``path`` then ``id`` (the CLI)."""
        if truth:
            return {"id": batch["id"][i], "path": batch["path"][i]}
        return {"path": batch["path"][i], "id": batch["id"][i]}

    def plots(self, metrics: dict, out_dir) -> dict[str, str | None]:
        """Plots of the evaluation metrics written to ``out_dir``: ``{"confusion": path | None}``."""
        return {"confusion": None}

    def records(self, batch: dict, out: ModelOutput, *, truth: bool = False, top_k: int = 5) -> list[dict]:
        """:meth:`record` of every clip of the batch."""
        return [self.record(batch, i, out, truth=truth, top_k=top_k) for i in range(len(batch["lengths"]))]

    # -- online and windows (seqvision.stream) ----------------------------------------------------------------

    def online_window(self, cfg: Config) -> int | None:
        """Frames per online window when the user gives none (None: clip models never reset)."""
        return None

    def window_output(self, model: nn.Module, feats: torch.Tensor, cfg: Config, *, top_k: int = 5,
                      beam_size: int = 1) -> dict:
        """The answer for one window of a long video or a stream, ``feats (1, n, D)`` (its frames' features):
        ``{"label", "probs"}`` (classify: ``data.num_frames`` picked uniformly, as a training clip),
        ``{"frame_labels"}`` (frames: every frame), ``{"caption"}`` (caption)."""
        clip, lengths = window_clip(feats, cfg)
        probs = model.predict(clip, lengths)["probs"][0].float().cpu()
        out: dict[str, Any] = {"probs": named_top_k(probs, self.output_names, top_k, digits=6)}
        out["label"] = next(iter(out["probs"]))
        return out

    # -- baseline (seqvision.baselines) -----------------------------------------------------------------------

    def baseline(self, train_clips: list[torch.Tensor], train_rest: list[dict], val_clips: list[torch.Tensor],
                 val_rest: list[dict], *, num_classes: int | None, seed: int) -> tuple[dict[str, float], dict]:
        """The task's baseline on cached features: ``({probe name: validation score}, extra results)``.
        ``*_clips``: each clip's valid frames ``(n, D)``; ``*_rest``: the rest of each sample dict.

        Raises:
            ValueError: the task has no baseline (``baseline_target`` is None).
        """
        raise ValueError(f"run_baseline: task {self.name!r} has no baseline")


def window_clip(feats: torch.Tensor, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """``data.num_frames`` of a window's features ``(1, n, D)`` picked uniformly (``data.short_policy``), as a
    training clip was sampled -> ``(clip (1, T, D), lengths (1,))``."""
    pick = sample_indices(feats.shape[1], sampler="uniform", num_frames=cfg.data.num_frames,
                          short_policy=cfg.data.short_policy)
    return feats[:, pick.indices], torch.tensor([pick.length], device=feats.device)


def named_top_k(probs: torch.Tensor, names: list[str], k: int, *, digits: int | None = None) -> dict[str, float]:
    """The ``k`` largest of ``probs (K,)`` as ``{name: probability}``, largest first (``k`` 0: all; ids without
    a name are named by their number; ``digits``: rounded)."""
    k = min(k, probs.numel()) if k else probs.numel()
    vals, idx = probs.topk(k)
    return {names[j] if j < len(names) else str(j): (round(float(v), digits) if digits is not None else float(v))
            for v, j in zip(vals.tolist(), idx.tolist())}


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` the task called ``cls.name`` (see docs/DESIGN.md for a new task)."""
    if not cls.name or not cls.default_metric:
        raise ValueError(f"register_task: {cls.__name__} must set `name` and `default_metric`")
    _TASKS[cls.name] = cls
    return cls


def list_tasks() -> list[str]:
    """The registered task names."""
    return list(_TASKS)


def get_task(name: str) -> type[Task]:
    """The :class:`Task` class called ``name``.

    Raises:
        ConfigError: (key ``model.task``) no such task.
    """
    if name not in _TASKS:
        raise ConfigError("model.task", f"got {name!r}; allowed: {', '.join(map(repr, _TASKS))}")
    return _TASKS[name]


def build_task(name: str, labels: Labels | None = None) -> Task:
    """``get_task(name)(labels)``."""
    return get_task(name)(labels)
