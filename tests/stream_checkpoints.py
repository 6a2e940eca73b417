"""Tiny real checkpoints for the online-inference, window and export tests (#15), and the offline reference
path they are compared with."""

from __future__ import annotations

from pathlib import Path

import torch

from seqvision.config import load_config
from seqvision.data import make_synthetic_dataset
from seqvision.io import VideoReader
from seqvision.train import train

__all__ = ["tiny_checkpoints", "offline_features"]


def tiny_checkpoints(root: Path) -> dict[str, Path]:
    """Three tiny checkpoints (unidirectional classifier with a mean head, 2-layer GRU frame labeller,
    attention captioner) trained for one epoch on 12 synthetic 32x32 videos: a few seconds on one core."""
    make_synthetic_dataset(root / "synth", num_videos=12, size=32, min_frames=10, max_frames=12, progress=False)
    common = ["data.format=synthetic", f"data.root={root / 'synth'}", "data.num_frames=4", "data.size=32",
              "data.num_workers=0", "encoder.name=resnet18", "encoder.weights=none", f"data.cache_dir={root / 'cache'}",
              "model.hidden=8", "train.epochs=1", "train.batch_size=8", "train.device=cpu", "train.progress=false"]
    tasks = {"classify": ["model.task=classify", "model.head=mean"],
             "frames": ["model.task=frames", "model.cell=gru", "model.layers=2"],
             "caption": ["model.task=caption", "model.decoder=attention", "model.embed_dim=8"]}
    out = {}
    for name, extra in tasks.items():
        cfg = load_config(overrides=common + extra + [f"out={root / name}"])
        out[name] = Path(train(cfg, progress=False).best_checkpoint)
    out["videos"] = sorted((root / "synth").rglob("*.mp4"))
    return out


def offline_features(pred, video: Path) -> torch.Tensor:
    """The offline path: every frame by VideoReader at the training size, the CNN on the whole clip."""
    with VideoReader(video, size=pred.cfg.data.size) as vr:
        frames = vr.get_frames(list(range(len(vr)))).data  # (T, 3, H, W)
    with torch.inference_mode():
        return pred.encoder(frames[None]).float()  # (1, T, D)
