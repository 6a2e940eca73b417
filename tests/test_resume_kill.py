"""Interrupted runs: ``seqvision train`` and ``seqvision extract`` killed with SIGKILL at chosen points (mid-step,
mid-write of a checkpoint / cache entry, between the two checkpoint saves, between epochs), then run again; and
two extractions writing one cache at the same time.

Each run is a real ``python -m seqvision`` subprocess on a tiny synthetic dataset (24 videos, 32 px; resnet18
with random weights, LSTM hidden 16). The process kills itself (SIGKILL, no cleanup) at a point named by the
test-only switch ``SEQVISION_FAULT`` (``seqvision._faults``), so every kill lands exactly where the test says,
however busy the machine is: nothing here races a clock. After every kill, every ``.pt`` in the run directory
must load and every cache entry must verify; the finished runs must equal uninterrupted ones exactly.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvision.config import load_config
from seqvision.data import load_index
from seqvision.features import FeatureCache

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic_classify.yaml"
RUN_TIMEOUT = 300  # seconds for one subprocess run
EPOCHS = 4


def _sets(data: Path, cache: Path, out: Path) -> list[str]:
    return [f"data.root={data}", "data.size=32", "data.num_frames=8", "data.num_workers=0",
            f"data.cache_dir={cache}", "encoder.name=resnet18", "encoder.weights=none", "encoder.chunk_size=16",
            "model.hidden=16", f"train.epochs={EPOCHS}", "train.batch_size=4", "train.progress=false",
            "train.device=cpu", "seed=0", f"out={out}"]


def _argv(command: str, sets: list[str], *extra: str) -> list[str]:
    args = [sys.executable, "-m", "seqvision", command, "--config", str(CONFIG)]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def _env(fault: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("SEQVISION_FAULT", None)
    if fault:
        env["SEQVISION_FAULT"] = fault
    return env


def _run(command: str, sets: list[str], *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_argv(command, sets, *extra), capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _start(command: str, sets: list[str], *extra: str, log: Path) -> subprocess.Popen:
    f = open(log, "ab")
    return subprocess.Popen(_argv(command, sets, *extra), stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=_env())


def _run_killed(command: str, sets: list[str], *extra: str, fault: str) -> None:
    """Run until the process kills itself at ``fault`` (a ``SEQVISION_FAULT`` rule); it must die by SIGKILL."""
    proc = subprocess.run(_argv(command, sets, *extra), capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=ROOT, env=_env(fault))
    assert proc.returncode == -signal.SIGKILL, (
        f"{command} with SEQVISION_FAULT={fault} exited {proc.returncode} instead of killing itself\n"
        f"{proc.stderr[-4000:]}")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The dataset and a feature cache made once by an uninterrupted ``seqvision extract`` (the reference)."""
    from seqvision.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("resume_kill")
    data = root / "data"
    make_synthetic_dataset(data, num_videos=24, seed=0, size=32, min_frames=12, max_frames=20, progress=False)
    cache = root / "cache"
    _run("extract", _sets(data, cache, root / "extract_run"))
    return {"root": root, "data": data, "cache": cache}


# ---------------------------------------------------------------------------------------------------------------
# Training


def _checkpoints_load(run: Path) -> dict[str, dict]:
    from seqvision.train import load_checkpoint

    return {p.name: load_checkpoint(p) for p in sorted(run.glob("*.pt"))}


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def _temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.glob(".*.tmp"))  # atomic_write's temporary files: ".last.pt.<random>.tmp"


# (SEQVISION_FAULT rule, what the run directory holds after the kill: last.pt's epoch or None, best.pt present,
# a temporary file left mid-write). Each run resumes from what the previous kill left.
TRAIN_KILLS = [
    ("kill:step=3", None, False, False),                 # inside epoch 1, before any checkpoint
    ("kill:write=best.pt", None, False, True),           # mid-write of epoch 1's best.pt
    ("kill:save=after_best", None, True, False),         # between epoch 1's best.pt and last.pt
    ("kill:write=last.pt#2", 1, True, True),             # mid-write of epoch 2's last.pt
    ("kill:epoch=3", 2, True, False),                    # epoch 3 trained and validated, not yet saved
    ("kill:save=after_last", 3, True, False),            # right after epoch 3's last.pt
]


