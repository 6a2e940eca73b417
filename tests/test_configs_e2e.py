"""The real-dataset configs run end to end on tiny fake datasets written in the real layouts (tests/layouts.py).

Each shipped config (UCF101, HMDB51, Kinetics, MSVD, MSR-VTT, the Keras example) is loaded from its YAML file
with ``--set`` overrides that only shrink it (32x32 frames, 4 steps, ResNet-18 with random weights instead of a
download, hidden 16, one epoch) and point it at the fake data; then the real pipeline runs: feature extraction ->
training -> evaluation. Kinetics goes through the ``seqvision train`` command in a subprocess. The network is
blocked in both processes and TORCH_HOME is empty afterwards: nothing downloads.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import layouts
from seqvision.config import load_config
from seqvision.data import load_index
from seqvision.features import extract_features
from seqvision.train import evaluate, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# config -> writer of its fake dataset (a few more videos than tests/test_formats.py uses, all real)
LAYOUTS = {
    "ucf101_lrcn": lambda root: layouts.write_ucf101(root, train_groups=(8, 9, 10), test_groups=(1, 2)),
    "hmdb51_lrcn": lambda root: layouts.write_hmdb51(root, spec=layouts.hmdb51_spec()),
    "kinetics400_gru": lambda root: layouts.write_kinetics(root, rows=layouts.kinetics_rows()),
    "msvd_s2vt": lambda root: layouts.write_msvd(root, clips=layouts.msvd_clips()),
    "msrvtt_sa_lstm": lambda root: layouts.write_msrvtt(root, videos=layouts.msrvtt_videos()),
    "keras_cnn_rnn": lambda root: layouts.write_folder(root, classes=("jump", "walk", "wave"), per_class=6),
}
# what the shipped config must keep (the overrides only shrink it)
KEPT = ("task", "cell", "layers", "bidirectional", "head", "decoder", "hidden_sizes", "dropout", "head_dropout",
        "head_hidden")

_BLOCK_NETWORK = textwrap.dedent('''
    import socket
    _connect = socket.socket.connect
    def _blocked(self, address, *a, **k):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError("network access blocked in an offline test: " + repr(address))
        return _connect(self, address, *a, **k)
    socket.socket.connect = _blocked
''')


def shrink(name: str, layout: layouts.Layout, out: Path) -> list[str]:
    """--set overrides that only shrink the shipped config and point it at the fake dataset."""
    shipped = load_config(CONFIGS / f"{name}.yaml")
    sets = layout.overrides + [
        "data.size=32", f"data.crop={32 if shipped.data.crop else 0}", "data.num_frames=4", "data.num_workers=0",
        "encoder.name=resnet18", "encoder.weights=none", "model.hidden=16", "train.epochs=1", "train.batch_size=4",
        "train.progress=false", "train.device=cpu", f"out={out}"]
    if shipped.model.task == "caption":
        sets += ["model.embed_dim=16", "model.attention_dim=16", "model.max_caption_len=8", "eval.beam_size=2"]
    return sets


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network (sockets refuse), an empty TORCH_HOME that must stay empty, and no Java (METEOR's seconds
    of start-up are covered by tests/test_metrics.py)."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    connect = socket.socket.connect

    def blocked(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network access blocked in an offline test: {address!r}")
        return connect(self, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr("seqvision.metrics._captions.java_available", lambda: False)
    yield home
    assert [p for p in home.rglob("*") if p.is_file()] == [], "something was downloaded into TORCH_HOME"


def check_run(name: str, layout: layouts.Layout, cfg, out: Path, *, expect_splits: dict) -> dict:
    """Checks shared by every config after training: best.pt, names, the kept architecture; then evaluate."""
    shipped = load_config(CONFIGS / f"{name}.yaml")
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "config.yaml").is_file()
    ckpt = load_checkpoint(out / "best.pt")
    for key in KEPT:
        assert ckpt["config"]["model"][key] == getattr(shipped.model, key), key
    assert ckpt["config"]["data"]["format"] == shipped.data.format
    assert ckpt["config"]["encoder"]["weights"] == "none"
    task = shipped.model.task
    if task == "classify":
        assert ckpt["label_names"] == layout.label_names  # from the annotation files, in their order
    else:
        assert len(ckpt["vocab"]["itos"]) > 4  # <pad> <bos> <eos> <unk> + words seen at least min_freq times

    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    if shipped.data.val_split:
        assert ("val_accuracy" if task == "classify" else "val_CIDEr") in header, header
    else:
        assert "val_loss" not in header  # UCF101 / HMDB51: no official validation split

    report = evaluate(out / "best.pt", progress=False)
    split = report["split"]
    assert split == shipped.data.test_split
    assert report["num_videos"] == expect_splits[{"validate": "val"}.get(split, split)]
    assert report["errors"] == []
    metrics = report["metrics"]
    preds = [json.loads(x) for x in Path(report["files"]["predictions"]).read_text().splitlines()]
    assert len(preds) == report["num_videos"]
    if task == "classify":
        assert {"top1", "top5", "accuracy", "mean_class_accuracy"} <= set(metrics)
        assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
        assert all(p["label"] in layout.label_names and p["predicted"] in layout.label_names for p in preds)
        assert list(preds[0]["probabilities"]) == layout.label_names
    else:
        assert {"BLEU-4", "CIDEr", "ROUGE-L"} <= set(metrics)
        assert all(isinstance(p["caption"], str) and p["references"] for p in preds)
    return report


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in LAYOUTS if n != "kinetics400_gru"])
def test_config_end_to_end_python_api(name, tmp_path, offline, caplog):
    layout = LAYOUTS[name](tmp_path / "data")
    out = tmp_path / "run"
    cfg = load_config(CONFIGS / f"{name}.yaml", overrides=shrink(name, layout, out))

    with caplog.at_level(logging.WARNING, logger="seqvision.data"):
        index = load_index(cfg.data, seed=cfg.seed)
    assert index.label_names == layout.label_names
    assert index.splits == layout.counts or name == "keras_cnn_rnn"  # the folder layout is split by seed
    assert sorted(Path(p).name for p, _ in index.missing) == sorted(layout.missing)
    if layout.missing:  # annotated but not on disk: reported, not silently dropped
        assert layout.missing[0] in caplog.text

    summary = extract_features(cfg, progress=False)  # every split
    assert (summary.done, summary.failed, summary.skipped) == (len(index.records), 0, 0)
    result = train(cfg, progress=False)
    assert result.epochs_run == 1 and Path(result.best_checkpoint) == out / "best.pt"
    assert result.num_errors == 0
    again = extract_features(cfg, progress=False)  # training read the cache; nothing left to do
    assert (again.done, again.skipped) == (0, len(index.records))
    check_run(name, layout, cfg, out, expect_splits=index.splits)
    if name == "ucf101_lrcn":  # the list's HandStandPushups resolved to the HandstandPushups file on disk
        hs = [r for r in index.split("train") if r.label == layout.label_names.index("HandstandPushups")]
        assert hs and all(Path(r.path).is_file() and "HandStand" in r.id for r in hs)


@pytest.mark.slow
def test_kinetics_config_through_the_cli(tmp_path, offline):
    """`python -m seqvision train --config configs/kinetics400_gru.yaml --set ...` in a subprocess with the
    network blocked; the clip that was never downloaded is reported on stderr."""
    name = "kinetics400_gru"
    layout = LAYOUTS[name](tmp_path / "data")
    out = tmp_path / "run"
    sets = shrink(name, layout, out)
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_BLOCK_NETWORK)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(guard), str(ROOT)]), OMP_NUM_THREADS="1",
               TORCH_HOME=str(offline))
    args = [sys.executable, "-m", "seqvision", "train", "--config", str(CONFIGS / f"{name}.yaml")]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert layout.missing == ["neverDL0000_000030_000040.mp4"]
    assert "not on disk" in proc.stderr and layout.missing[0][:-4] in proc.stderr, proc.stderr[-2000:]

    cfg = load_config(CONFIGS / f"{name}.yaml", overrides=sets)
    index = load_index(cfg.data, seed=cfg.seed)
    assert [Path(p).name for p, _ in index.missing] == layout.missing
    assert index.splits == layout.counts == {"train": 9, "val": 6}
    # the one clip stored at the root as .mkv, not under <split>/<label>/, was found and trained on
    assert any(r.path.endswith(".mkv") and r.split == "train" for r in index.records)
    report = check_run(name, layout, cfg, out, expect_splits=index.splits)
    assert report["split"] == "val"  # Kinetics' test labels are not public: the config evaluates on val
