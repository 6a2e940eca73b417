"""Compatibility across the declared dependency ranges (issue #11).

- The lower bounds in ``pyproject.toml`` are the versions ``make test-oldest`` pins (``.ci/oldest.txt``), so the
  bounds that are declared are the ones that were tested.
- The whole pipeline (decode, encode, train, evaluate, predict, plots, caption scores, checkpoints) runs without a
  ``DeprecationWarning`` / ``FutureWarning`` raised at a seqvision line: a dependency announcing that an API we
  call goes away fails here, in the newest environment of CI (``make test-newest``), a release before it breaks.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _version(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", text)]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _declared() -> dict[str, str]:
    """``{name: lower bound}`` of ``[project] dependencies`` (read as text: Python 3.10 has no tomllib)."""
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    found = dict(re.findall(r'^\s*"([A-Za-z0-9_.-]+)>=([0-9.]+)', block, re.M))
    assert found, "no 'name>=version' dependencies found in pyproject.toml"
    return {k.lower(): v for k, v in found.items()}


def test_lower_bounds_are_the_versions_test_oldest_pins():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([0-9.]+)\s*$", (ROOT / ".ci" / "oldest.txt").read_text(), re.M))
    pins = {k.lower(): v for k, v in pins.items()}
    for name, low in _declared().items():
        assert name in pins, f".ci/oldest.txt does not pin {name} (pyproject.toml: {name}>={low})"
        assert _version(pins[name]) == _version(low), \
            f"{name}: pyproject.toml declares >={low} but make test-oldest tests {pins[name]}"


@pytest.mark.slow
def test_pipeline_calls_no_deprecated_api(synthetic_dataset, tmp_path):
    from seqvision.cli._predict import predict_videos
    from seqvision.config import load_config
    from seqvision.metrics import caption_scores
    from seqvision.train import evaluate, train

    sets = [f"data.root={synthetic_dataset}", "data.size=32", "data.num_frames=8", "data.num_workers=0",
            f"data.cache_dir={tmp_path / 'cache'}", "encoder.name=resnet18", "encoder.weights=none",
            "model.hidden=16", "train.epochs=2", "train.batch_size=8", "train.progress=false", "train.device=cpu",
            f"out={tmp_path / 'run'}"]
    videos = sorted(synthetic_dataset.rglob("*.mp4"))[:3]
    with warnings.catch_warnings():
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("error", category=category, module=r"seqvision(\..*)?$")
        result = train(load_config(ROOT / "configs" / "synthetic_classify.yaml", overrides=sets), progress=False)
        assert result.best_checkpoint is not None
        metrics = evaluate(result.best_checkpoint, split="test", progress=False)["metrics"]
        assert metrics
        results, failed = predict_videos(result.best_checkpoint, videos, device="cpu", progress=False, top_k=2)
        assert len(results) == 3 and not failed
        scores = caption_scores({"a": ["a red circle moves left"]}, {"a": "a red circle moves"}, use_java=False)
        assert 0 < scores["BLEU-1"] <= 1
