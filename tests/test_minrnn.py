"""minGRU / minLSTM (Feng et al. 2024): the log-space parallel scan against a step-by-step float64 reference
written from the paper's equations in linear space (``reference_forward``), the per-step form, exactness under
padding in SequenceEncoder (multi-layer, bidirectional), inspection, and training through every task."""

import pytest
import torch

from seqvision.config import ModelConfig, load_config
from seqvision.data.vocab import Vocabulary
from seqvision.models import SequenceEncoder, build_model, inspect, reference_forward
from seqvision.models._minrnn import MinGRUCell, MinLSTMCell, MinRNN, scan_log

CELLS = ["mingru", "minlstm"]
D, H = 6, 8
TOL = dict(atol=1e-5, rtol=1e-5)


def _x(B=3, T=40, d=D, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, d, generator=g) * 2).to(dtype)  # * 2: both branches of g(x) and saturated gates


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 3])
def test_parallel_scan_equals_stepwise_float64_reference(cell, layers):
    torch.manual_seed(0)
    rnn = MinRNN(cell, D, H, num_layers=layers).double()
    x = _x()
    for h0 in (None, torch.randn(layers, 3, H, dtype=torch.float64)):  # any sign: enters the scan linearly
        out, h_n = rnn(x, h0)
        ref = reference_forward(rnn, x, h0)
        torch.testing.assert_close(out, ref.output, **TOL)
        torch.testing.assert_close(h_n, ref.h_n, **TOL)


@pytest.mark.parametrize("cell", CELLS)
def test_step_equals_parallel_forward(cell):
    torch.manual_seed(0)
    rnn = MinRNN(cell, D, H, num_layers=2).double()
    x = _x(T=12)
    out, h_n = rnn(x)
    h, ys = None, []
    for t in range(x.shape[1]):
        y, h = rnn.step(x[:, t], h)  # (B, H), (L, B, H)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), out, **TOL)
    torch.testing.assert_close(h, h_n, **TOL)
    cell_module = rnn.cells[0]
    assert isinstance(cell_module, (MinGRUCell, MinLSTMCell))
    torch.testing.assert_close(cell_module.step(x[:, 0], torch.zeros(3, H, dtype=torch.float64)),
                               cell_module(x[:, :1])[:, 0], **TOL)


