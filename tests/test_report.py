"""Tests for seqvision.report: every plot is a readable PNG; the HTML report escapes text and links real files."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from seqvision.errors import SeqVisionError
from seqvision.report import (
    frame_strip,
    plot_attention,
    plot_bars,
    plot_confusion_matrix,
    plot_gates,
    plot_lines,
    plot_training_curves,
    write_html_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_w=150, min_h=100) -> np.ndarray:
    path = Path(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.shape[0] >= min_h and img.shape[1] >= min_w, img.shape
    assert img[..., :3].std() > 0.01  # not a blank canvas
    return img


def _frames(t=12, h=32, w=48):
    rng = np.random.default_rng(0)
    f = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        f[i, :, : (i + 1) * w // t] = rng.integers(0, 255, 3, dtype=np.uint8)  # a growing coloured bar
    return f


def test_plots_write_readable_pngs(tmp_path):
    rng = np.random.default_rng(0)
    cm = [[5, 1, 0], [2, 3, 1], [0, 0, 6]]
    assert plot_confusion_matrix(cm, ["jump", "run", "walk"], tmp_path / "cm.png") == tmp_path / "cm.png"
    _check_png(tmp_path / "cm.png")
    _check_png(plot_confusion_matrix(np.array(cm), ["a", "b", "c"], tmp_path / "cm_counts.png", normalize=False))

    history = [{"epoch": e, "train_loss": 2 / (e + 1), "val_loss": 2.2 / (e + 1), "val_top1": 0.2 + 0.1 * e, "lr": 1e-3}
               for e in range(6)]
    _check_png(plot_training_curves(history, tmp_path / "curves.png"), min_w=400)

    t, h = 20, 16
    lstm = {"forget": rng.random((t, h)), "input": rng.random((t, h)),
            "input modulation": np.tanh(rng.normal(size=(t, h))), "output": torch.rand(t, h),
            "hidden": np.tanh(rng.normal(size=(t, h))), "cell": rng.normal(size=(t, h)) * 3}
    img = _check_png(plot_gates(lstm, tmp_path / "gates.png", title="LSTM layer 0",
                                frame_labels=[f"c{i // 5}" for i in range(t)]), min_h=500)
    assert img.shape[0] > img.shape[1] * 0.8  # six stacked rows
    _check_png(plot_gates({"reset": rng.random((t, h)), "update": rng.random((t, h)),
                           "candidate": np.tanh(rng.normal(size=(t, h)))}, tmp_path / "gru.png"))

    w = torch.softmax(torch.randn(5, 16), dim=-1)
    _check_png(plot_attention(w, tmp_path / "att.png", words=["a", "man", "is", "jumping", "<eos>"], title="att"))
    _check_png(plot_attention(w[0].numpy(), tmp_path / "att_pool.png"))

    strip = _check_png(frame_strip(_frames(), tmp_path / "strip.png", max_frames=6), min_w=500)
    assert strip.shape[1] > 2.5 * strip.shape[0]  # a horizontal strip
    _check_png(frame_strip(torch.from_numpy(_frames()).permute(0, 3, 1, 2), tmp_path / "strip_chw.png"))

    _check_png(plot_lines([1, 2, 4, 8], {"gru": [10, 19, 35, 60], "lstm": [8, 15, None, 50]}, tmp_path / "l.png",
                          xlabel="batch", ylabel="clips/s", logx=True, logy=True, title="throughput"))
    _check_png(plot_bars(["decode", "features", "rnn"], [3.2, 11.5, 0.4], tmp_path / "b.png", ylabel="s"))


def test_plot_errors(tmp_path):
    with pytest.raises(SeqVisionError, match="label_names has 2 names but cm is 3x3"):
        plot_confusion_matrix(np.eye(3), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(SeqVisionError, match=r"frames must be \(T, H, W, 3\) or \(T, 3, H, W\)"):
        frame_strip(np.zeros((4, 8, 8, 2), np.uint8), tmp_path / "x.png")
    with pytest.raises(SeqVisionError, match="same number of frames T"):
        plot_gates({"forget": np.zeros((5, 3)), "input": np.zeros((6, 3))}, tmp_path / "x.png")
    with pytest.raises(SeqVisionError, match="words has 2 entries but weights has L=3"):
        plot_attention(np.ones((3, 4)), tmp_path / "x.png", words=["a", "b"])
    with pytest.raises(SeqVisionError, match="ending in .png"):
        plot_bars(["a"], [1.0], tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())


def test_html_report_escapes_text_and_links_existing_files(tmp_path):
    out = tmp_path / "report"
    strip = frame_strip(_frames(), out / "v 1&2.png")  # a name that needs URL-quoting
    cm = plot_confusion_matrix([[2, 1], [0, 3]], ["<jump>", "run"], out / "cm.png")
    sub = out / "plots"
    gate = plot_gates({"forget": np.random.default_rng(0).random((8, 4))}, sub / "g.png")
    path = write_html_report(
        out / "index.html",
        title="Results <UCF & co>",
        summary={"top-1": 0.8125, "BLEU-4": 0.3141592, "wall time (s)": 41.0, "model": "gru<2>"},
        sections=[
            {"heading": "Classification", "text": 'Scores for "val" & <test>', "plots": [cm],
             "table": {"columns": ["class", "f1"], "rows": [["<jump>", 0.5], ["run", 0.75]]}},
            {"heading": "Examples", "cards": [
                {"title": "clip <001>", "image": strip, "correct": False,
                 "rows": [("true", "a man <jumps>"), ("predicted", "a man's running & jumping")],
                 "plots": ["plots/g.png"]},
            ]},
        ],
    )
    text = Path(path).read_text(encoding="utf-8")
    for raw, escaped in [("Results <UCF & co>", "Results &lt;UCF &amp; co&gt;"), ("<jump>", "&lt;jump&gt;"),
                         ('"val" & <test>', "&quot;val&quot; &amp; &lt;test&gt;"), ("clip <001>", "clip &lt;001&gt;"),
                         ("a man <jumps>", "a man &lt;jumps&gt;"), ("gru<2>", "gru&lt;2&gt;")]:
        assert escaped in text and raw not in text
    assert "a man&#x27;s running &amp; jumping" in text
    assert "0.8125" in text and "0.3142" in text and "class=\"card wrong\"" in text
    links = re.findall(r'<img src="([^"]+)"', text)
    assert len(links) == 3
    for link in links:
        assert not Path(link).is_absolute()
        assert (out / unquote(link)).is_file(), link
    assert "plots/g.png" in links and gate.is_file()
    assert text.count("<section>") == 2


def test_html_report_errors(tmp_path):
    with pytest.raises(SeqVisionError, match=r"sections\[0\].cards\[0\]: image nope.png does not exist"):
        write_html_report(tmp_path / "r.html", title="t", summary={},
                          sections=[{"heading": "x", "cards": [{"title": "a", "image": "nope.png"}]}])
    with pytest.raises(SeqVisionError, match=r"unknown section keys \['colour'\]"):
        write_html_report(tmp_path / "r.html", title="t", summary={}, sections=[{"colour": "red"}])
    assert not (tmp_path / "r.html").exists()
