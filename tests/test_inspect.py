"""inspect(): gates and states per layer/direction/step from the reference cells, attention weights."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import assets
from seqvision.cli import main
from seqvision.config import ModelConfig
from seqvision.data.vocab import Vocabulary
from seqvision.io import sample_indices
from seqvision.models import build_model, inspect
from seqvision.report import _plots

D = 10


GATES = {"rnn": {"preactivation"}, "lstm": {"input", "forget", "cell_candidate", "output"},
         "gru": {"reset", "update", "candidate"}}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_inspect_layers_match_the_fused_encoder(cell, bidirectional):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell=cell, hidden=6, layers=2, bidirectional=bidirectional, dropout=0.3,
                                    input_norm=True, input_proj=5), input_dim=D, num_classes=3)
    x = torch.randn(2, 9, D)
    lengths = torch.tensor([9, 6])
    ins = inspect(model, x, lengths, clip=1)
    dirs = 2 if bidirectional else 1
    assert ins.cell == cell and ins.length == 6 and len(ins.layers) == 2 * dirs
    assert [(li.layer, li.direction) for li in ins.layers] == [
        (l, d) for l in range(2) for d in ("forward", "backward")[:dirs]]
    for li in ins.layers:
        assert set(li.gates) == GATES[cell]
        assert li.hidden.shape == (6, 6) and all(g.shape == (6, 6) for g in li.gates.values())
        assert (li.cell is not None) == (cell == "lstm")
        if cell == "lstm":
            for name in ("input", "forget", "output"):
                assert (li.gates[name] >= 0).all() and (li.gates[name] <= 1).all()
            # the cell equation holds step by step: c_t = f c_{t-1} + i g
            c_prev = np.zeros(6) if li.direction == "forward" else None
            if li.direction == "forward":
                for t in range(6):
                    c = li.gates["forget"][t] * c_prev + li.gates["input"][t] * li.gates["cell_candidate"][t]
                    np.testing.assert_allclose(li.cell[t], c, atol=1e-5)
                    c_prev = c
    assert model.training  # inspect restored the mode
    model.eval()
    with torch.no_grad():
        want = model.encoder(x, lengths).outputs[1, :6].numpy()
    np.testing.assert_allclose(ins.outputs, want, atol=1e-5)
    # top layer hidden states are the encoder outputs (forward half; backward half for bidirectional)
    top = [li for li in ins.layers if li.layer == 1]
    np.testing.assert_allclose(np.concatenate([li.hidden for li in top], axis=-1), want, atol=1e-5)
    assert ins.attention is None and ins.words is None


def test_inspect_hidden_sizes_stack_counts_layers():
    model = build_model(ModelConfig(cell="gru", hidden_sizes=[7, 4]), input_dim=D, num_classes=2)
    ins = inspect(model, torch.randn(5, D))
    assert [li.layer for li in ins.layers] == [0, 1]
    assert ins.layers[0].hidden.shape == (5, 7) and ins.layers[1].hidden.shape == (5, 4)


def test_inspect_attention_pooling_weights():
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="lstm", hidden=6, head="attention", attention_dim=4), input_dim=D,
                        num_classes=3)
    x = torch.randn(1, 8, D)
    ins = inspect(model, x, 5)
    assert ins.attention.shape == (5,)
    np.testing.assert_allclose(ins.attention.sum(), 1.0, atol=1e-5)
    pred = model.predict(x[:, :5])
    np.testing.assert_allclose(ins.attention, pred["attention"][0].numpy(), atol=1e-6)


@pytest.mark.parametrize("decoder", ["s2vt", "attention"])
def test_inspect_captioner_words_and_attention(decoder):
    torch.manual_seed(0)
    vocab = Vocabulary.build(["a cat sits", "a dog runs fast"])
    model = build_model(ModelConfig(task="caption", decoder=decoder, hidden=6, embed_dim=6, attention_dim=4,
                                    max_caption_len=4), input_dim=D, vocab=vocab)
    x = torch.randn(1, 7, D)
    ins = inspect(model, x, torch.tensor([6]))
    assert ins.words[-1] == "<eos>" and 1 <= len(ins.words) <= 5
    pred = model.predict(x[:, :6])
    assert " ".join(ins.words[:-1]) == pred["texts"][0]
    if decoder == "attention":
        assert ins.attention.shape == (len(ins.words), 6)
        np.testing.assert_allclose(ins.attention.sum(-1), 1.0, atol=1e-5)
    else:
        assert ins.attention is None


def test_inspect_bad_input():
    model = build_model(ModelConfig(hidden=4), input_dim=D, num_classes=2)
    with pytest.raises(ValueError, match="length"):
        inspect(model, torch.randn(5, D), 9)
    with pytest.raises(TypeError, match="SequenceEncoder"):
        inspect(torch.nn.Linear(2, 2), torch.randn(5, D))


# -- `seqvision inspect` names the video's frames, not the clip's steps ------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny classify / caption checkpoints (tests/stream_checkpoints.py; data.num_frames=4, uniform sampler)."""
    from stream_checkpoints import tiny_checkpoints

    return tiny_checkpoints(tmp_path_factory.mktemp("inspect_ckpts"))


