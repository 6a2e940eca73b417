"""The training split's cached features are read once per run outside the training loop: ``prepare_model`` reads
them with ``read_split`` (statistics over every clip, the frames within the 2^26-number bound) and the PCA input
projection and the baseline use what it read.

Oracles: the public functions on the dataset itself (``feature_stats``, ``stack_frames``, ``principal_basis``,
``run_baseline``), which read it on their own, must give bit-identical results; reads are counted on a real
:class:`FeatureDataset` over a real feature cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from seqvision.baselines import run_baseline
from seqvision.config import load_config
from seqvision.data import VideoRecord
from seqvision.features import FeatureCache, FeatureDataset, feature_stats, read_split, stack_frames
from seqvision.train import Trainer
from seqvision.train._hooks import principal_basis

ROOT = Path(__file__).resolve().parents[1]


class Counting(Dataset):
    """A dataset that counts how often each sample is read (``reads[i]``)."""

    def __init__(self, base):
        self.base, self.dim, self.reads = base, base.dim, [0] * len(base)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        self.reads[i] += 1
        return self.base[i]


def _feature_dataset(root: Path, split: str, n: int, *, T: int = 6, D: int = 24, seed: int = 0) -> FeatureDataset:
    """``n`` cached clips of ``(T, D)`` float16 features (lengths T..T-2), labels 0/1 that shift the features."""
    cache = FeatureCache(root / "cache", {"version": 1, "encoder": "test", "D": D})
    cache.prepare()
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        rec = VideoRecord(id=f"{split}{i}", path=str(root / f"{split}{i}.mp4"), split=split, label=i % 2)
        feats = rng.standard_normal((T, D)) * np.linspace(0.5, 5.0, D) + 3.0 + 2.0 * (i % 2)
        cache.write(rec, feats.astype(np.float16), length=T - (i % 3))
        records.append(rec)
    return FeatureDataset(FeatureCache(cache.root, cache.settings), records, label_names=["a", "b"])


def test_trainer_reads_the_training_split_once_outside_the_loop(tmp_path):
    train = Counting(_feature_dataset(tmp_path, "train", 40, seed=0))
    val = _feature_dataset(tmp_path, "val", 12, seed=1)
    epochs = 2
    cfg = load_config(ROOT / "configs" / "synthetic_classify.yaml",
                      overrides=[f"out={tmp_path / 'run'}", "model.input_proj=3", "model.hidden=8",
                                 f"train.epochs={epochs}", "train.progress=false", "train.baseline=true",
                                 "train.device=cpu", "train.num_workers=0", "data.num_workers=0"])
    trainer = Trainer(cfg, train_data=train, val_data=val, label_names=["a", "b"], input_dim=24, progress=False)
    assert train.reads == [1] * len(train)  # statistics and PCA: one read
    result = trainer.fit()
    assert train.reads == [1 + epochs] * len(train)  # the loop's epochs; the baseline read nothing more
    # the same results as the public functions reading the dataset themselves
    state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)
    state = state.get("model_state", state.get("model"))
    mean, std = feature_stats(train.base)
    torch.testing.assert_close(state["encoder.feature_mean"], mean, rtol=0, atol=0)
    enc = trainer.model.encoder
    basis, _ = principal_basis(train.base, enc.feature_mean, enc.feature_std, 3, seed=cfg.seed,
                               transform=enc.norm)
    torch.testing.assert_close(state["encoder.proj.weight"], basis, rtol=0, atol=0)
    expected = run_baseline("classify", train.base, val, num_classes=2, seed=cfg.seed)
    assert result.baseline["baseline_val_accuracy"] == expected["score"]
    assert {k: v for k, v in result.baseline.items() if k.startswith("baseline_val_accuracy_")} == \
        {f"baseline_val_accuracy_{k}": v for k, v in expected["probes"].items()}


@pytest.mark.parametrize("max_values", [None, 2**26, 20 * 6 * 24])  # fits; fits; beyond (a subset of 64 clips)
def test_read_split_is_feature_stats_and_stack_frames_in_one_pass(tmp_path, max_values):
    ds = Counting(_feature_dataset(tmp_path, "train", 100))
    frames = read_split(ds, max_values=max_values, seed=7)
    assert ds.reads == [1] * len(ds)  # each clip once, also beyond the bound (statistics over every clip)
    mean, std = feature_stats(ds.base)
    assert torch.equal(frames.mean, mean) and torch.equal(frames.std, std)
    clips, rest = stack_frames(ds.base, max_values=max_values, seed=7)
    assert len(frames) == 100 and len(frames.clips) == len(clips) == (64 if max_values == 20 * 6 * 24 else 100)
    assert all(torch.equal(a, b) for a, b in zip(frames.clips, clips))
    assert [r["id"] for r in frames.rest] == [r["id"] for r in rest]
    # the consumers take it in place of the dataset, read nothing, and agree bit for bit
    again, _ = stack_frames(frames, max_values=max_values, seed=7)
    assert again is frames.clips and ds.reads == [1] * len(ds)


def test_consumers_of_a_split_read_beyond_the_bound_match_the_dataset(tmp_path):
    """Beyond the bound the PCA and the baseline see the same seeded subset either way; a SplitFrames read with
    another bound or seed is refused rather than silently used."""
    ds = _feature_dataset(tmp_path, "train", 100)
    val = _feature_dataset(tmp_path, "val", 20, seed=1)
    bound = 20 * 6 * 24
    frames = read_split(ds, max_values=bound, seed=3)
    out = run_baseline("classify", frames, val, seed=3, max_values=bound)
    ref = run_baseline("classify", ds, val, seed=3, max_values=bound)
    assert out["subsampled"] and out["num_train"] == 64
    assert {k: v for k, v in out.items() if k != "seconds"} == {k: v for k, v in ref.items() if k != "seconds"}
    with pytest.raises(ValueError, match="kept other clips"):
        run_baseline("classify", frames, val, seed=4, max_values=bound)
    full = read_split(ds, max_values=2**26, seed=0)
    mean, std = full.mean, full.std
    a, _ = principal_basis(full, mean, std, 3, seed=0)
    b, _ = principal_basis(ds, mean, std, 3, seed=0)
    assert torch.equal(a, b)
    c, _ = principal_basis(full, mean, std, 3, seed=5)  # the split fits: any seed keeps every clip
    d, _ = principal_basis(ds, mean, std, 3, seed=5)
    assert torch.equal(c, d)
    with pytest.raises(ValueError, match="kept other clips"):
        principal_basis(frames, mean, std, 3, seed=3)  # read under a smaller bound than the PCA's


def test_read_split_errors():
    with pytest.raises(ValueError, match="empty"):
        read_split([])
    with pytest.raises(ValueError, match="sample 1 has no 'features'"):
        read_split([{"features": torch.zeros(2, 3), "length": 2}, {"length": 2}])
