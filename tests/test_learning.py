"""The sequence models learn from any encoder's features: for random-init ResNet-18 / ResNet-50 /
EfficientNet-Lite0 features, pretrained (offline) Lite0 features, and features scaled by 0.01 and 100, the
classifier, frame labeller and captioner trained with the shipped synthetic configs reach at least the score of
the baseline (linear probe / nearest-neighbour captions, :mod:`seqvision.baselines`) on the same features.

Real videos (seqvision's synthetic H.264 clips), real CNNs, the real Trainer; the baseline is the outside oracle.
Features are extracted once per encoder per module; the cheap tier (random ResNet-18, both scales) runs always,
the other encoders are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from seqvision.baselines import BASELINE_METRIC, format_baseline, linear_probe, run_baseline
from seqvision.config import load_config
from seqvision.data import load_index, make_synthetic_dataset
from seqvision.data.vocab import Vocabulary
from seqvision.features import FeatureDataset, extract_features, feature_stats
from seqvision.models import SequenceEncoder
from seqvision.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {task: ROOT / "configs" / f"synthetic_{task}.yaml" for task in ("classify", "frames", "caption")}
ENCODERS = {  # name -> (encoder.name, encoder.weights)
    "resnet18": ("resnet18", "none"),
    "resnet50": ("resnet50", "none"),
    "lite0": ("efficientnet_lite0", "none"),
    "lite0_pretrained": ("efficientnet_lite0", "DEFAULT"),
}
EPOCHS = {"classify": 12, "frames": 12, "caption": 40}  # caption: 160 steps of 16 clips x all their captions
# The probe each model must reach: the one that sees the frames without their order (mean pooling / one frame /
# the nearest clip). The order-aware [first, last, last-first] probe is reported beside it: on the synthetic
# set's ~50 training clips it is near-perfect (start and end positions spell the class), see README.
ORDER_FREE = {"classify": "mean", "frames": "frame", "caption": "nearest_neighbour"}


class Scaled(Dataset):
    """A feature dataset whose features are multiplied by ``scale`` (an encoder with another output scale)."""

    def __init__(self, base, scale: float):
        self.base, self.scale, self.dim = base, scale, base.dim

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        s = dict(self.base[i])
        s["features"] = s["features"] * self.scale
        return s


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learning_synth")
    make_synthetic_dataset(out, num_videos=72, seed=0, size=48, min_frames=16, max_frames=24, progress=False)
    return out


def _overrides(root: Path, out: Path, encoder: str, weights: str) -> list[str]:
    return [f"data.root={root}", f"out={out}", f"data.cache_dir={out / 'cache'}", f"encoder.name={encoder}",
            f"encoder.weights={weights}", "encoder.pooling=avg", "data.size=64", "data.num_frames=12",
            "data.num_workers=0", "train.progress=false", "eval.beam_size=1"]


@pytest.fixture(scope="module")
def features(synth_root, tmp_path_factory):
    """``features(name) -> (train, val)`` FeatureDatasets, extracted once per encoder for this module."""
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            encoder, weights = ENCODERS[name]
            out = tmp_path_factory.mktemp(f"feat_{name}")
            cfg = load_config(CONFIGS["classify"], overrides=_overrides(synth_root, out, encoder, weights))
            extract_features(cfg, splits=["train", "val"], progress=False)
            made[name] = (cfg, FeatureDataset(cfg, "train"), FeatureDataset(cfg, "val"))
        return made[name]

    return get


def _train(task: str, cfg_base, train, val, out: Path, *, epochs: int | None = None):
    """Train the shipped config of ``task`` on the given features with the real Trainer; (result, baseline)."""
    overrides = [f"data.root={cfg_base.data.root}", f"out={out}", "train.progress=false", "eval.beam_size=1",
                 f"train.epochs={epochs or EPOCHS[task]}"]
    cfg = load_config(CONFIGS[task], overrides=overrides)
    index = load_index(cfg.data, seed=cfg.seed)
    vocab = None
    if task == "caption":
        vocab = Vocabulary.build([c for r in index.split("train") for c in r.captions])
    result = Trainer(cfg, train_data=train, val_data=val, label_names=index.label_names,
                     frame_label_names=index.frame_label_names, vocab=vocab, input_dim=train.dim,
                     progress=False).fit()
    return result, result.baseline


def _check_beats_baseline(task, name, scale, features, tmp_path):
    cfg, train, val = features(name)
    if scale != 1.0:
        train, val = Scaled(train, scale), Scaled(val, scale)
    result, baseline = _train(task, cfg, train, val, tmp_path / "run")
    key = f"baseline_val_{BASELINE_METRIC[task]}_{ORDER_FREE[task]}"
    assert key in baseline, baseline
    best = max(row[f"val_{BASELINE_METRIC[task]}"] for row in result.history)
    assert best >= baseline[key], (f"{task} on {name} x{scale}: model best {best:.3f} < baseline {baseline[key]:.3f}; "
                                   f"history {[round(r[result.metric], 3) for r in result.history]}")
    return best, baseline[key]


CHEAP = [("resnet18", 1.0), ("resnet18", 0.01), ("resnet18", 100.0)]
SLOW = [("resnet50", 1.0), ("lite0", 1.0), ("lite0_pretrained", 1.0), ("lite0", 0.01), ("lite0", 100.0)]
# caption (README "Learning from any encoder"): on ~50 training clips with templated captions nearest-neighbour
# retrieval scores validation CIDEr 2.33 (random ResNet-18 features); the captioner trained on every reference
# of a clip per step, with the shipped config (the demo's), reaches 2.49 in 40 epochs. One drawn caption per step
# for 15 epochs left it at 1.53: the decoder was still learning its grammar ("... moves to the <eos>").
TASKS = ["classify", "frames", "caption"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name,scale", CHEAP)
def test_model_reaches_baseline(task, name, scale, features, tmp_path):
    _check_beats_baseline(task, name, scale, features, tmp_path)


# Captions on random high-dimensional features. 12 validation clips cannot rank the captioner against retrieval:
# on this 72-video set random ResNet-50 gives best validation CIDEr 2.16 / 2.03 / 1.76 (seeds 0-2) against 2.23,
# while on 240 videos (36 validation clips) it gives 3.33 / 3.31 / 3.47 against retrieval's 2.87. So ResNet-50's
# caption check runs on 240 videos (test_captioner_beats_retrieval_on_240_videos), and on random Lite0 the gap is
# real (README "Learning from any encoder"): 240 videos give 2.18 / 2.28 against 2.68. Its captions get the shape
# right on 0.39 of the validation clips, retrieval on 0.58, a linear probe on the same mean-pooled features on 0.42:
# the shape in random Lite0's 1280 near-noise dimensions (the top principal component holds 3.6% of the variance,
# ResNet-50's 18%) is found by the nearest neighbour, not by a learned linear read of the features.
SLOW_CAPTION_GAP = {"lite0"}
SLOW_CAPTION_ON_240 = {"resnet50"}


@pytest.mark.slow
@pytest.mark.acceptance  # issue #14: every tested encoder; once per CI (make test), not in test-newest
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name,scale", SLOW)
def test_model_reaches_baseline_slow(task, name, scale, features, tmp_path, request):
    if task == "caption" and name in SLOW_CAPTION_ON_240:
        pytest.skip("12 validation clips cannot rank it: measured on 240 videos below")
    if task == "caption" and name in SLOW_CAPTION_GAP:
        request.applymarker(pytest.mark.xfail(reason="captioner below retrieval on random Lite0 features "
                                                     "(issue #14)", strict=False))
    _check_beats_baseline(task, name, scale, features, tmp_path)


@pytest.mark.slow
@pytest.mark.acceptance
def test_captioner_beats_retrieval_on_240_videos(tmp_path_factory, tmp_path):
    """Random ResNet-50 features, 240 videos (168 train / 36 validation clips), the shipped caption config for 16
    epochs: best validation CIDEr above nearest-neighbour retrieval's (3.23 against 2.87 when written)."""
    root = tmp_path_factory.mktemp("learning_synth240")
    make_synthetic_dataset(root, num_videos=240, seed=0, size=48, min_frames=16, max_frames=24, progress=False)
    encoder, weights = ENCODERS["resnet50"]
    cfg = load_config(CONFIGS["classify"], overrides=_overrides(root, tmp_path / "feat", encoder, weights))
    extract_features(cfg, splits=["train", "val"], progress=False)
    train, val = FeatureDataset(cfg, "train"), FeatureDataset(cfg, "val")
    assert len(val) >= 30, len(val)
    result, baseline = _train("caption", cfg, train, val, tmp_path / "run", epochs=16)
    best = max(row["val_CIDEr"] for row in result.history)
    retrieval = baseline["baseline_val_CIDEr_nearest_neighbour"]
    assert best > retrieval, f"captioner best val CIDEr {best:.3f} <= retrieval {retrieval:.3f}"


