"""A systemic failure is loud: when every video fails to decode (a broken install, like PyAV 19 rejecting an
argument, or a dataset of corrupt files), ``extract``, ``train``, ``eval``, ``classify`` and ``caption`` stop with
``SystemicDecodeError`` naming the count and each cause with its first file, never a downstream symptom.
Scattered bad files are still skipped and reported.

The failures are real: files that are not videos, and PyAV's ``av.open`` replaced (in the CLI's own process) by
one that raises the ``TypeError`` PyAV 19 raised for seqvision's old call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqvision.data import SYSTEMIC_FIRST, ErrorReport
from seqvision.errors import SeqVisionError, SystemicDecodeError

ROOT = Path(__file__).resolve().parents[1]
CLASSIFY = ROOT / "configs" / "synthetic_classify.yaml"
CAPTION = ROOT / "configs" / "synthetic_caption.yaml"

# Runs the CLI with av.open raising what PyAV 19.0 raised for `av.open(path, metadata_errors=...)`.
BROKEN_AV = """
import sys, av
def _open(*args, **kwargs):
    raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
av.open = _open
from seqvision.cli import main
sys.exit(main(sys.argv[1:]))
"""


# ---------------------------------------------------------------------------------------------------------------
# The rule (ErrorReport.raise_if_systemic)


def _batch(ok: int, errors: list[tuple[str, str]]) -> dict:
    return {"id": [f"ok{i}" for i in range(ok)], "errors": errors}


def test_every_video_failing_is_systemic_and_names_each_cause_once():
    report = ErrorReport()
    report.add(_batch(0, [("v/a.mp4", "TypeError: boom"), ("v/b.mp4", "TypeError: boom")]))
    report.raise_if_systemic(total=3)  # one still to come
    report.add(_batch(0, [("v/c.mp4", "cannot open v/c.mp4: Invalid data")]))
    with pytest.raises(SystemicDecodeError) as info:
        report.raise_if_systemic(total=3)
    err = info.value
    assert isinstance(err, SeqVisionError) and (err.failed, err.total) == (3, 3)
    assert str(err).startswith("3 of 3 videos failed to decode: TypeError: boom (first: v/a.mp4); "
                               "cannot open <file>: Invalid data (first: v/c.mp4)")


def test_first_failures_of_one_cause_are_systemic_before_the_end():
    report = ErrorReport()
    for i in range(SYSTEMIC_FIRST):
        report.add(_batch(0, [(f"d/{i}.mp4", f"cannot open d/{i}.mp4: no decoder (at open, x.py:3)")]))
        if i < SYSTEMIC_FIRST - 1:
            report.raise_if_systemic(total=100)
    with pytest.raises(SystemicDecodeError, match=rf"the first {SYSTEMIC_FIRST} of 100 videos all failed.*"
                                                  r"cannot open <file>: no decoder .*\(first: d/0.mp4\)"):
        report.raise_if_systemic(total=100)


def test_scattered_or_mixed_failures_are_not_systemic():
    mixed = ErrorReport()  # many failures, but different causes, and more videos to come
    mixed.add(_batch(0, [(f"m/{i}.mp4", f"reason {i}") for i in range(SYSTEMIC_FIRST + 2)]))
    mixed.raise_if_systemic(total=50)
    after_good = ErrorReport()  # a video loaded first: whatever fails next is scattered
    after_good.add(_batch(1, [(f"g/{i}.mp4", "same") for i in range(20)]))
    after_good.raise_if_systemic(total=21)
    cached = ErrorReport()  # the only video to decode fails, the rest were cached earlier
    cached.add(_batch(0, [("c/bad.mp4", "broken")]))
    cached.raise_if_systemic(total=10, ok=9)
    single = ErrorReport()  # one input that fails is reported as that file's error, not a systemic one
    single.add(_batch(0, [("s/only.mp4", "broken")]))
    single.raise_if_systemic(total=1)


def test_systemic_error_survives_pickling():
    import pickle

    err = SystemicDecodeError(4, 4, 4, [("TypeError: x", "a.mp4")])
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.causes == err.causes


# ---------------------------------------------------------------------------------------------------------------
# Every entry point, through the CLI


def _sets(data: Path, out: Path, cache: Path, task: str) -> list[str]:
    sets = [f"data.root={data}", f"out={out}", "data.size=32", "data.num_frames=8", "data.num_workers=0",
            f"data.cache_dir={cache}", "encoder.name=resnet18", "encoder.weights=none", "model.hidden=16",
            "train.epochs=1", "train.batch_size=8", "train.progress=false", "train.device=cpu", "eval.beam_size=1"]
    if task == "caption":
        sets += ["model.embed_dim=16", "model.attention_dim=16", "model.max_caption_len=8"]
    return [a for s in sets for a in ("--set", s)]


def _cli(*args, broken_av: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    head = [sys.executable, "-c", BROKEN_AV] if broken_av else [sys.executable, "-m", "seqvision"]
    return subprocess.run([*head, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _loud(proc: subprocess.CompletedProcess, total: int, cause: str, files) -> None:
    """Exit 2 with one line: '<total> of <total> videos failed to decode: <cause> (first: <file>)', or, when the
    first failures (in order) already share one cause, 'the first <n> of <total> videos all failed to decode ...'.
    ``files``: the file the line must name as the first of its cause (one path, or any of several)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    lines = [x for x in proc.stderr.splitlines() if "failed to decode" in x]
    assert lines, proc.stderr[-3000:]
    line = lines[0]
    assert f"{total} of {total} videos failed to decode: " in line or (
        f"of {total} videos all failed to decode for the same reason" in line), line
    assert cause in line, line
    files = [files] if isinstance(files, (str, Path)) else files
    assert any(f"(first: {f})" in line for f in map(str, files)), line
    assert "cannot infer the feature width" not in proc.stderr  # never the downstream symptom


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny synthetic dataset, a classifier and a captioner trained on it, and a copy of the dataset whose
    every video is garbage."""
    root = tmp_path_factory.mktemp("systemic")
    data = root / "data"
    _ok(_cli("synth", "--out", data, "--num-videos", 18, "--size", 32, "--min-frames", 10, "--max-frames", 14))
    runs = {}
    for task, config in (("classify", CLASSIFY), ("caption", CAPTION)):
        runs[task] = root / "runs" / task
        _ok(_cli("train", "--config", config, *_sets(data, runs[task], root / "cache", task)))
    broken = root / "broken"
    shutil.copytree(data, broken)
    videos = sorted(p for p in broken.rglob("*.mp4"))
    for p in videos:
        p.write_bytes(b"this is not a video\n" * 20)
    manifest = [json.loads(x) for x in (data / "manifest.jsonl").read_text().splitlines() if x.strip()]
    return {"root": root, "data": data, "broken": broken, "runs": runs, "manifest": manifest, "videos": videos}


@pytest.mark.slow
def test_every_entry_point_stops_loudly_when_every_video_is_corrupt(trained, tmp_path):
    broken, manifest = trained["broken"], trained["manifest"]
    n_all = len(manifest)
    cache = tmp_path / "cache"
    sets = _sets(broken, tmp_path / "run", cache, "classify")

    proc = _cli("extract", "--config", CLASSIFY, *sets)
    _loud(proc, n_all, "", [broken / r["path"] for r in manifest])
    errors = json.loads(next(cache.rglob("errors.rank0.json")).read_text())  # the report is still written
    assert SYSTEMIC_FIRST <= errors["count"] <= n_all  # the failures seen before it stopped

    proc = _cli("train", "--config", CLASSIFY, *sets)
    train_split = [r for r in manifest if r["split"] == "train"]
    _loud(proc, len(train_split), "", [broken / r["path"] for r in train_split])

    test_split = [r for r in manifest if r["split"] == "test"]
    eval_sets = [f"data.root={broken}", f"data.cache_dir={tmp_path / 'cache_eval'}"]
    proc = _cli("eval", "--checkpoint", trained["runs"]["classify"] / "best.pt", "--split", "test",
                *[a for s in eval_sets for a in ("--set", s)])
    _loud(proc, len(test_split), "", [broken / r["path"] for r in test_split])

    videos = trained["videos"]
    proc = _cli("classify", "--checkpoint", trained["runs"]["classify"] / "best.pt", broken, "--json")
    _loud(proc, len(videos), "", str(videos[0]))
    proc = _cli("caption", "--checkpoint", trained["runs"]["caption"] / "best.pt", *videos[:3])
    _loud(proc, 3, "", str(videos[0]))


@pytest.mark.slow
def test_a_broken_decoder_install_is_named_not_hidden(trained, tmp_path):
    """PyAV 19's TypeError on every av.open: extraction and classification name it instead of 'extracting'
    nothing."""
    data, manifest = trained["data"], trained["manifest"]
    sets = _sets(data, tmp_path / "run", tmp_path / "cache", "classify") + ["--set", "data.backend=pyav"]
    cause = "TypeError: open() got an unexpected keyword argument 'metadata_errors'"
    proc = _cli("train", "--config", CLASSIFY, *sets, broken_av=True)
    train_split = [r for r in manifest if r["split"] == "train"]
    _loud(proc, len(train_split), cause, [data / r["path"] for r in train_split])
    videos = sorted(data.rglob("*.mp4"))
    proc = _cli("classify", "--checkpoint", trained["runs"]["classify"] / "best.pt", *videos[:4], broken_av=True)
    _loud(proc, 4, cause, str(videos[0]))


@pytest.mark.slow
def test_scattered_bad_files_are_still_skipped_and_reported(trained, tmp_path):
    data, broken = trained["data"], trained["broken"]
    mixed = tmp_path / "mixed"
    shutil.copytree(data, mixed)
    manifest = trained["manifest"]
    bad = [mixed / manifest[i]["path"] for i in (1, 6)]
    for p in bad:
        p.write_bytes((broken / p.relative_to(mixed)).read_bytes())
    cache = tmp_path / "cache"
    proc = _cli("extract", "--config", CLASSIFY, *_sets(mixed, tmp_path / "run", cache, "classify"))
    assert proc.returncode == 1, proc.stderr[-3000:]  # some failed: reported, not fatal
    assert f"{len(manifest) - 2} extracted, 0 already cached, 2 failed" in proc.stdout, proc.stdout
    errors = json.loads(next(cache.rglob("errors.rank0.json")).read_text())
    assert sorted(i["path"] for i in errors["items"]) == sorted(str(p) for p in bad)
    good = sorted(p for p in mixed.rglob("*.mp4") if p not in bad)[:2]
    proc = _cli("classify", "--checkpoint", trained["runs"]["classify"] / "best.pt", bad[0], *good, "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert [e["path"] for e in result["errors"]] == [str(bad[0])] and len(result["results"]) == 2
