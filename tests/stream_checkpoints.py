"""Tiny real checkpoints for the online-inference, window and export tests (#15), the offline reference path
they are compared with, and what the stream tests share: a free port, reading `seqvision stream`'s JSON lines
until a signal."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
from pathlib import Path

import torch

from seqvision.config import load_config
from seqvision.data import make_synthetic_dataset
from seqvision.io import VideoReader
from seqvision.train import Checkpoint, train

__all__ = ["tiny_checkpoints", "offline_features", "free_port", "json_lines_until_signal"]


def tiny_checkpoints(root: Path, *, pace: bool = False) -> dict[str, Path]:
    """Three tiny checkpoints (unidirectional classifier with a mean head, 2-layer GRU frame labeller,
    attention captioner) trained for one epoch on 12 synthetic 32x32 videos: a few seconds on one core.

    ``pace=False`` (what the source tests count on): the checkpoints carry no training pace (``Checkpoint.pace``
    None, as when trained from a cache written before it kept the clips' durations), so ``seqvision stream``
    gives them every frame; tests/test_training_pace.py trains its own, with the pace."""
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
        if not pace:
            dataclasses.replace(Checkpoint.load(out[name]), pace=None).save(out[name])
    out["videos"] = sorted((root / "synth").rglob("*.mp4"))
    return out


def offline_features(pred, video: Path) -> torch.Tensor:
    """The offline path: every frame by VideoReader at the training size, the CNN on the whole clip."""
    with VideoReader(video, size=pred.cfg.data.size) as vr:
        frames = vr.get_frames(list(range(len(vr)))).data  # (T, 3, H, W)
    with torch.inference_mode():
        return pred.encoder(frames[None]).float()  # (1, T, D)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 free for ``kind`` (``socket.SOCK_STREAM``: TCP, ``socket.SOCK_DGRAM``: UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_lines_until_signal(proc: subprocess.Popen, count: int, sig: int, *, timeout: float = 60) -> tuple[list, str]:
    """The JSON lines ``proc`` (text mode, stdout and stderr piped) prints; after ``count`` of them it is sent
    ``sig``, then read to its end. Returns ``(lines, stderr)``; the caller kills what is left running."""
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if len(lines) == count:
            proc.send_signal(sig)
            break
    rest, err = proc.communicate(timeout=timeout)
    return lines + [json.loads(x) for x in rest.splitlines() if x.strip()], err
