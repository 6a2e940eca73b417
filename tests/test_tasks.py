"""seqvision.tasks: the registry, the metric accumulators (merged across ranks = computed at once, equal to
seqvision.metrics), prediction records, and a new task added from outside the package that the unchanged
Trainer trains (a task is one class plus its model builder)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqvision.config import load_config
from seqvision.errors import ConfigError, DatasetError
from seqvision.metrics import caption_scores, classification_metrics, frame_metrics
from seqvision.models import ModelOutput, SequenceEncoder, register_model
from seqvision.tasks import (
    DecodeOptions,
    Labels,
    MetricAccumulator,
    Task,
    build_task,
    get_task,
    list_tasks,
    register_task,
)
from seqvision.train import Checkpoint, Trainer


def test_registry_and_defaults():
    assert {"classify", "frames", "caption"} <= set(list_tasks())
    assert [get_task(n).default_metric for n in ("classify", "frames", "caption")] == ["accuracy", "frame_accuracy",
                                                                                       "CIDEr"]
    with pytest.raises(ConfigError, match="model.task"):
        get_task("nope")
    assert build_task("classify", Labels(["a", "b", "c"])).num_outputs == 3
    assert build_task("frames", Labels([], ["x", "y"])).num_outputs == 2
    cfg = load_config(overrides=["eval.beam_size=4", "eval.max_len=7", "eval.length_penalty=0.5"])
    assert DecodeOptions.from_config(cfg) == DecodeOptions(4, 7, 0.5)
    assert DecodeOptions.from_config(cfg, beam_size=2).beam_size == 2


def _merged(task: Task, batches, *, full: bool):
    """Two 'ranks' each see half of the batches; rank 0 merges their states."""
    ranks = [task.metrics(full=full), task.metrics(full=full)]
    for i, (batch, out) in enumerate(batches):
        ranks[i % 2].update(batch, out)
    ranks[0].merge([r.state() for r in ranks])
    return ranks[0].compute()


def test_classification_accumulator_is_seqvision_metrics():
    g = torch.Generator().manual_seed(0)
    task = build_task("classify", Labels(["a", "b", "c"]))
    batches = []
    for _ in range(4):
        logits, labels = torch.randn(5, 3, generator=g), torch.randint(3, (5,), generator=g)
        batches.append(({"label": labels, "lengths": torch.full((5,), 4)}, ModelOutput(logits=logits)))
    logits = torch.cat([o.logits for _, o in batches])
    labels = torch.cat([b["label"] for b, _ in batches])
    ref = classification_metrics(logits, labels, label_names=["a", "b", "c"])
    assert _merged(task, batches, full=False) == {"accuracy": ref["top1"]}
    full = _merged(task, batches, full=True)
    assert full["accuracy"] == ref["top1"] and full["confusion_matrix"] == ref["confusion_matrix"]
    assert task.metrics().compute() == {}


def test_frame_accumulator_is_seqvision_metrics():
    g = torch.Generator().manual_seed(1)
    task = build_task("frames", Labels([], ["x", "y", "z"]))
    batches = []
    for _ in range(3):
        lengths = torch.tensor([6, 3])
        targets = torch.randint(3, (2, 6), generator=g)
        targets[1, 3:] = -100
        batches.append(({"lengths": lengths, "frame_labels": targets}, ModelOutput(logits=torch.randn(2, 6, 3,
                                                                                                       generator=g))))
    preds = torch.cat([o.logits.argmax(-1) for _, o in batches])
    targets = torch.cat([b["frame_labels"] for b, _ in batches])
    ref = frame_metrics(preds, targets)
    full = _merged(task, batches, full=True)
    assert {k: full[k] for k in ref} == ref and len(full["confusion_matrix"]) == 3
    assert _merged(task, batches, full=False) == {"frame_accuracy": ref["frame_accuracy"]}


def test_caption_task_batches_metrics_and_records():
    task = build_task("caption", Labels())
    refs = [["a ball moves left", "the ball goes left"], ["a ball moves up"]]
    batch = {"captions": refs, "id": ["v0", "v1"], "path": ["/v0.mp4", "/v1.mp4"], "lengths": torch.tensor([4, 4])}
    g = torch.Generator().manual_seed(0)
    picked = [tuple(task.training_batch(batch, generator=g)["captions"][0]) for _ in range(20)]
    assert all(sorted(p) == sorted(refs[0]) for p in picked)  # every reference, in a seeded random order
    assert set(picked) == {tuple(refs[0]), tuple(reversed(refs[0]))}
    assert task.training_batch(batch)["captions"] == ["a ball moves left", "a ball moves up"]  # validation: first
    with pytest.raises(DatasetError, match="/v1.mp4"):
        task.training_batch({**batch, "captions": [refs[0], []]}, generator=g)
    out = ModelOutput(texts=["a ball moves left", "a ball moves down"], scores=torch.tensor([-0.5, -1.0]))
    acc = task.metrics()
    acc.update(batch, out)
    expected = caption_scores({"v0": refs[0], "v1": refs[1]}, {"v0": out.texts[0], "v1": out.texts[1]},
                              meteor=False)
    assert acc.compute() == pytest.approx({k: float(v) for k, v in expected.items()})
    assert task.records(batch, out) == [{"path": "/v0.mp4", "id": "v0", "caption": "a ball moves left", "score": -0.5},
                                        {"path": "/v1.mp4", "id": "v1", "caption": "a ball moves down",
                                         "score": -1.0}]
    assert task.record(batch, 1, out, truth=True) == {"id": "v1", "path": "/v1.mp4", "caption": "a ball moves down",
                                                      "references": ["a ball moves up"]}


def test_classify_and_frames_records():
    batch = {"id": ["c0"], "path": ["/c0.mp4"], "label": torch.tensor([2]), "lengths": torch.tensor([3]),
             "frame_labels": torch.tensor([[0, 1, -100, -100]])}
    cls = build_task("classify", Labels(["a", "b", "c"]))
    out = ModelOutput(logits=torch.tensor([[0.0, 1.0, 3.0]]))
    rec = cls.record(batch, 0, out, top_k=2)
    assert rec["label"] == "c" and [t["label"] for t in rec["top_k"]] == ["c", "b"] and list(rec)[:2] == ["path", "id"]
    truth = cls.record(batch, 0, out, truth=True)
    assert truth["label"] == "c" and truth["predicted"] == "c" and truth["correct"] is True
    assert list(truth["probabilities"]) == ["a", "b", "c"]
    frames = build_task("frames", Labels([], ["x", "y"]))
    fout = ModelOutput(logits=torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [5.0, 0.0]]]))
    assert frames.record(batch, 0, fout)["frame_labels"] == ["x", "y", "x"]
    assert frames.record(batch, 0, fout, truth=True)["frame_labels"] == ["x", "y", None]


# ---------------------------------------------------------------------------------------------------------------
# A task from outside the package: regress a clip's class id as a number. One model builder + one Task class.


class _Regressor(nn.Module):
    task = "regress_id"

    def __init__(self, encoder: SequenceEncoder):
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(encoder.out_dim, 1)

    def forward(self, x, lengths=None) -> ModelOutput:
        return ModelOutput(logits=self.fc(self.encoder(x, lengths).last))  # (B, 1)

    def loss(self, x, lengths, batch):
        return F.mse_loss(self(x, lengths).logits[:, 0].float(), batch["label"].float())

    @torch.no_grad()
    def predict(self, x, lengths=None) -> ModelOutput:
        return self(x, lengths)


@register_model("regress_id")
def _regressor(m, encoder, *, num_classes=0, vocab=None):
    return _Regressor(encoder)


class _AbsError(MetricAccumulator):
    def __init__(self):
        self.errors: list[float] = []

    def update(self, batch, out):
        self.errors += (out.logits[:, 0].float().cpu() - batch["label"].float()).abs().tolist()

    def state(self):
        return self.errors

    def merge(self, states):
        self.errors = [e for s in states for e in s]

    def compute(self):
        return {"abs_error": sum(self.errors) / len(self.errors)} if self.errors else {}


@register_task
class _RegressTask(Task):
    name = "regress_id"
    default_metric = "abs_error"  # "error" in the name: minimised
    num_outputs = 1

    def metrics(self, *, full=False, meteor=False):
        return _AbsError()

    def record(self, batch, i, out, *, truth=False, top_k=5):
        return {**self.record_head(batch, i, truth=truth), "value": float(out.logits[i, 0])}


def test_a_new_task_trains_with_the_unchanged_trainer(tmp_path):
    from test_train import FeatureSeqs, collate, make_cfg

    cfg = make_cfg(tmp_path, epochs=6, lr=0.02)
    cfg.model.task = "regress_id"  # config.Task lists the shipped tasks; a registered one is built the same way
    cfg.model.hidden = 16
    torch.manual_seed(0)
    result = Trainer(cfg, train_data=FeatureSeqs(48, seed=1), val_data=FeatureSeqs(24, seed=2),
                     collate_fn=collate).fit()
    assert result.metric == "val_abs_error" and result.best_metric == min(r["val_abs_error"] for r in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    ckpt = Checkpoint.load(result.best_checkpoint)
    assert ckpt.task == "regress_id" and ckpt.best_epoch == result.best_epoch
