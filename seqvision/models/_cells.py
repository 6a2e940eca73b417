"""Reference cells written out step by step, with named gates; they load the weights of a fused
``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and reproduce its output to float tolerance. For inspection only
(a Python loop over time: slow).

Equations (PyTorch's, gate order in the weights in brackets):
    RNN:  h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM [i, f, g, o]: i = s(.), f = s(.), g = tanh(.) (input modulation / cell candidate), o = s(.)
          c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
    GRU  [r, z, n]: r = s(.), z = s(.), n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h_t = (1 - z) * n + z * h

The minimal cells of Feng et al. 2024 ("Were RNNs All We Needed?", arXiv:2410.01201), from a :class:`MinRNN`'s
weights (``linear`` of each layer, blocks in brackets), written in linear space without any scan, so they are an
independent check of the log-space parallel scan in ``_minrnn.py``; g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0):
    minGRU  [z, h~]:     z = s(.), c = g(.);  h_t = (1 - z) * h_{t-1} + z * c
    minLSTM [f, i, h~]:  f = s(.), i = s(.), c = g(.);  f' = f / (f + i), i' = i / (f + i);  h_t = f' h_{t-1} + i' c
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ._minrnn import MinRNN

__all__ = ["reference_forward", "ReferenceOutput", "LayerTrace", "GATE_NAMES"]

GATE_NAMES = {
    "rnn": ("preactivation",),
    "lstm": ("input", "forget", "cell_candidate", "output"),
    "gru": ("reset", "update", "candidate"),
    "mingru": ("update", "candidate"),
    "minlstm": ("forget", "input", "candidate"),  # normalised f', i' (what the recurrence applies)
}


@dataclass
class LayerTrace:
    """Per-step values of one layer and direction, in the input's time order: ``(B, T, H)`` each."""

    layer: int
    direction: str  # "forward" | "backward"
    gates: dict[str, torch.Tensor] = field(default_factory=dict)
    hidden: torch.Tensor | None = None
    cell: torch.Tensor | None = None  # LSTM only


@dataclass
class ReferenceOutput:
    """Same as the fused module's ``(output, h_n[, c_n])`` plus the per-layer traces."""

    output: torch.Tensor  # (B, T, H*dirs) (batch-first) or (T, B, H*dirs), as the module
    h_n: torch.Tensor  # (layers*dirs, B, H)
    c_n: torch.Tensor | None
    traces: list[LayerTrace]


def _kind(module: nn.Module) -> str:
    if isinstance(module, MinRNN):
        return module.mode
    if isinstance(module, nn.LSTM):
        return "lstm"
    if isinstance(module, nn.GRU):
        return "gru"
    if isinstance(module, nn.RNN):
        return "rnn"
    raise TypeError(f"expected nn.RNN, nn.LSTM, nn.GRU or MinRNN, got {type(module).__name__}")