def _ffprobe_frames(video) -> list[float]:
    """best_effort_timestamp_time of every frame ffprobe decodes (the CLI's frame list)."""
    out = subprocess.run([assets.FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "frame=best_effort_timestamp_time", "-of", "csv=p=0", str(video)], capture_output=True,
                         text=True, check=True).stdout
    return [float(line.strip().rstrip(",")) for line in out.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which(assets.FFMPEG) is None or shutil.which(assets.FFPROBE) is None,
                    reason="needs the ffmpeg/ffprobe CLI (the video and the frame oracle)")
@pytest.mark.parametrize("task", ["caption", "classify"])
def test_inspect_names_the_sampled_video_frames(tiny, task, tmp_path, capsys, monkeypatch):
    """inspect numbered the plots' frames 0..T-1 (steps of the sampled clip), so a user could not find them in the
    video. Now the text output, frames.json, the strip, the gate plots and the attention plot name each step's
    0-based frame index in the video (and the strip and text its time from the first frame); the oracle is the
    uniform sampler's picks for the frame count ffprobe decodes, and ffprobe's timestamps."""
    video = tmp_path / "clip.ts"  # MPEG-TS: stream time starts at 1.4 s, the times count from the first frame
    subprocess.run([assets.FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                    "-t", "3", "-c:v", "libx264", "-f", "mpegts", str(video)], check=True)
    stamps = _ffprobe_frames(video)
    picked = sample_indices(len(stamps), sampler="uniform", num_frames=4)  # tiny_checkpoints: data.num_frames=4
    frames = picked.indices[:picked.length]
    times = [round(stamps[i] - stamps[0], 6) for i in frames]
    assert frames != list(range(len(frames)))  # the steps are not the frames

    figures = {}
    real_save = _plots._save

    def keep(fig, path):  # the figures as drawn, to read their labels
        figures[Path(path).name] = fig
        return real_save(fig, path)

    monkeypatch.setattr(_plots, "_save", keep)
    out = tmp_path / "insp"
    assert main(["inspect", "--checkpoint", str(tiny[task]), str(video), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{video} (step: video frame @ time): " + ", ".join(
        f"{t}: {f} @ {s:.2f}s" for t, (f, s) in enumerate(zip(frames, times)))
    listing = json.loads((out / "frames.json").read_text())
    assert [(d["step"], d["frame"]) for d in listing["frames"]] == list(enumerate(frames))
    np.testing.assert_allclose([d["time"] for d in listing["frames"]], times, atol=1e-5)
    assert str(out / "frames.json") in lines[1:]

    titles = [ax.get_title() for ax in figures["frames.png"].axes]
    assert titles == [f"frame {f}\n{s:.2f} s" for f, s in zip(frames, times)]  # 4 frames: one thumbnail each
    plots = [name for name in figures if name.startswith(("gates_layer", "attention"))]
    assert any(name.startswith("gates_layer") for name in plots)
    assert ("attention.png" in plots) == (task == "caption")  # the tiny classifier pools by the mean
    for name in plots:
        bottom = figures[name].axes
        labels = {tuple(t.get_text() for t in ax.get_xticklabels()) for ax in bottom if ax.get_xlabel()}
        assert (tuple(str(f) for f in frames),) == tuple(labels), name
