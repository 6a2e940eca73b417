"""inspect(): gates and states per layer/direction/step from the reference cells, attention weights."""

import numpy as np
import pytest
import torch

from seqvision.config import ModelConfig
from seqvision.data.vocab import Vocabulary
from seqvision.models import build_model, inspect

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
