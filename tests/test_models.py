"""Sequence encoder, pooling heads, classifier / frame labeller, reference cells, registry and presets."""

import itertools

import pytest
import torch
from torch import nn

from seqvision.config import ModelConfig
from seqvision.errors import ConfigError
from seqvision.models import (
    ClipClassifier,
    FrameLabeler,
    SequenceEncoder,
    build_model,
    get_preset,
    list_presets,
    reference_forward,
    register_preset,
    resolve_preset,
    reverse_padded,
)

D = 12
CELLS = ["rnn", "lstm", "gru"]


HEADS = ["last", "mean", "max", "attention"]


def _batch(B=3, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    lengths = torch.tensor([T, 4, 1][:B])
    return x, lengths


def _cfg(**kw):
    base = dict(hidden=8, head_dropout=0.0, attention_dim=8)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("cell,layers,bidirectional,head",
                         list(itertools.product(CELLS, [1, 2], [False, True], HEADS)))
def test_classifier_shapes_grads_padding(cell, layers, bidirectional, head):
    torch.manual_seed(0)
    model = build_model(_cfg(cell=cell, layers=layers, bidirectional=bidirectional, head=head, dropout=0.1),
                        input_dim=D, num_classes=3)
    x, lengths = _batch()
    out = model(x, lengths)
    assert out.logits.shape == (3, 3)
    loss = model.loss(x, lengths, {"label": torch.tensor([0, 1, 2])})
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # padding invariance: the short clips alone give the same outputs as inside the padded batch
    pred = model.predict(x, lengths)
    for b in (1, 2):
        alone = model.predict(x[b: b + 1, : lengths[b]], lengths[b: b + 1])
        torch.testing.assert_close(alone["logits"][0], pred["logits"][b], atol=1e-5, rtol=1e-4)
    # garbage in the padding changes nothing
    noisy = x.clone()
    noisy[1, 4:] = 1e3
    torch.testing.assert_close(model.predict(noisy, lengths)["logits"], pred["logits"], atol=1e-5, rtol=1e-4)
    assert torch.allclose(pred["probs"].sum(-1), torch.ones(3))
    if head == "attention":
        att = pred["attention"]
        assert att.shape == (3, 7)
        assert torch.allclose(att.sum(-1), torch.ones(3)) and (att[1, 4:] == 0).all()
    assert model.training  # predict restored the mode


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_outputs_and_last_step(cell, bidirectional):
    torch.manual_seed(0)
    enc = SequenceEncoder(D, cell=cell, hidden=8, layers=2, bidirectional=bidirectional, input_proj=6,
                          input_norm=True).eval()
    x, lengths = _batch()
    out = enc(x, lengths)
    dirs = 2 if bidirectional else 1
    assert out.outputs.shape == (3, 7, 8 * dirs) and out.last.shape == (3, 8 * dirs)
    assert out.state.shape == (dirs, 3, 8)
    assert (out.outputs[1, 4:] == 0).all() and (out.outputs[2, 1:] == 0).all()
    torch.testing.assert_close(out.last[:, :8], out.outputs[torch.arange(3), lengths - 1, :8])
    if bidirectional:
        torch.testing.assert_close(out.last[:, 8:], out.outputs[:, 0, 8:])
    # the last step of a clip alone is the full-length last step
    alone = enc(x[1:2, :4])
    torch.testing.assert_close(alone.last[0], out.last[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone.outputs[0], out.outputs[1, :4], atol=1e-5, rtol=1e-4)


def test_bidirectional_matches_torch_on_full_length_clips():
    """With no padding, our per-direction modules compute what a fused bidirectional nn.LSTM computes."""
    torch.manual_seed(0)
    enc = SequenceEncoder(D, cell="lstm", hidden=8, layers=2, bidirectional=True).eval()
    ref = nn.LSTM(D, 8, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for i in range(2):
            stack = enc.stacks[0]
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{i}").copy_(getattr(stack.fwd[i], f"{name}_l0"))
                getattr(ref, f"{name}_l{i}_reverse").copy_(getattr(stack.bwd[i], f"{name}_l0"))
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(enc(x).outputs, ref(x)[0], atol=1e-5, rtol=1e-4)


def test_reverse_padded_is_an_involution():
    x = torch.arange(8.0).reshape(2, 4, 1)
    lengths = torch.tensor([4, 2])
    r = reverse_padded(x, lengths)
    assert r[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_padded(r, lengths), x)


def test_hidden_sizes_stack_and_keras_preset():
    cfg = resolve_preset({"preset": "keras_cnn_rnn"})
    assert cfg.cell == "gru" and cfg.hidden_sizes == [16, 8] and cfg.head_dropout == 0.4
    model = build_model(cfg, input_dim=D, num_classes=5)
    stacks = model.encoder.stacks
    assert [s.rnn.hidden_size for s in stacks] == [16, 8] and isinstance(stacks[0].rnn, nn.GRU)
    assert isinstance(model.mlp[0], nn.Linear) and model.mlp[0].out_features == 8
    assert isinstance(model.mlp[1], nn.ReLU) and model.fc.out_features == 5 and model.dropout.p == 0.4
    x, lengths = _batch()
    assert model.predict(x, lengths)["probs"].shape == (3, 5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_frame_labeler(cell, bidirectional):
    torch.manual_seed(0)
    model = build_model(_cfg(task="frames", cell=cell, bidirectional=bidirectional, layers=2), input_dim=D,
                        num_classes=4)
    assert isinstance(model, FrameLabeler) and model.task == "frames"
    x, lengths = _batch()
    targets = torch.randint(0, 4, (3, 7))
    targets[1, 4:] = -100
    loss = model.loss(x, lengths, {"frame_labels": targets})
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # the loss ignores padded steps whatever their targets say
    other = targets.clone()
    other[2, 1:] = 3
    torch.testing.assert_close(model.loss(x, lengths, {"frame_labels": other}).detach(), loss.detach())
    pred = model.predict(x, lengths)
    assert pred["logits"].shape == (3, 7, 4) and pred["preds"].shape == (3, 7)
    assert (pred["preds"][1, 4:] == -100).all()
    alone = model.predict(x[1:2, :4], lengths[1:2])
    torch.testing.assert_close(alone["logits"][0], pred["logits"][1, :4], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_reference_cells_reproduce_torch(cls, bidirectional, batch_first):
    torch.manual_seed(0)
    module = cls(5, 6, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    x = torch.randn(3, 4, 5)
    dirs = 2 if bidirectional else 1
    hx = torch.randn(2 * dirs, 3 if batch_first else 4, 6)
    if cls is nn.LSTM:
        hx = (hx, torch.randn_like(hx))
    with torch.no_grad():
        want = module(x, hx)
    got = reference_forward(module, x, hx)
    torch.testing.assert_close(got.output, want[0], atol=1e-5, rtol=1e-4)
    if cls is nn.LSTM:
        torch.testing.assert_close(got.h_n, want[1][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got.c_n, want[1][1], atol=1e-5, rtol=1e-4)
    else:
        torch.testing.assert_close(got.h_n, want[1], atol=1e-5, rtol=1e-4)
    assert len(got.traces) == 2 * dirs
    assert [t.direction for t in got.traces[:dirs]] == ["forward", "backward"][:dirs]


def test_reference_relu_rnn_and_no_bias():
    torch.manual_seed(0)
    module = nn.RNN(5, 6, nonlinearity="relu", bias=False, batch_first=True)
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(reference_forward(module, x).output, module(x)[0].detach(), atol=1e-5, rtol=1e-4)


def test_presets_registry_and_resolution():
    assert {"lrcn", "s2vt", "sa_lstm", "keras_cnn_rnn"} <= set(list_presets())
    lrcn = resolve_preset({"preset": "lrcn"})
    assert (lrcn.cell, lrcn.head, lrcn.task) == ("lstm", "last", "classify")
    # explicit user keys win over the preset
    assert resolve_preset({"preset": "lrcn", "cell": "gru", "hidden": 32}).cell == "gru"
    assert resolve_preset({"preset": "sa_lstm"}).decoder == "attention"
    assert resolve_preset({"preset": "s2vt"}).decoder == "s2vt"
    assert resolve_preset({}).preset == ""
    with pytest.raises(ConfigError, match="model.preset") as err:
        resolve_preset({"preset": "nope"})
    assert "lrcn" in str(err.value)
    with pytest.raises(ConfigError, match="model.hidden"):
        resolve_preset({"preset": "lrcn", "hidden": 0})
    with pytest.raises(ConfigError, match="model.cel"):
        resolve_preset({"cel": "gru"})


def test_register_custom_preset():
    @register_preset("test_tiny_gru", head_hidden=(4,))
    def test_tiny_gru():
        return {"cell": "gru", "hidden": 6}

    cfg = resolve_preset({"preset": "test_tiny_gru"})
    model = build_model(cfg, input_dim=D, num_classes=2)
    assert model.encoder.stacks[0].rnn.hidden_size == 6 and model.mlp[0].out_features == 4
    assert get_preset("test_tiny_gru").fields == {"cell": "gru", "hidden": 6}
    with pytest.raises(ConfigError, match="unknown ModelConfig fields"):
        register_preset("bad")(lambda: {"hiden": 3})


def test_build_model_errors():
    with pytest.raises(ConfigError, match="model.task"):
        build_model(_cfg(), input_dim=D, num_classes=0)
    with pytest.raises(ConfigError, match="model.task"):
        build_model(_cfg(task="caption"), input_dim=D)
    with pytest.raises(ConfigError, match="model.preset"):
        build_model(_cfg(preset="nope"), input_dim=D, num_classes=2)
    with pytest.raises(ConfigError, match="model.layers"):
        build_model(_cfg(hidden_sizes=[4, 4], layers=3), input_dim=D, num_classes=2)
    model = build_model(_cfg(), input_dim=D, num_classes=2)
    with pytest.raises(ValueError, match="lengths"):
        model(torch.randn(2, 5, D), torch.tensor([5, 6]))
    with pytest.raises(ValueError, match=r"\(B, T, D=12\)"):
        model(torch.randn(2, 5, 3), None)


def test_build_model_is_deterministic_in_structure():
    cfg = _cfg(cell="gru", layers=2, bidirectional=True, head="attention")
    a = build_model(cfg, input_dim=D, num_classes=3)
    b = build_model(cfg, input_dim=D, num_classes=3)
    b.load_state_dict(a.state_dict())  # strict
    x, lengths = _batch()
    torch.testing.assert_close(a.predict(x, lengths)["logits"], b.predict(x, lengths)["logits"])


def test_tiny_classifier_overfits():
    torch.manual_seed(0)
    x = torch.randn(6, 8, D)
    lengths = torch.tensor([8, 6, 5, 8, 3, 7])
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    model = build_model(_cfg(cell="lstm", hidden=16), input_dim=D, num_classes=3)
    assert isinstance(model, ClipClassifier)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(60):
        opt.zero_grad()
        loss = model.loss(x, lengths, {"label": labels})
        loss.backward()
        opt.step()
    assert torch.equal(model.predict(x, lengths)["preds"], labels)
    assert loss.item() < 0.1
