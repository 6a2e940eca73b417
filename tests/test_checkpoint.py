"""Checkpoint I/O: atomic writes, plain-data loading, refusal of pickled payloads, RNG round trips."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from seqvision.config import load_config, save_config
from seqvision.data import make_synthetic_dataset
from seqvision.errors import CheckpointError
from seqvision.train import (
    CHECKPOINT_VERSION,
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _state(value: float = 1.0) -> dict:
    return {"config": {"seed": 0}, "model_state": {"w": torch.full((3, 2), value)}, "input_dim": 2,
            "label_names": ["a", "b"], "epoch": 1, "rng": capture_rng_state(), "metrics": [{"epoch": 1, "x": 0.5}]}


def test_round_trip_is_plain_data(tmp_path):
    path = save_checkpoint(_state(2.0), tmp_path / "last.pt")
    # weights_only=True load works directly: nothing in it needs unpickling of classes
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "seqvision-checkpoint" and raw["version"] == CHECKPOINT_VERSION
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model_state"]["w"], torch.full((3, 2), 2.0))
    assert ckpt["label_names"] == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary files left behind


def test_crash_mid_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)

    def partial_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(5.0), path)
    monkeypatch.undo()
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model_state"]["w"], torch.full((3, 2), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Plain:
    def __init__(self):
        self.w = torch.zeros(2)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["reduce_zip", "reduce_raw_pickle", "class_instance"])
def test_pickled_payload_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "bad.pt"
    if kind == "reduce_zip":
        torch.save({"format": "seqvision-checkpoint", "version": 1, "x": _Evil(marker)}, path)
    elif kind == "reduce_raw_pickle":
        path.write_bytes(pickle.dumps({"format": "seqvision-checkpoint", "x": _Evil(marker)}))
    else:
        torch.save({"format": "seqvision-checkpoint", "version": 1, "model": _Plain()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "not a plain-data checkpoint" in msg and "will not be unpickled" in msg
    assert not marker.exists()


def test_truncated_corrupt_missing_and_foreign(tmp_path):
    good = save_checkpoint(_state(), tmp_path / "good.pt")
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "empty.pt": b"",
        "garbage.pt": b"this is not a checkpoint at all" * 10,
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")  # plain, but not ours
    with pytest.raises(CheckpointError, match="not a seqvision checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_a_file_of_another_kind_is_named_not_called_pickled(tmp_path):
    """A run folder's config.yaml or a video passed as --checkpoint was "not a plain-data checkpoint: it holds
    pickled Python objects", and metrics.csv "(IndexError: pop from empty list)" (a new-user trial). The file's
    first bytes are checked before torch.load: not a zip archive or a pickle -> it says what the file looks like."""
    config = tmp_path / "config.yaml"
    save_config(load_config(), config)
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,train_loss,lr\n1,0.5,0.001\n")
    manifest = make_synthetic_dataset(tmp_path / "synth", num_videos=1, size=32, min_frames=4, max_frames=4,
                                      val_fraction=0.0, test_fraction=0.0, progress=False)
    video = next((tmp_path / "synth" / "videos").glob("*.mp4"))
    cases = {config: "YAML (starts ", metrics: "CSV (starts 'epoch,train_loss,lr')", video: "a video (MP4/MOV)",
             manifest: "JSON lines (starts '{"}
    for path, kind in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(info.value).startswith(f"{path}: not a seqvision checkpoint (a PyTorch .pt file written by "
                                          f"seqvision train): it looks like {kind}"), str(info.value)
    with pytest.raises(CheckpointError) as info:  # a run folder: was "checkpoint file does not exist"
        load_checkpoint(tmp_path)
    assert str(info.value) == (f"{tmp_path}: is a folder, not a checkpoint file; seqvision train writes best.pt "
                               "and last.pt in its run folder")
    save_checkpoint(_state(), tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"in its run folder \(this one holds best.pt\)$"):
        load_checkpoint(tmp_path)
    save_checkpoint(_state(), tmp_path / "good.pt")  # both of torch's formats still load
    torch.save(load_checkpoint(tmp_path / "good.pt"), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert load_checkpoint(tmp_path / "legacy.pt")["epoch"] == 1


def test_rng_state_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng_state(generator=gen)
    save_checkpoint({**_state(), "rng": state}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    gen2 = torch.Generator().manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"], generator=gen2)
    got = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen2).item())
    assert got == expected


def _v1_file(path, cfg_dict, model):
    """A checkpoint exactly as seqvision 0.1 wrote it (version 1; no ``extra``; ``head_hidden`` implied by the
    preset instead of stored in the config)."""
    state = {"format": "seqvision-checkpoint", "version": 1, "config": cfg_dict,
             "model_state": {k: v.detach() for k, v in model.state_dict().items()}, "encoder_state": None,
             "input_dim": 6, "task": "classify", "label_names": ["a", "b", "c"], "frame_label_names": [],
             "vocab": None, "optimizer": None, "scheduler": None, "scaler": None, "epoch": 2, "global_step": 8,
             "rng": capture_rng_state(), "rng_ranks": None, "world_size": 1, "metrics": [], "metric": "val_accuracy",
             "best_metric": 0.5, "best_epoch": 2}
    torch.save(state, path)
    return path


def test_version_1_checkpoint_converts_on_load(tmp_path):
    from seqvision.config import config_from_dict, config_to_dict
    from seqvision.models import build_model
    from seqvision.train import load_model

    cfg = config_from_dict({"model": {"preset": "keras_cnn_rnn"}})
    assert cfg.model.head_hidden == [8]
    model = build_model(cfg.model, input_dim=6, num_classes=3)
    cfg_v1 = config_to_dict(cfg)
    del cfg_v1["model"]["head_hidden"]  # 0.1 had no such field: the preset implied it
    path = _v1_file(tmp_path / "v1.pt", cfg_v1, model)
    ckpt = Checkpoint.load(path)
    assert ckpt.config["model"]["head_hidden"] == [8] and ckpt.extra == {"converted_from_version": 1}
    assert ckpt.epoch == 2 and ckpt.label_names == ["a", "b", "c"]
    loaded = load_model(path, with_encoder=False)
    assert loaded.model.mlp[0].out_features == 8 and loaded.task.name == "classify"
    x, lengths = torch.randn(2, 5, 6), torch.tensor([5, 3])
    torch.testing.assert_close(loaded.model.predict(x, lengths).logits, model.predict(x, lengths).logits)
    # re-saved, it is a version-2 file that loads the same
    again = Checkpoint.load(save_checkpoint(ckpt, tmp_path / "v2.pt"))
    assert torch.load(tmp_path / "v2.pt", weights_only=True)["version"] == CHECKPOINT_VERSION
    assert again.config == ckpt.config


def test_newer_or_malformed_checkpoint_is_a_clear_error(tmp_path):
    torch.save({**_state(), "format": "seqvision-checkpoint", "version": CHECKPOINT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match=r"new.pt.*version .* is not supported"):
        load_checkpoint(tmp_path / "new.pt")
    torch.save({**_state(), "format": "seqvision-checkpoint", "version": 2, "input_dim": "six"}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt.*'input_dim'"):
        Checkpoint.load(tmp_path / "bad.pt")
    torch.save({"format": "seqvision-checkpoint", "version": 2, "config": {}}, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="lacks required entries: model_state, input_dim"):
        Checkpoint.load(tmp_path / "short.pt")


def test_training_pace_round_trips_and_older_files_load_without_it(tmp_path):
    """``pace`` (the rate the training clips' frames were sampled at) is plain data in the file; a version-2 file
    written before it was kept has no such entry and loads with ``pace=None``; a malformed one is refused."""
    pace = {"fps": 5.8, "min": 4.8, "q1": 5.2, "q3": 6.9, "max": 8.0, "clips": 252, "of": 252, "sampler": "uniform",
            "num_frames": 16}
    path = save_checkpoint({**_state(), "pace": pace}, tmp_path / "paced.pt")
    assert torch.load(path, weights_only=True)["pace"] == pace
    assert Checkpoint.load(path).pace == pace
    torch.save({**_state(), "format": "seqvision-checkpoint", "version": 2}, tmp_path / "older.pt")  # no "pace"
    assert Checkpoint.load(tmp_path / "older.pt").pace is None
    for bad in ({"fps": 0.0}, {"q1": 2.0}, 5.8, {"fps": True}):
        torch.save({**_state(), "format": "seqvision-checkpoint", "version": 2, "pace": bad}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=r"bad.pt.*'pace'"):
            Checkpoint.load(tmp_path / "bad.pt")
