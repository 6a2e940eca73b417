"""seqvision.tasks: what each task means, in one place.

A :class:`Task` knows its number of outputs, its default selection metric, how its labels come from a dataset,
how a batch becomes a loss and predictions, its metric accumulator (on :mod:`seqvision.metrics`) and its
prediction record (``predictions.jsonl`` and the CLI's JSON). The trainer, ``evaluate`` and the CLI are loops
that call these methods and know no task by name.

Adding a task (e.g. temporal localisation) is one new module here with a ``@register_task`` class (and the
builder of its model, ``@seqvision.models.register_model("name")``), imported below, plus its name in
``seqvision.config.Task``; see docs/DESIGN.md.

Example:
    >>> task = build_task("classify", Labels(label_names=["jump", "run"]))
    >>> model = task.build_model(cfg.model, input_dim=1280)
    >>> acc = task.metrics()
    >>> acc.update(batch, task.predict(model, x, lengths)); acc.compute()
    {'accuracy': 0.5}
"""

from ._base import (DecodeOptions, Labels, MetricAccumulator, Task, build_task, get_task, list_tasks, named_top_k,
                    register_task, window_clip)
from ._caption import CaptionAccumulator, CaptionTask
from ._classify import ClassificationAccumulator, ClassifyTask
from ._frames import FrameAccumulator, FramesTask

__all__ = [
    "Task",
    "Labels",
    "DecodeOptions",
    "MetricAccumulator",
    "register_task",
    "get_task",
    "list_tasks",
    "build_task",
    "window_clip",
    "named_top_k",
    "ClassifyTask",
    "FramesTask",
    "CaptionTask",
    "ClassificationAccumulator",
    "FrameAccumulator",
    "CaptionAccumulator",
]