def test_standardisation_is_in_the_checkpoint_and_applied(features, tmp_path):
    """The training split's statistics are in the model's buffers after training (set by the trainer, not
    learned), travel in best.pt, and are what the encoder subtracts and divides by."""
    cfg, train, val = features("resnet18")
    result, _ = _train("classify", cfg, Scaled(train, 100.0), Scaled(val, 100.0), tmp_path / "run")
    state = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    model_state = state["model_state"] if "model_state" in state else state["model"]
    mean, std = feature_stats(Scaled(train, 100.0))
    torch.testing.assert_close(model_state["encoder.feature_mean"], mean)
    torch.testing.assert_close(model_state["encoder.feature_std"], torch.where(std > 1e-6 * std.max(), std,
                                                                              torch.ones_like(std)))
    enc = SequenceEncoder(train.dim, hidden=8)
    enc.set_feature_stats(mean, std)
    x = torch.randn(2, 3, train.dim) * 100
    ref = SequenceEncoder(train.dim, hidden=8)
    ref.load_state_dict({k: v for k, v in enc.state_dict().items() if not k.startswith("feature_")})  # old format
    torch.testing.assert_close(ref.feature_std, torch.ones(train.dim))
    torch.testing.assert_close(enc.embed_input(x), (x - enc.feature_mean) / enc.feature_std)


