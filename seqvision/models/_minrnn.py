"""Minimal RNN cells trained in parallel over time: minGRU and minLSTM.

Feng, Tung, Ahmed, Bengio, Hajimirsadeghi (2024), "Were RNNs All We Needed?", arXiv:2410.01201. The gates depend
only on the input ``x_t``, never on ``h_{t-1}``, so the recurrence is linear in ``h``::

    minGRU:  z_t = sigmoid(W_z x_t + b_z)            (update)
             c_t = g(W_h x_t + b_h)                  (candidate)
             h_t = (1 - z_t) * h_{t-1} + z_t * c_t
    minLSTM: f_t = sigmoid(W_f x_t + b_f), i_t = sigmoid(W_i x_t + b_i), c_t = g(W_h x_t + b_h)
             f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t)   (normalised: the scale of h is time-independent)
             h_t = f'_t * h_{t-1} + i'_t * c_t

with ``g(x) = x + 0.5`` for ``x >= 0`` and ``sigmoid(x)`` otherwise (positive, so the candidates have a log).
``h_t = a_t h_{t-1} + b_t`` is then solved for all ``t`` at once by the log-space scan of Heinsen (2023),
"Efficient Parallelization of a Ubiquitous Sequential Computation", arXiv:2311.06281::

    a*_t = cumsum(log a)_t,   h_t = exp(a*_t + logcumsumexp(log b - a*)_t)   (+ exp(a*_t) * h_0)

O(T) work and memory, O(log T) depth on a GPU. The initial state enters linearly (``exp(a*_t) * h_0``), so it may
have any sign (a captioner's bridge or a streamed state). The scan runs in float32 (float64 stays float64), also
under autocast: logcumsumexp in bf16 would lose the state. Its error relative to a float64 step-by-step run grows
with ``|a*_T|`` times float32's epsilon (``benchmarks/seq_len.py`` prints it per T).

Each cell has a parallel ``forward(x (B, T, D), h0=None) -> (B, T, H)`` and a sequential
``step(x_t (B, D), h (B, H)) -> h_new (B, H)`` (streaming, decoding); :class:`MinRNN` stacks cells with dropout
between layers and has the call signature of a batch-first ``nn.GRU``: ``(x, h0 (L, B, H)) -> (out, h_n)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MinGRUCell", "MinLSTMCell", "MinRNN", "MIN_CELLS", "scan_log", "g", "log_g"]


def g(x: torch.Tensor) -> torch.Tensor:
    """The minGRU paper's positive activation: ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` below."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """``log(g(x))`` computed without forming ``g`` (stable for very negative ``x``)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def scan_log(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Solve ``h_t = a_t * h_{t-1} + b_t`` for every t at once (Heinsen 2023, log space).

    Args:
        log_a: ``(B, T, H)`` log of the coefficients (``a_t > 0``).
        log_b: ``(B, T, H)`` log of the (positive) inputs.
        h0: ``(B, H)`` state before step 0, any sign; None = zeros.

    Returns:
        ``(B, T, H)`` all states ``h_1 .. h_T``, in the dtype of ``log_a``.
    """
    a_star = torch.cumsum(log_a, dim=1)  # (B, T, H)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))  # (B, T, H)
    if h0 is not None:
        h = h + torch.exp(a_star) * h0[:, None].to(h.dtype)
    return h


class MinGRUCell(nn.Module):
    """One minGRU layer, one direction. Weights: ``linear`` maps ``D -> 2H`` as ``[update z | candidate]``.

    Args:
        input_size: D.
        hidden_size: H.
        bias: biases in the input projection.
    """

    gate_names = ("update", "candidate")

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size, bias=bias)

    def _pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.linear(x)
        k = k.to(_compute_dtype(k))
        k_z, k_h = k.chunk(2, dim=-1)  # (..., H) each
        return k_z, k_h

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """All states ``(B, T, H)`` of ``x (B, T, D)`` from ``h0 (B, H)`` (None = zeros), by the parallel scan."""
        k_z, k_h = self._pre(x)  # (B, T, H)
        log_keep = -F.softplus(k_z)  # log(1 - z)
        log_z = -F.softplus(-k_z)  # log z
        return scan_log(log_keep, log_z + log_g(k_h), h0)

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: ``x_t (B, D)``, ``h (B, H)`` -> ``h_new (B, H)`` (the sequential form, for streaming)."""
        k_z, k_h = self._pre(x_t)  # (B, H)
        z = torch.sigmoid(k_z)
        return (1 - z) * h.to(z.dtype) + z * g(k_h)

    def gates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"update": z, "candidate": g(.)}``, each ``(B, T, H)``, for inspection."""
        k_z, k_h = self._pre(x)
        return {"update": torch.sigmoid(k_z), "candidate": g(k_h)}


class MinLSTMCell(nn.Module):
    """One minLSTM layer, one direction. Weights: ``linear`` maps ``D -> 3H`` as ``[forget | input | candidate]``.

    Args:
        input_size: D.
        hidden_size: H.
        bias: biases in the input projection.
    """

    gate_names = ("forget", "input", "candidate")

    def __init__(self, input_size: int, hidden_size: int, *, bias: bool = True):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size, 3 * hidden_size, bias=bias)

    def _pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.linear(x)
        k = k.to(_compute_dtype(k))
        return k.chunk(3, dim=-1)  # (..., H) each: forget, input, candidate pre-activations

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """All states ``(B, T, H)`` of ``x (B, T, D)`` from ``h0 (B, H)`` (None = zeros), by the parallel scan."""
        k_f, k_i, k_h = self._pre(x)  # (B, T, H)
        diff = F.softplus(-k_f) - F.softplus(-k_i)  # log(i / f)
        log_f = -F.softplus(diff)  # log f' = log(f / (f + i))
        log_i = -F.softplus(-diff)  # log i' = log(i / (f + i))
        return scan_log(log_f, log_i + log_g(k_h), h0)

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: ``x_t (B, D)``, ``h (B, H)`` -> ``h_new (B, H)`` (the sequential form, for streaming)."""
        gates = self._gates(*self._pre(x_t))
        return gates["forget"] * h.to(gates["forget"].dtype) + gates["input"] * gates["candidate"]

    @staticmethod
    def _gates(k_f, k_i, k_h) -> dict[str, torch.Tensor]:
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return {"forget": f / (f + i), "input": i / (f + i), "candidate": g(k_h)}

    def gates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised ``{"forget": f', "input": i', "candidate": g(.)}`` (what the recurrence applies), each
        ``(B, T, H)``."""
        return self._gates(*self._pre(x))


MIN_CELLS = {"mingru": MinGRUCell, "minlstm": MinLSTMCell}


class MinRNN(nn.Module):
    """A stack of minGRU / minLSTM layers (one direction), called like a batch-first ``nn.GRU``.

    Args:
        cell: ``"mingru"`` or ``"minlstm"``.
        input_size: D.
        hidden_size: H (every layer).
        num_layers: stacked layers; layer ``l > 0`` reads layer ``l - 1``'s states.
        dropout: dropout on the states between layers (training only), as ``nn.GRU``'s ``dropout``.

    ``forward(x (B, T, D), h0 (L, B, H) | None) -> (out (B, T, H), h_n (L, B, H))``: parallel over time.
    ``step(x_t (B, D), h (L, B, H) | None) -> (y (B, H), h_new (L, B, H))``: one time step, same result.
    ``batch_first`` is always True (read by code that handles ``nn.RNNBase`` alike).

    Example:
        >>> rnn = MinRNN("mingru", 8, 16, num_layers=2)
        >>> out, h_n = rnn(torch.randn(3, 5, 8))
        >>> out.shape, h_n.shape
        (torch.Size([3, 5, 16]), torch.Size([2, 3, 16]))
    """

    batch_first = True
    bidirectional = False

    def __init__(self, cell: str, input_size: int, hidden_size: int, *, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if cell not in MIN_CELLS:
            raise ValueError(f"cell must be one of {sorted(MIN_CELLS)}, got {cell!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.mode = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.cells = nn.ModuleList(MIN_CELLS[cell](s, hidden_size) for s in sizes)
        self.drop = nn.Dropout(dropout if num_layers > 1 else 0.0)

    def _check_h(self, h: torch.Tensor | None, batch: int) -> None:
        if h is not None and h.shape != (self.num_layers, batch, self.hidden_size):
            raise ValueError(f"h0 must be (layers={self.num_layers}, B={batch}, H={self.hidden_size}), "
                             f"got {tuple(h.shape)}")

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be (B, T, D={self.input_size}), got {tuple(x.shape)}")
        self._check_h(h0, x.shape[0])
        finals = []
        for i, cell in enumerate(self.cells):
            if i > 0:
                x = self.drop(x)
            x = cell(x, None if h0 is None else h0[i])  # (B, T, H)
            finals.append(x[:, -1])
        return x, torch.stack(finals)  # (B, T, H), (L, B, H)

    def step(self, x_t: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step of every layer: ``x_t (B, D)``, ``h (L, B, H)`` (None = zeros) -> ``(y (B, H), h_new)``."""
        if x_t.dim() != 2 or x_t.shape[-1] != self.input_size:
            raise ValueError(f"x_t must be (B, D={self.input_size}), got {tuple(x_t.shape)}")
        B = x_t.shape[0]
        self._check_h(h, B)
        if h is None:
            h = x_t.new_zeros(self.num_layers, B, self.hidden_size, dtype=_compute_dtype(x_t))
        new = []
        for i, cell in enumerate(self.cells):
            if i > 0:
                x_t = self.drop(x_t)
            x_t = cell.step(x_t, h[i])  # (B, H)
            new.append(x_t)
        return x_t, torch.stack(new)  # (B, H), (L, B, H)

    def extra_repr(self) -> str:
        return f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
