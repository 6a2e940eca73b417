"""Each benchmark runs in its smallest mode so the scripts keep working (no timing assertions: numbers are
reported, not tested). `seqvision bench NAME ...` loads the same scripts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_seq_len_smallest(tmp_path):
    load("seq_len").main(["--quick", "--max-t", "16", "--reps", "1", "--reps-overhead", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "seq_len.json").read_text())
    assert {"scaling", "overhead", "packing", "decoding"} <= set(data)
    assert (tmp_path / "seq_len_scaling.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_decode_smallest(tmp_path):
    load("decode").main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    contenders = {r["contender"] for r in data["results"]}
    assert {"ours-pyav", "pyav-all"} <= contenders
    ours = [r for r in data["results"] if r["contender"].startswith("ours")]
    assert ours and all(r["exact"] for r in ours)  # our reader is frame-exact on every case
    assert (tmp_path / "decode.png").is_file()


@pytest.mark.slow
def test_pipeline_smallest(tmp_path):
    load("pipeline").main(["--quick", "--videos", "2", "--size", "32", "--frames", "4", "--models", "resnet18",
                           "--workers", "0", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results.json").read_text())
    assert data
    assert (tmp_path / "pipeline.png").is_file()


@pytest.mark.slow
def test_fuzz_smallest(tmp_path, capsys):
    load("fuzz").main(["--count", "12", "--seed", "0", "--json", str(tmp_path / "fuzz.json")])
    results = json.loads((tmp_path / "fuzz.json").read_text())
    assert len(results) >= 12


def test_bench_command_finds_the_scripts():
    from seqvision.cli import build_parser

    args = build_parser().parse_args(["bench", "decode", "--smoke"])
    assert args.which == "decode" and args.args == ["--smoke"]