@pytest.mark.timeout(1800)  # eight training subprocesses (a hang guard, not a timed assertion)
def test_train_killed_at_chosen_points_resumes_to_identical_weights(prepared, tmp_path):
    data, cache = prepared["data"], prepared["cache"]
    ref = tmp_path / "reference"
    _run("train", _sets(data, cache, ref))
    reference = _checkpoints_load(ref)
    assert reference["last.pt"]["epoch"] == EPOCHS

    run = tmp_path / "killed"
    sets = _sets(data, cache, run)
    for i, (fault, last_epoch, has_best, temp_left) in enumerate(TRAIN_KILLS):
        _run_killed("train", sets, *(["--resume"] if i else []), fault=fault)
        found = _checkpoints_load(run)  # every .pt loads after every kill: never half-written
        assert (found["last.pt"]["epoch"] if "last.pt" in found else None) == last_epoch, fault
        assert ("best.pt" in found) == has_best, (fault, sorted(found))
        assert bool(_temp_files(run)) == temp_left, (fault, _temp_files(run))
        assert all(torch.load(p, weights_only=True) is not None for p in run.glob("*.pt"))

    _run("train", sets, "--resume")
    final = _checkpoints_load(run)
    assert final["last.pt"]["epoch"] == EPOCHS
    for name in ("last.pt", "best.pt"):
        got, want = final[name], reference[name]
        assert got["epoch"] == want["epoch"], name
        assert got["model_state"].keys() == want["model_state"].keys()
        for k, v in want["model_state"].items():
            assert torch.equal(got["model_state"][k], v), f"{name}: {k} differs after the kills"
        strip = [{k: v for k, v in r.items() if k != "time_s"} for r in want["metrics"]]
        assert [{k: v for k, v in r.items() if k != "time_s"} for r in got["metrics"]] == strip, name
    assert _rows(run) == _rows(ref)
    assert not _temp_files(run)  # a resumed run removes the temporary files that killed saves left


# ---------------------------------------------------------------------------------------------------------------
# Feature extraction


def _cache_of(prepared, cache_dir: Path):
    cfg = load_config(CONFIG, overrides=_sets(prepared["data"], cache_dir, prepared["root"] / "unused"))
    records = load_index(cfg.data, seed=cfg.seed).records
    return FeatureCache.from_config(cfg), records


def _check_cache(prepared, cache_dir: Path, *, complete: bool) -> int:
    """Every record present in the cache has its array with the recorded size and checksum; returns how many
    entries are done. ``complete``: all must be, with features equal to the reference cache's."""
    cache, records = _cache_of(prepared, cache_dir)
    ref_cache, _ = _cache_of(prepared, prepared["cache"])
    assert cache.fingerprint == ref_cache.fingerprint
    done = 0
    for rec in records:
        entry = cache.entry(rec)
        if entry is None:
            assert not complete, f"{rec.path} missing from {cache.dir}"
            continue
        assert entry.error is None, entry.error
        assert cache.is_done(rec), f"{rec.path}: record without its array"
        arr = np.asarray(cache.load(entry, verify=True))  # size, shape, dtype and sha1 against the record
        ref_entry = ref_cache.entry(rec)
        np.testing.assert_array_equal(arr, np.asarray(ref_cache.load(ref_entry)), err_msg=rec.path)
        assert entry.indices == ref_entry.indices and entry.length == ref_entry.length
        done += 1
    if complete:
        assert done == len(records)
    return done


def test_extract_killed_at_chosen_points_resumes(prepared, tmp_path):
    cache_dir = tmp_path / "cache"
    sets = _sets(prepared["data"], cache_dir, tmp_path / "run")
    cache, records = _cache_of(prepared, cache_dir)

    # Cache entries are written by a pool of writer threads, so how many other entries were complete when the
    # kill came varies (at most the writes that reached the point before); where the kill lands does not.
    done = 0
    for nth in (5, 3):  # mid-write of the 5th array, then (resumed) of the 3rd new one
        _run_killed("extract", sets, fault=f"kill:write=*.npy#{nth}")
        temps = list(cache.entries_dir.glob(".*.npy.*.tmp"))
        assert temps, "the interrupted write left its temporary file, never a partial .npy"
        before, done = done, _check_cache(prepared, cache_dir, complete=False)  # every entry present verifies
        assert before <= done <= before + nth - 1 and done < len(records), (before, done)
        for t in temps:
            t.unlink()  # the next run's own temporary files are then the only ones

    proc = _run("extract", sets)
    assert f"{len(records) - done} extracted, {done} already cached, 0 failed" in proc.stdout, proc.stdout
    _check_cache(prepared, cache_dir, complete=True)


def test_two_extractions_at_once_leave_a_consistent_cache(prepared, tmp_path):
    cache_dir = tmp_path / "cache"
    procs = [_start("extract", _sets(prepared["data"], cache_dir, tmp_path / f"run{i}"), log=tmp_path / f"x{i}.log")
             for i in range(2)]
    for p in procs:
        assert p.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "x0.log").read_text()[-3000:]
    _check_cache(prepared, cache_dir, complete=True)
    cache, _ = _cache_of(prepared, cache_dir)
    assert not list(cache.entries_dir.glob(".*.tmp"))
    state = torch.load(cache.encoder_path, weights_only=True)  # written by both: whole, and the seeded init
    ref = torch.load(FeatureCache.from_config(load_config(CONFIG, overrides=_sets(
        prepared["data"], prepared["cache"], tmp_path))).encoder_path, weights_only=True)
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
