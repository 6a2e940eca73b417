"""Bad inputs in `seqvision stream` and `classify --window` (#15 new-user trial): the same typed errors and
messages as `seqvision classify` (one place makes them: seqvision.io's open_container), bad files in the
`--json` output, the exit codes the README states, and cli/_stream.py's imports at the top."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import pytest

from seqvision.cli import main
from seqvision.errors import VideoDecodeError
from seqvision.io import VideoReader
from seqvision.stream import FrameSource
from stream_checkpoints import tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("errors_ckpts"))


@pytest.fixture
def bad(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    return {"empty": empty, "text": text, "missing": tmp_path / "missing.mp4"}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("kind", ["empty", "text"])
def test_frame_source_raises_what_video_reader_raises(bad, kind):
    with pytest.raises(VideoDecodeError) as want:
        VideoReader(bad[kind])
    with pytest.raises(VideoDecodeError) as got:
        list(FrameSource(bad[kind]))
    assert got.value.reason == want.value.reason and got.value.path == str(bad[kind])
    assert kind != "empty" or got.value.reason == "file is empty (0 bytes)"


def test_stream_exit_codes(ckpts, bad, capsys):
    """0: the file ended; 2: an unreadable file (bad input: the message names it, as classify's does);
    1: a live source that stayed lost after its reconnects."""
    code, out, _ = run(capsys, "stream", "--checkpoint", ckpts["frames"], ckpts["videos"][0])
    assert code == 0 and json.loads(out.splitlines()[-1])["summary"]["end_reason"] == "eof"
    for kind in ("empty", "missing", "text"):
        code, out, err = run(capsys, "stream", "--checkpoint", ckpts["frames"], bad[kind])
        assert code == 2 and out == "" and str(bad[kind]) in err, (kind, code, err)
    code, _, err = run(capsys, "stream", "--checkpoint", ckpts["frames"], bad["empty"])
    assert "file is empty (0 bytes)" in err and "InvalidData" not in err
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port nobody sends to
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run(capsys, "stream", "--checkpoint", ckpts["frames"], f"udp://127.0.0.1:{port}",
                         "--timeout", "0.5", "--reconnects", "1", "--backoff", "0.1")
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert code == 1 and summary["end_reason"].startswith("source lost") and summary["processed"] == 0, err


def test_classify_window_reports_bad_files_like_classify(ckpts, bad, capsys):
    """--json: one JSON line per bad input, {"path", "error", "error_type"}, with classify's own message; the
    good video's windows still come out; exit 1. Without --json: `PATH: FAILED: message` on stdout."""
    inputs = [bad["empty"], ckpts["videos"][0], bad["missing"], bad["text"]]
    code, out, _ = run(capsys, "classify", "--checkpoint", ckpts["classify"], *inputs, "--json", "--device", "cpu")
    assert code == 1
    want = {e["path"]: e["error"] for e in json.loads(out)["errors"]}  # non-window classify's messages
    code, out, err = run(capsys, "classify", "--checkpoint", ckpts["classify"], *inputs, "--window", "0.5",
                         "--json", "--device", "cpu")
    rows = [json.loads(line) for line in out.splitlines()]  # every line is JSON
    errors = {r["path"]: r for r in rows if "error" in r}
    windows = [r for r in rows if "error" not in r]
    assert code == 1 and "FAILED" not in err
    assert set(errors) == set(want) == {str(bad[k]) for k in ("empty", "missing", "text")}
    for path, r in errors.items():
        assert r["error"] == want[path], (r, want[path])
    assert errors[str(bad["empty"])] == {"path": str(bad["empty"]), "error": "file is empty (0 bytes)",
                                         "error_type": "VideoDecodeError"}
    assert errors[str(bad["missing"])]["error_type"] is None  # never opened: not found
    assert windows and {r["path"] for r in windows} == {str(ckpts["videos"][0])}
    assert {"start", "end", "frames", "label", "probs"} <= set(windows[0])
    code, out, err = run(capsys, "classify", "--checkpoint", ckpts["classify"], bad["empty"], ckpts["videos"][0],
                         "--window", "0.5", "--device", "cpu")
    assert code == 1 and f"{bad['empty']}: FAILED: file is empty (0 bytes)" in out.splitlines()
    assert "1 of 2 inputs failed" in err


def test_classify_window_rejects_a_bad_window_up_front(ckpts, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's own error line (the option's type checks it)
        run(capsys, "classify", "--checkpoint", ckpts["classify"], ckpts["videos"][0], "--window", "-1")
    assert stop.value.code == 2 and "--window" in capsys.readouterr().err


def test_cli_stream_imports_at_the_top():
    """Issue #13's rule for cli/_stream.py: an import inside a function is a deliberately lazy heavy one, marked
    ``# lazy: <why>`` on its line."""
    path = ROOT / "seqvision" / "cli" / "_stream.py"
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    inner = [node for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
    unmarked = [f"{n.lineno}: {lines[n.lineno - 1].strip()}" for n in inner if "# lazy: " not in lines[n.lineno - 1]]
    assert not unmarked, unmarked