def _run_direction(kind: str, module: nn.RNNBase, suffix: str, x: torch.Tensor, h: torch.Tensor,
                   c: torch.Tensor | None, reverse: bool):
    """Run one layer/direction over ``x (B, T, D)``; returns outputs, h, c and the gate traces (time order)."""
    w_ih = getattr(module, f"weight_ih_{suffix}")
    w_hh = getattr(module, f"weight_hh_{suffix}")
    b_ih = getattr(module, f"bias_ih_{suffix}", None) if module.bias else None
    b_hh = getattr(module, f"bias_hh_{suffix}", None) if module.bias else None
    gi_all = x @ w_ih.T  # (B, T, G*H): input contributions for every step at once
    if b_ih is not None:
        gi_all = gi_all + b_ih
    T = x.shape[1]
    steps = range(T - 1, -1, -1) if reverse else range(T)
    names = GATE_NAMES[kind]
    gates = {n: [None] * T for n in names}
    hs, cs = [None] * T, [None] * T
    for t in steps:
        gh = h @ w_hh.T  # (B, G*H)
        if b_hh is not None:
            gh = gh + b_hh
        gi = gi_all[:, t]
        if kind == "rnn":
            pre = gi + gh
            h = torch.tanh(pre) if module.nonlinearity == "tanh" else torch.relu(pre)
            gates["preactivation"][t] = pre
        elif kind == "lstm":
            i, f, g, o = (gi + gh).chunk(4, dim=-1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            gates["input"][t], gates["forget"][t], gates["cell_candidate"][t], gates["output"][t] = i, f, g, o
            cs[t] = c
        else:
            ir, iz, inn = gi.chunk(3, dim=-1)
            hr, hz, hn = gh.chunk(3, dim=-1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(inn + r * hn)
            h = (1 - z) * n + z * h
            gates["reset"][t], gates["update"][t], gates["candidate"][t] = r, z, n
        hs[t] = h
    stack = lambda seq: torch.stack(seq, dim=1)  # noqa: E731  list of (B, H) -> (B, T, H)
    return (stack(hs), h, c, {n: stack(v) for n, v in gates.items()}, stack(cs) if kind == "lstm" else None)


def _run_min_layer(kind: str, linear: nn.Linear, x: torch.Tensor, h: torch.Tensor):
    """One minGRU/minLSTM layer over ``x (B, T, D)`` from ``h (B, H)``, step by step in linear space."""
    pre = linear(x)  # (B, T, G*H): the gates read only the input
    sig = torch.sigmoid
    act = lambda v: torch.where(v >= 0, v + 0.5, sig(v))  # noqa: E731  g of the minGRU paper
    names = GATE_NAMES[kind]
    gates = {n: [] for n in names}
    hs = []
    for t in range(x.shape[1]):
        if kind == "mingru":
            kz, kh = pre[:, t].chunk(2, dim=-1)
            z, c = sig(kz), act(kh)
            h = (1 - z) * h + z * c
            gates["update"].append(z)
            gates["candidate"].append(c)
        else:
            kf, ki, kh = pre[:, t].chunk(3, dim=-1)
            f, i, c = sig(kf), sig(ki), act(kh)
            f, i = f / (f + i), i / (f + i)
            h = f * h + i * c
            gates["forget"].append(f)
            gates["input"].append(i)
            gates["candidate"].append(c)
        hs.append(h)
    stack = lambda seq: torch.stack(seq, dim=1)  # noqa: E731  list of (B, H) -> (B, T, H)
    return stack(hs), h, {n: stack(v) for n, v in gates.items()}


def _reference_min(module: MinRNN, seq: torch.Tensor, h0: torch.Tensor | None) -> ReferenceOutput:
    B, H = seq.shape[0], module.hidden_size
    traces, h_n = [], []
    inp = seq
    for layer, cell in enumerate(module.cells):
        h = seq.new_zeros(B, H) if h0 is None else h0[layer]
        inp, h, gates = _run_min_layer(module.mode, cell.linear, inp, h)
        h_n.append(h)
        traces.append(LayerTrace(layer, "forward", gates, inp, None))
    return ReferenceOutput(inp, torch.stack(h_n), None, traces)


@torch.no_grad()
def reference_forward(module: nn.RNNBase, x: torch.Tensor, hx=None) -> ReferenceOutput:
    """Run ``module``'s weights through the step-by-step reference cells.

    Args:
        module: an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (any layers, bidirectional, batch_first or not;
            ``proj_size`` not supported), or a :class:`MinRNN` (minGRU / minLSTM, one direction).
            Inter-layer dropout is not applied (eval semantics).
        x: input as the module takes it (batched).
        hx: initial state as the module takes it (``h0`` or ``(h0, c0)``), default zeros.

    Returns:
        :class:`ReferenceOutput` whose ``output``/``h_n``/``c_n`` match ``module(x, hx)`` to float tolerance.
    """
    kind = _kind(module)
    if getattr(module, "proj_size", 0):
        raise ValueError("reference_forward does not support LSTM proj_size > 0")
    if x.dim() != 3:
        raise ValueError(f"x must be batched (3 dims), got shape {tuple(x.shape)}")
    if isinstance(module, MinRNN):
        return _reference_min(module, x, hx)
    seq = x if module.batch_first else x.transpose(0, 1)  # (B, T, D)
    B = seq.shape[0]
    dirs = 2 if module.bidirectional else 1
    H = module.hidden_size
    L = module.num_layers
    if hx is None:
        h0 = seq.new_zeros(L * dirs, B, H)
        c0 = seq.new_zeros(L * dirs, B, H) if kind == "lstm" else None
    elif kind == "lstm":
        h0, c0 = hx
    else:
        h0, c0 = hx, None
    traces, h_n, c_n = [], [], []
    inp = seq
    for layer in range(L):
        outs = []
        for d in range(dirs):
            suffix = f"l{layer}" + ("_reverse" if d == 1 else "")
            k = layer * dirs + d
            out, h, c, gates, cells = _run_direction(kind, module, suffix, inp, h0[k],
                                                     c0[k] if c0 is not None else None, reverse=d == 1)
            outs.append(out)
            h_n.append(h)
            if c is not None:
                c_n.append(c)
            traces.append(LayerTrace(layer, "backward" if d == 1 else "forward", gates, out, cells))
        inp = torch.cat(outs, dim=-1)  # (B, T, H*dirs)
    output = inp if module.batch_first else inp.transpose(0, 1)
    return ReferenceOutput(output, torch.stack(h_n), torch.stack(c_n) if c_n else None, traces)
