"""Every shipped config loads, validates and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqvision.config import load_config
from seqvision.data.vocab import Vocabulary
from seqvision.features import list_encoders
from seqvision.models import build_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
REQUIRED = ["data.format", "data.root", "data.annotations", "data.split", "encoder.name", "encoder.weights",
            "model.cell", "model.layers", "model.hidden", "model.bidirectional", "train.epochs",
            "train.batch_size", "train.lr", "seed", "out"]


def test_the_classic_settings_ship():
    names = {p.stem for p in CONFIGS}
    assert {"synthetic_classify", "synthetic_frames", "synthetic_caption", "ucf101_lrcn", "hmdb51_lrcn",
            "kinetics400_gru", "msvd_s2vt", "msrvtt_sa_lstm", "keras_cnn_rnn"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_and_builds(path):
    cfg = load_config(path)
    for key in REQUIRED:  # scripts rely on these keys
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
    assert cfg.encoder.name in list_encoders(), cfg.encoder.name
    vocab = Vocabulary.build(["a red circle moves to the left", "a big blue square grows"], min_freq=1,
                             max_size=100) if cfg.model.task == "caption" else None
    model = build_model(cfg.model, input_dim=24, num_classes=5, vocab=vocab)
    x = torch.randn(2, 6, 24)  # (B, T, D)
    lengths = torch.tensor([6, 4])
    out = model.predict(x, lengths)
    if cfg.model.task == "classify":
        assert out["probs"].shape == (2, 5)
    elif cfg.model.task == "frames":
        assert out["logits"].shape == (2, 6, 5)
    else:
        assert len(out["texts"]) == 2


def test_keras_preset_is_the_keras_example():
    cfg = load_config(ROOT / "configs" / "keras_cnn_rnn.yaml")
    assert cfg.model.cell == "gru" and cfg.model.hidden_sizes == [16, 8] and cfg.data.num_frames == 20
