"""The model's initial weights depend on the seed only, not on whether the features were already cached (the
feature extraction that a missing cache triggers draws from the global RNG). Real videos, real extraction, the
real Trainer."""

from __future__ import annotations

from pathlib import Path

import torch

from seqvision.config import load_config
from seqvision.data import make_synthetic_dataset
from seqvision.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def test_initial_weights_do_not_depend_on_the_feature_cache(tmp_path):
    root = tmp_path / "syn"
    make_synthetic_dataset(root, num_videos=12, seed=0, size=32, min_frames=6, max_frames=8, progress=False)
    sets = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", "data.num_frames=4", "data.size=32",
            "data.num_workers=0", "encoder.name=resnet18", "encoder.weights=none", "encoder.pooling=avg",
            "model.input_proj=0", "train.progress=false", "train.device=cpu", f"out={tmp_path / 'run'}"]
    cfg = load_config(ROOT / "configs" / "synthetic_classify.yaml", overrides=sets)
    fresh = Trainer(cfg, progress=False)  # extracts the features first
    cached = Trainer(cfg, progress=False)  # reads them from the cache
    for (name, a), (_, b) in zip(fresh.model.state_dict().items(), cached.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