def test_stats_come_from_the_training_split_only(features):
    cfg, train, val = features("resnet18")
    m_train, _ = feature_stats(train)
    m_val, _ = feature_stats(val)
    assert not torch.allclose(m_train, m_val)
    frames = torch.cat([train[i]["features"][: train[i]["length"]] for i in range(len(train))]).double()
    torch.testing.assert_close(m_train, frames.mean(0).float())


def test_linear_probe_against_closed_form():
    """The probe separates linearly separable data and its baseline result has the documented keys."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    logits = linear_probe(x[:150], y[:150], x[150:], num_classes=2)
    assert (logits.argmax(1) == y[150:]).float().mean() >= 0.95
    samples = [{"features": torch.randn(4, 3, generator=g) + 3 * int(k % 2), "length": 4, "label": k % 2,
                "captions": ["odd" if k % 2 else "even"], "frame_labels": torch.full((4,), k % 2)}
               for k in range(40)]
    out = run_baseline("classify", samples[:30], samples[30:])
    assert out["metric"] == "accuracy" and out["score"] == 1.0 and set(out["probes"]) == {"mean", "first_last"}
    out = run_baseline("frames", samples[:30], samples[30:])
    assert out["metric"] == "frame_accuracy" and out["score"] == 1.0
    with pytest.raises(ValueError, match="task"):
        run_baseline("segment", samples, samples)


def test_baseline_reads_a_bounded_subset_of_a_large_split():
    """A split bigger than ``max_values`` numbers is read as a seeded subset that fits (never all of it into
    memory); the probe still learns from it and the result says so."""
    g = torch.Generator().manual_seed(1)
    read = []

    class Split(list):
        def __getitem__(self, i):
            read.append(i)
            return list.__getitem__(self, i)

    samples = [{"features": torch.randn(8, 16, generator=g) + 3 * int(k % 2), "length": 8, "label": k % 2}
               for k in range(600)]
    out = run_baseline("classify", Split(samples[:500]), samples[500:], max_values=100 * 8 * 16)
    assert out["subsampled"] and out["num_train"] == 100 and out["num_val"] == 100 and out["score"] == 1.0
    assert len(set(read)) <= 1 + 100, len(set(read))  # the shape probe and the subset, not 500 clips
    assert "random subset: 100 train, 100 val clips" in format_baseline(out)
    assert not run_baseline("classify", samples[:50], samples[50:60])["subsampled"]
