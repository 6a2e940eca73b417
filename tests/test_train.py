"""The Trainer on synthetic in-memory features: convergence, exact resume, NaN handling, logs and files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from seqvision.config import Config, load_config
from seqvision.errors import ConfigError
from seqvision.models import ModelOutput
from seqvision.train import Trainer, TrainingError, load_checkpoint

D, K, T = 6, 3, 8


class TinyGRUClassifier(nn.Module):
    """A small real model with the task-model protocol (loss / predict), no dropout."""

    task = "classify"

    def __init__(self, input_dim: int = D, num_classes: int = K, hidden: int = 16):
        super().__init__()
        self.rnn = nn.GRU(input_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x, lengths):
        out, _ = self.rnn(x)  # (B, T, H)
        last = out[torch.arange(x.shape[0]), (lengths - 1).clamp(min=0)]  # (B, H)
        return self.head(last)  # (B, K)

    def loss(self, x, lengths, batch):
        return F.cross_entropy(self(x, lengths).float(), batch["label"])

    def predict(self, x, lengths, **opts):
        logits = self(x, lengths)
        return ModelOutput(logits=logits, probs=logits.softmax(-1))


class FeatureSeqs(Dataset):
    """Class-dependent sequences: class k has a bump on feature k that moves over time, plus noise."""

    def __init__(self, n: int, *, seed: int = 0, bad: set[int] = frozenset()):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(K, (n,), generator=g)
        self.lengths = torch.randint(T // 2, T + 1, (n,), generator=g)
        self.feats = torch.randn(n, T, D, generator=g) * 0.5
        for i in range(n):
            k = int(self.labels[i])
            self.feats[i, :, k] += torch.linspace(0.5, 2.0, T)
        self.bad = set(bad)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if i in self.bad:
            return {"error": (f"/videos/{i}.mp4", "corrupt file"), "path": f"/videos/{i}.mp4", "id": str(i)}
        n = int(self.lengths[i])
        return {"features": self.feats[i, :n].clone(), "length": n, "label": int(self.labels[i]),
                "captions": [], "path": f"/videos/{i}.mp4", "id": str(i)}


def collate(samples):
    """The batch of DESIGN.md (seqvision.data.collate once it exists)."""
    try:
        from seqvision.data import collate as real
    except ImportError:
        real = None
    if real is not None:
        return real(samples)
    good = [s for s in samples if "error" not in s]
    batch = {"errors": [s["error"] for s in samples if "error" in s], "path": [s["path"] for s in good],
             "id": [s["id"] for s in good], "captions": [s["captions"] for s in good]}
    if not good:
        return batch
    lengths = torch.tensor([s["length"] for s in good])
    Tm = int(lengths.max())
    feats = torch.zeros(len(good), Tm, good[0]["features"].shape[-1])
    for i, s in enumerate(good):
        feats[i, : s["length"]] = s["features"][: s["length"]]
    batch.update(features=feats, lengths=lengths, mask=torch.arange(Tm)[None] < lengths[:, None],
                 label=torch.tensor([s["label"] for s in good]))
    return batch


def make_cfg(tmp_path: Path, **train) -> Config:
    opts = {"epochs": 4, "batch_size": 8, "lr": 0.01, "progress": False, "device": "cpu", **train}
    return load_config(overrides=[f"out={tmp_path / 'run'}", "seed=3"] + [f"train.{k}={v}" for k, v in opts.items()])


def make_trainer(cfg, *, n_train=48, n_val=24, bad=frozenset(), model=TinyGRUClassifier, init_seed=0,
                 **kw) -> Trainer:
    torch.manual_seed(init_seed)
    model = model()
    return Trainer(cfg, model=model, train_data=FeatureSeqs(n_train, seed=1, bad=bad), val_data=FeatureSeqs(n_val, seed=2),
                   label_names=["a", "b", "c"], collate_fn=collate, **kw)


def test_trainer_converges_and_writes_run_dir(tmp_path):
    cfg = make_cfg(tmp_path, epochs=8, warmup_epochs=1)
    result = make_trainer(cfg, bad={5}).fit()
    out = tmp_path / "run"
    assert result.metric == "val_accuracy"
    assert result.best_metric >= 0.9, result.history
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] * 0.5
    for name in ("config.yaml", "metrics.csv", "train.log", "last.pt", "best.pt", "errors.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    assert result.num_errors == 1 and "/videos/5.mp4" in (out / "errors.json").read_text()
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["epoch"] == result.best_epoch and ckpt["best_metric"] == pytest.approx(result.best_metric)
    assert ckpt["label_names"] == ["a", "b", "c"] and ckpt["input_dim"] == D
    assert ckpt["config"]["train"]["epochs"] == 8 and len(ckpt["metrics"]) == ckpt["epoch"]
    assert "epoch 8" in (out / "train.log").read_text() or "epoch=8" in (out / "train.log").read_text()


class _Kill(Exception):
    pass


def _kill_after(k):
    def cb(trainer, epoch, row):
        if epoch == k:
            raise _Kill(f"killed after epoch {k}")
    return cb


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_resume_after_kill_is_bit_identical(tmp_path, schedule):
    # head with dropout in the loop too, so the torch RNG state matters for exactness
    class WithDropout(TinyGRUClassifier):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.3)

        def forward(self, x, lengths):
            return super().forward(self.drop(x), lengths)

    full_cfg = make_cfg(tmp_path / "full", epochs=5, schedule=schedule, step_size=2, warmup_epochs=0.5)
    full = make_trainer(full_cfg, model=WithDropout)
    full.fit()
    reference = {k: v.clone() for k, v in full.model.state_dict().items()}

    cfg = make_cfg(tmp_path / "killed", epochs=5, schedule=schedule, step_size=2, warmup_epochs=0.5)
    with pytest.raises(_Kill):
        make_trainer(cfg, model=WithDropout, callbacks=[_kill_after(2)]).fit()
    assert load_checkpoint(tmp_path / "killed" / "run" / "last.pt")["epoch"] == 2
    # a fresh process: other initial weights (and the Trainer reseeds): all must come from last.pt
    resumed = make_trainer(cfg, model=WithDropout, init_seed=1234)
    result = resumed.fit(resume=True)
    assert result.epochs_run == 5
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in full.history]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    class NaNAfter(TinyGRUClassifier):
        calls = 0

        def loss(self, x, lengths, batch):
            NaNAfter.calls += 1
            loss = super().loss(x, lengths, batch)
            return loss * float("nan") if NaNAfter.calls > 6 + 4 else loss  # 6 steps per epoch, + val batches

    cfg = make_cfg(tmp_path, epochs=3)
    trainer = make_trainer(cfg, model=NaNAfter)
    with pytest.raises(TrainingError, match=r"epoch 2, step \d+.*loss is nan") as info:
        trainer.fit()
    assert "last.pt" in str(info.value)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())
    assert "not finite" in (tmp_path / "run" / "train.log").read_text()


def test_early_stopping_and_metric_choice(tmp_path):
    cfg = make_cfg(tmp_path, epochs=30, early_stop=2, metric="loss", lr=0.05)
    result = make_trainer(cfg).fit()
    assert result.metric == "val_loss"
    assert result.stopped_early and result.epochs_run < 30
    assert result.epochs_run - result.best_epoch == 2
    losses = [r["val_loss"] for r in result.history]
    assert result.best_metric == pytest.approx(min(losses))

    bad = make_cfg(tmp_path / "bad", epochs=1, metric="nonsense")
    with pytest.raises(ConfigError, match="train.metric"):
        make_trainer(bad).fit()


def test_no_val_split_selects_on_train_loss_and_optimizers(tmp_path):
    for opt in ("adam", "sgd"):
        cfg = make_cfg(tmp_path / opt, epochs=2, optimizer=opt, schedule="none", clip_grad=0)
        torch.manual_seed(0)
        result = Trainer(cfg, model=TinyGRUClassifier(), train_data=FeatureSeqs(16), label_names=list("abc"),
                         collate_fn=collate).fit()
        assert result.metric == "train_loss" and result.best_checkpoint is not None
        assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_tensorboard_missing_is_a_clear_error(tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="train.tensorboard.*tensorboard"):
        make_trainer(make_cfg(tmp_path, tensorboard=True))


# ---------------------------------------------------------------------------------------------------------------
# With the real task models (seqvision.models) and the real collate


class CaptionSeqs(FeatureSeqs):
    WORDS = ["left", "right", "up"]

    def __getitem__(self, i):
        s = super().__getitem__(i)
        w = self.WORDS[int(self.labels[i])]
        s["captions"] = [f"a ball moves {w}", f"the ball goes {w}", f"something moves {w} fast"]
        return s


def _caption_trainer(cfg, init_seed=0):
    from seqvision.data.vocab import Vocabulary
    from seqvision.models import build_model

    train_ds = CaptionSeqs(24, seed=1)
    vocab = Vocabulary.build([c for i in range(len(train_ds)) for c in train_ds[i]["captions"]])
    torch.manual_seed(init_seed)
    model = build_model(cfg.model, input_dim=D, vocab=vocab)
    return Trainer(cfg, model=model, train_data=train_ds, val_data=CaptionSeqs(6, seed=2), vocab=vocab,
                   collate_fn=collate)


def test_caption_resume_is_exact_with_random_reference_choice(tmp_path):
    def cfg_for(name):
        return load_config(overrides=[f"out={tmp_path / name}", "seed=5", "model.task=caption", "model.hidden=16",
                                      "model.embed_dim=8", "model.attention_dim=8", "model.max_caption_len=6",
                                      "train.epochs=3", "train.batch_size=8", "train.progress=false",
                                      "train.device=cpu", "train.lr=0.01"])

    full = _caption_trainer(cfg_for("full"))
    result = full.fit()
    assert result.metric == "val_CIDEr" and "val_BLEU-4" in result.history[0]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    cfg = cfg_for("killed")
    killed = _caption_trainer(cfg)
    killed.callbacks.append(_kill_after(1))
    with pytest.raises(_Kill):
        killed.fit()
    resumed = _caption_trainer(cfg, init_seed=99)
    resumed.fit(resume=True)
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, full.model.state_dict()[k]), k
    ckpt = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert ckpt["vocab"] is not None and ckpt["rng"]["generator"] is not None


@pytest.mark.slow
def test_end_to_end_synthetic_features_evaluate_and_load_model(tmp_path):
    """Real pipeline: synthetic videos -> feature cache (random-init CNN) -> train -> evaluate -> load_model,
    whose encoder reproduces the cached features on raw video."""
    from seqvision.data import VideoDataset, collate as real_collate, load_index, make_synthetic_dataset
    from seqvision.features import FeatureDataset
    from seqvision.train import evaluate, load_model, train

    make_synthetic_dataset(tmp_path / "synth", num_videos=24, size=32, min_frames=10, max_frames=12, progress=False)
    cfg = load_config(overrides=["data.format=synthetic", f"data.root={tmp_path / 'synth'}", "data.num_frames=4",
                                 "data.size=32", "data.num_workers=0", "encoder.name=resnet18", "encoder.weights=none",
                                 "model.hidden=16", "train.epochs=2", "train.batch_size=8", "train.device=cpu",
                                 f"out={tmp_path / 'run'}"])
    result = train(cfg, progress=False)
    assert result.best_checkpoint is not None and len(result.history) == 2
    report = evaluate(result.best_checkpoint, split="test", progress=False)
    assert report["num_videos"] == len(load_index(cfg.data).split("test"))
    assert "top1" in report["metrics"] and "top1" in report["table"]
    assert (tmp_path / "run" / "training_curves.png").is_file() and Path(report["files"]["confusion"]).is_file()
    lines = (Path(report["files"]["predictions"])).read_text().splitlines()
    first = json.loads(lines[0])
    assert {"id", "path", "label", "predicted", "probabilities"} <= set(first) and len(lines) == report["num_videos"]
    loaded = load_model(result.best_checkpoint)
    assert loaded.label_names == load_index(cfg.data).label_names and loaded.encoder is not None
    # raw video through the checkpoint's encoder == the cached features the model was trained on
    cached = FeatureDataset(cfg, "train")
    rec = cached.records[0]
    video = real_collate([VideoDataset.from_config(cfg.data, [rec], train=False)[0]])["video"]
    with torch.inference_mode():
        feats = loaded.encoder(video)[0].float()  # (T, D)
    assert torch.allclose(feats, cached[0]["features"], atol=2e-2, rtol=1e-2)


@pytest.mark.slow
def test_raw_video_with_a_trainable_encoder_fine_tunes_end_to_end(tmp_path):
    """train.input=video decodes clips every epoch and back-propagates into the CNN; the checkpoint carries the
    fine-tuned encoder, which load_model gives back for inference."""
    from seqvision.data import make_synthetic_dataset
    from seqvision.features import build_encoder
    from seqvision.train import load_model, train

    make_synthetic_dataset(tmp_path / "synth", num_videos=18, size=32, min_frames=8, max_frames=10, progress=False)
    cfg = load_config(overrides=["data.format=synthetic", f"data.root={tmp_path / 'synth'}", "data.num_frames=4",
                                 "data.size=32", "data.num_workers=0", "encoder.name=resnet18",
                                 "encoder.weights=none", "encoder.trainable=true", "train.input=video",
                                 "model.hidden=8", "train.epochs=1", "train.batch_size=6", "train.device=cpu",
                                 f"out={tmp_path / 'run'}"])
    result = train(cfg, progress=False)
    assert len(result.history) == 1 and math.isfinite(result.history[0]["train_loss"])
    assert not (tmp_path / "run" / "features").exists()  # no feature cache on the raw-video path
    loaded = load_model(result.last_checkpoint)
    initial = build_encoder(cfg.encoder, seed=cfg.seed).state_dict()
    tuned = loaded.encoder.state_dict()
    changed = [k for k, v in tuned.items() if v.is_floating_point() and not torch.equal(v, initial[k])]
    assert any(k.endswith("conv1.weight") for k in changed), "the CNN's first convolution did not train"