def test_scan_log_solves_the_linear_recurrence():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 30, 4, generator=g, dtype=torch.float64)
    b = torch.rand(2, 30, 4, generator=g, dtype=torch.float64)
    h0 = -torch.rand(2, 4, generator=g, dtype=torch.float64)  # negative: the state enters linearly
    h, hs = h0, []
    for t in range(30):
        h = a[:, t] * h + b[:, t]
        hs.append(h)
    torch.testing.assert_close(scan_log(a.log(), b.log(), h0), torch.stack(hs, 1), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_scan_is_close_to_float64(cell):
    torch.manual_seed(0)
    rnn = MinRNN(cell, D, H)
    x = _x(T=512, dtype=torch.float32)
    out32 = rnn(x)[0].double()
    out64 = rnn.double()(x.double())[0]
    assert ((out32 - out64).abs() / out64.abs()).max() < 1e-4  # grows ~ eps * |cumsum log a|, see _minrnn


def _bidirectional_reference(enc: SequenceEncoder, x1: torch.Tensor) -> torch.Tensor:
    """One clip ``(1, T, D)``, no padding: every layer's forward module on x, backward module on x flipped."""
    h = x1
    for stack in enc.stacks:
        for fwd, bwd in zip(stack.fwd, stack.bwd):
            f = reference_forward(fwd, h).output
            b = reference_forward(bwd, h.flip(1)).output.flip(1)
            h = torch.cat([f, b], dim=-1)  # (1, T, 2H)
    return h


@pytest.mark.parametrize("cell", CELLS)
def test_encoder_bidirectional_multilayer_variable_lengths(cell):
    torch.manual_seed(0)
    enc = SequenceEncoder(D, cell=cell, hidden=H, layers=2, bidirectional=True).double().eval()
    x = _x(B=4, T=9)
    lengths = torch.tensor([9, 5, 1, 7])
    out = enc(x, lengths)
    assert out.outputs.shape == (4, 9, 2 * H) and out.state.shape == (2, 4, H)
    for b, n in enumerate(lengths.tolist()):
        ref = _bidirectional_reference(enc, x[b: b + 1, :n])[0]  # (n, 2H)
        torch.testing.assert_close(out.outputs[b, :n], ref, **TOL)
        assert out.outputs[b, n:].abs().max() == 0 if n < 9 else True
        torch.testing.assert_close(out.state[0, b], ref[n - 1, :H], **TOL)  # forward ends at the clip's end
        torch.testing.assert_close(out.state[1, b], ref[0, H:], **TOL)  # backward ends at step 0


@pytest.mark.parametrize("cell", CELLS)
def test_encoder_unidirectional_padding_and_hidden_sizes(cell):
    torch.manual_seed(0)
    enc = SequenceEncoder(D, cell=cell, hidden_sizes=[8, 5]).double()
    x = _x(B=3, T=7)
    lengths = torch.tensor([7, 4, 2])
    out = enc(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = enc(x[b: b + 1, :n])
        torch.testing.assert_close(out.outputs[b, :n], alone.outputs[0], **TOL)
        torch.testing.assert_close(out.last[b], alone.last[0], **TOL)


@pytest.mark.parametrize("cell", CELLS)
def test_encoder_step_streams_like_forward(cell):
    """SequenceEncoder.step (online inference) calls MinRNN.step per stack: frame by frame == forward."""
    torch.manual_seed(0)
    enc = SequenceEncoder(D, cell=cell, hidden_sizes=[8, 5]).double().eval()
    x = _x(B=2, T=6)
    full = enc(x).outputs  # (B, T, 5)
    state = None
    for t in range(x.shape[1]):
        out, state = enc.step(x[:, t], state)
        torch.testing.assert_close(out, full[:, t], **TOL)


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    rnn = MinRNN("mingru", D, H, num_layers=2, dropout=0.5)
    x = _x(dtype=torch.float32)
    rnn.train()
    assert not torch.equal(rnn(x)[0], rnn(x)[0])
    rnn.eval()
    torch.testing.assert_close(rnn(x)[0], rnn(x)[0])
    assert MinRNN("mingru", D, H, num_layers=1, dropout=0.5).drop.p == 0.0


@pytest.mark.parametrize("cell", CELLS)
def test_inspect_gates(cell):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell=cell, hidden=H, layers=2, bidirectional=True, head_dropout=0.0),
                        input_dim=D, num_classes=3)
    x = _x(B=2, T=6, dtype=torch.float32)
    ins = inspect(model, x, torch.tensor([6, 4]), clip=1)
    names = {"mingru": {"update", "candidate"}, "minlstm": {"forget", "input", "candidate"}}[cell]
    assert len(ins.layers) == 4 and ins.length == 4
    for layer in ins.layers:
        assert set(layer.gates) == names and all(v.shape == (4, H) for v in layer.gates.values())
    if cell == "minlstm":
        f, i = ins.layers[0].gates["forget"], ins.layers[0].gates["input"]
        assert abs((f + i) - 1).max() < 1e-6  # normalised gates
    enc_out = model.encoder(x[1:2, :4]).outputs[0].detach().numpy()
    assert abs(ins.outputs - enc_out).max() < 1e-5


def test_config_accepts_min_cells_and_rejects_others():
    assert load_config(overrides=["model.cell=minlstm"]).model.cell == "minlstm"
    with pytest.raises(Exception, match="model.cell"):
        load_config(overrides=["model.cell=mamba"])
    with pytest.raises(ValueError, match="mingru"):
        SequenceEncoder(D, cell="mamba")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("task", ["classify", "frames"])
def test_short_fit_lowers_loss(cell, task):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    B, T = 8, 10
    x = torch.randn(B, T, D, generator=g)
    lengths = torch.tensor([10, 9, 8, 7, 6, 5, 4, 10])
    labels = torch.arange(B) % 3
    x[torch.arange(B), 0, labels] += 3.0  # the label is in the first frame: the state has to carry it
    batch = {"label": labels, "frame_labels": labels[:, None].expand(B, T)}
    model = build_model(ModelConfig(task=task, cell=cell, hidden=16, layers=2, dropout=0.1, head_dropout=0.0),
                        input_dim=D, num_classes=3)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = model.loss(x, lengths, batch)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("cell", CELLS)
def test_captioner_with_min_cells_encoder_and_decoder(cell):
    captions = ["a man is running .", "a dog jumps over the fence", "two cats sleep"]
    vocab = Vocabulary.build(captions)
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="caption", cell=cell, hidden=16, embed_dim=8, attention_dim=8,
                                    decoder="attention", head_dropout=0.0, max_caption_len=6),
                        input_dim=D, vocab=vocab)
    x = torch.randn(3, 7, D)
    lengths = torch.tensor([7, 4, 2])
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = model.loss(x, lengths, {"captions": captions})
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first
    pred = model.predict(x, lengths, beam_size=2)
    assert len(pred["texts"]) == 3


@pytest.mark.parametrize("cell", CELLS)
def test_scan_stays_float32_under_bf16_autocast(cell):
    """Under autocast the projection runs in bf16 but the scan in float32 (logcumsumexp in bf16 loses the state)."""
    torch.manual_seed(0)
    rnn = MinRNN(cell, D, H)
    x = _x(T=64, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, h_n = rnn(x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, rnn(x)[0], atol=0.05, rtol=0.05)  # bf16 projection error only
