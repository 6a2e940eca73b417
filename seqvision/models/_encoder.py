"""Sequence encoder over per-frame features: fused torch RNN kernels, exact for variable lengths.

Padding is handled without packing (``pack_padded_sequence`` measured ~6x slower than padded on CPU, see
``benchmarks/seq_len.py``):

* forward direction: a padded batch is exact for the real steps (step t only sees steps <= t); the final state
  is gathered at ``lengths - 1``;
* backward direction: each sequence is reversed *within its length* by a gather (padding stays in place), run
  through a unidirectional module, and reversed back. So a bidirectional layer is two fused unidirectional
  modules (``fwd[i]``, ``bwd[i]``) and a bidirectional stack is built layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch
from einops import rearrange, repeat
from torch import nn

from ._minrnn import MIN_CELLS, MinRNN

__all__ = ["SequenceEncoder", "EncoderOutput", "reverse_padded", "lengths_to_mask", "check_lengths"]

_RNN_CLASSES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class EncoderOutput:
    """Result of :class:`SequenceEncoder`.

    Attributes:
        outputs: ``(B, T, H*dirs)`` top-layer output at every step, zero at padded steps.
        last: ``(B, H*dirs)`` top-layer output at each clip's true end: forward at ``lengths-1``, backward
            (second half) at step 0.
        state: ``(dirs, B, H)`` the same final hidden state, one row per direction (what a decoder starts from).
        mask: ``(B, T)`` bool, True on real steps.
    """

    outputs: torch.Tensor
    last: torch.Tensor
    state: torch.Tensor
    mask: torch.Tensor

    def __repr__(self) -> str:
        return (f"EncoderOutput(outputs={tuple(self.outputs.shape)}, last={tuple(self.last.shape)}, "
                f"state={tuple(self.state.shape)})")


def check_lengths(lengths: torch.Tensor | None, batch: int, steps: int, device: torch.device) -> torch.Tensor:
    """``lengths`` as a long tensor on ``device``; None means every clip has ``steps`` frames.

    Raises ValueError if the shape is wrong or (when on CPU, where it costs no device sync) a length is
    outside ``[1, T]``.
    """
    if lengths is None:
        return torch.full((batch,), steps, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape (B,)=({batch},), got {tuple(lengths.shape)}")
    if lengths.device.type == "cpu" and batch > 0:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > steps:
            raise ValueError(f"lengths must be in [1, T={steps}], got min {lo}, max {hi}")
    return lengths.to(device=device, dtype=torch.long)


def lengths_to_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, T)`` bool mask, True where ``t < lengths[b]``."""
    t = torch.arange(steps, device=lengths.device)
    return t[None, :] < lengths[:, None]  # (B, T)


def _reverse_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, T)`` gather index reversing each sequence within its length; padded steps map to themselves."""
    t = torch.arange(steps, device=lengths.device)[None, :]  # (1, T)
    rev = lengths[:, None] - 1 - t  # (B, T)
    return torch.where(rev >= 0, rev, t)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, repeat(index, "b t -> b t d", d=x.shape[-1]))  # (B, T, D)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x (B, T, D)`` within its length; padded steps stay where they are.

    Its own inverse. Example: ``[a, b, c, pad]`` with length 3 -> ``[c, b, a, pad]``.
    """
    return _gather_time(x, _reverse_index(lengths.to(x.device), x.shape[1]))


def make_rnn(cell: str, input_size: int, hidden: int, *, num_layers: int = 1, dropout: float = 0.0,
             nonlinearity: str = "tanh", bidirectional: bool = False) -> nn.RNNBase:
    """A batch-first ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, or a :class:`MinRNN` (``"mingru"`` / ``"minlstm"``,
    parallel over time, called like ``nn.GRU``; one direction only: bidirectional stacks are built by the caller)."""
    if cell in MIN_CELLS:
        if bidirectional:
            raise ValueError(f"make_rnn: cell {cell!r} is unidirectional; build the backward direction separately")
        return MinRNN(cell, input_size, hidden, num_layers=num_layers, dropout=dropout)
    kwargs = dict(num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
                  dropout=dropout if num_layers > 1 else 0.0)
    if cell == "rnn":
        kwargs["nonlinearity"] = nonlinearity
    return _RNN_CLASSES[cell](input_size, hidden, **kwargs)


_CELL_FNS = {"LSTM": torch.lstm_cell, "GRU": torch.gru_cell, "RNN_TANH": torch.rnn_tanh_cell,
             "RNN_RELU": torch.rnn_relu_cell}


def rnn_step(rnn: nn.RNNBase, x: torch.Tensor, state=None):
    """One time step of a unidirectional batch-first ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` through its cell
    functions (``torch.lstm_cell``, ...): ``x (B, D)`` -> ``(out (B, H), state)`` with ``state`` in the module's
    own format (``h (L, B, H)``, or ``(h, c)`` for an LSTM; None = zeros). Inference only (no inter-layer
    dropout). Calling the fused module with T=1 instead costs ~20 ms per call on CPU (oneDNN builds its RNN
    primitive on every call), ~100x the arithmetic of a small LSTM step."""
    L, H = rnn.num_layers, rnn.hidden_size
    lstm = rnn.mode == "LSTM"
    if state is None:
        zeros = x.new_zeros(L, x.shape[0], H)
        state = (zeros, zeros) if lstm else zeros
    cell = _CELL_FNS[rnn.mode]
    hs, cs = [], []
    for k in range(L):
        w = [getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")]
        b = [getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")] if rnn.bias else [None, None]
        if lstm:
            h, c = cell(x, (state[0][k], state[1][k]), w[0], w[1], b[0], b[1])  # (B, H) each
            cs.append(c)
        else:
            h = cell(x, state[k], w[0], w[1], b[0], b[1])  # (B, H)
        hs.append(h)
        x = h
    h_all = torch.stack(hs)  # (L, B, H)
    return x, ((h_all, torch.stack(cs)) if lstm else h_all)


class _Stack(nn.Module):
    """``num_layers`` layers of one width. Unidirectional: one fused multi-layer module (``rnn``).
    Bidirectional: per layer a forward module ``fwd[i]`` and a backward module ``bwd[i]``."""

    def __init__(self, cell: str, input_size: int, hidden: int, *, num_layers: int, bidirectional: bool,
                 dropout: float, nonlinearity: str):
        super().__init__()
        self.hidden = hidden
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.out_dim = hidden * (2 if bidirectional else 1)
        if not bidirectional:
            self.rnn = make_rnn(cell, input_size, hidden, num_layers=num_layers, dropout=dropout,
                                nonlinearity=nonlinearity)
        else:
            sizes = [input_size] + [2 * hidden] * (num_layers - 1)
            self.fwd = nn.ModuleList(make_rnn(cell, s, hidden, nonlinearity=nonlinearity) for s in sizes)
            self.bwd = nn.ModuleList(make_rnn(cell, s, hidden, nonlinearity=nonlinearity) for s in sizes)
            self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, rev_index: torch.Tensor | None, *, full: bool = False) -> torch.Tensor:
        if not self.bidirectional:
            out, _ = self.rnn(x)  # (B, T, H)
            return out
        # every clip full length: a plain flip over time is the per-sequence reversal
        rev = (lambda t: t.flip(1)) if full else (lambda t: _gather_time(t, rev_index))  # noqa: E731
        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd)):
            if i > 0:
                x = self.drop(x)
            f, _ = fwd(x)  # (B, T, H)
            b, _ = bwd(rev(x))  # (B, T, H) in reversed time
            x = torch.cat([f, rev(b)], dim=-1)  # (B, T, 2H)
        return x

    def step(self, x: torch.Tensor, state):
        """One time step of a unidirectional stack: ``x (B, D)`` -> ``(B, H)`` and the new state (None = zeros)."""
        cell_step = getattr(self.rnn, "step", None)
        if cell_step is not None:  # cells with their own per-step update (minGRU / minLSTM)
            return cell_step(x, state)
        return rnn_step(self.rnn, x, state)


class SequenceEncoder(nn.Module):
    """Configurable RNN over per-frame features ``(B, T, D)`` with exact variable-length handling.

    Args:
        input_dim: D, the feature width.
        cell: ``"rnn"`` (vanilla, ``nonlinearity`` tanh/relu), ``"lstm"``, ``"gru"``, or the parallel-in-time
            ``"mingru"`` / ``"minlstm"`` of Feng et al. 2024 (:mod:`seqvision.models._minrnn`; the same padding
            handling applies: their scan is causal, the backward direction reads each clip reversed).
        hidden: hidden size H of every layer (ignored when ``hidden_sizes`` is given).
        layers: number of stacked layers.
        hidden_sizes: per-layer widths, e.g. ``[16, 8]``: stacked single-layer modules of different widths.
        bidirectional: run a backward direction too (output width 2H).
        dropout: dropout between layers (training only).
        input_proj: if > 0, a linear projection of the features to this width before the RNN. Learned, unless
            :meth:`set_input_basis` fixes it (the trainer does, with ``model.standardize``: the training split's
            top principal components).
        input_norm: LayerNorm on the input features (before the projection).

    Feature standardisation: every path into the RNN (``forward``, ``step``, inspection) first maps the features
    to ``(x - feature_mean) / feature_std`` with the per-dimension buffers ``feature_mean`` / ``feature_std``
    ``(D,)`` float32. They are identity (0 / 1) until :meth:`set_feature_stats` stores the training split's
    statistics (the trainer does this once, from the feature cache); being buffers, they travel in the
    ``state_dict`` and so in every checkpoint. Without them a CNN's features (random-init ResNet: per-dimension
    means ~5x the spread, cosine 0.97 between unrelated frames) drive the gates into saturation and the model
    sees almost only a constant; see README "Learning from any encoder". A state dict from before the buffers
    existed loads as identity.

    Example:
        >>> enc = SequenceEncoder(64, cell="gru", hidden=32, layers=2, bidirectional=True)
        >>> out = enc(torch.randn(4, 10, 64), torch.tensor([10, 7, 3, 1]))
        >>> out.outputs.shape, out.last.shape
        (torch.Size([4, 10, 64]), torch.Size([4, 64]))
    """

    def __init__(self, input_dim: int, *, cell: str = "lstm", hidden: int = 256, layers: int = 1,
                 hidden_sizes: list[int] | tuple[int, ...] = (), bidirectional: bool = False, dropout: float = 0.0,
                 nonlinearity: str = "tanh", input_proj: int = 0, input_norm: bool = False):
        super().__init__()
        if cell not in _RNN_CLASSES and cell not in MIN_CELLS:
            raise ValueError(f"cell must be one of {sorted(_RNN_CLASSES) + sorted(MIN_CELLS)}, got {cell!r}")
        self.cell = cell
        self.input_dim = input_dim
        self.bidirectional = bidirectional
        self.dirs = 2 if bidirectional else 1
        self.register_buffer("feature_mean", torch.zeros(input_dim))  # (D,) set by set_feature_stats
        self.register_buffer("feature_std", torch.ones(input_dim))  # (D,)
        self.norm = nn.LayerNorm(input_dim) if input_norm else nn.Identity()
        self.proj = nn.Linear(input_dim, input_proj) if input_proj > 0 else nn.Identity()
        width = input_proj if input_proj > 0 else input_dim
        # (width, layers) per stack: one stack of `layers` when all widths agree, else one per width.
        plan = [(h, 1) for h in hidden_sizes] if hidden_sizes else [(hidden, layers)]
        stacks = []
        for h, n in plan:
            stacks.append(_Stack(cell, width, h, num_layers=n, bidirectional=bidirectional, dropout=dropout,
                                 nonlinearity=nonlinearity))
            width = stacks[-1].out_dim
        self.stacks = nn.ModuleList(stacks)
        self._init_input_weights(input_proj if input_proj > 0 else input_dim)
        self.drop = nn.Dropout(dropout)  # between stacks of different widths
        self.hidden = plan[-1][0]
        self.out_dim = width

    @torch.no_grad()
    def _init_input_weights(self, width: int) -> None:
        """First layer's input weights ~ U(+-1/sqrt(max(D, H))) (a fan-in init, as ``nn.Linear``'s) instead of
        PyTorch's U(+-1/sqrt(H)): with D = 5120 grid features and H = 128 the default gives gate pre-activations
        of std ~3.6 even on standardised inputs (saturated sigmoids, vanishing gradients); this gives <= ~0.6.
        Never larger than the default, so small inputs (D <= H) keep PyTorch's init."""
        for module, stack, _direction, offset in self.rnn_modules():
            if stack != 0 or offset != 0 or not isinstance(module, nn.RNNBase) or width <= module.hidden_size:
                continue
            bound = 1.0 / math.sqrt(width)
            nn.init.uniform_(module.weight_ih_l0, -bound, bound)

    @torch.no_grad()
    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-dimension feature statistics ``mean``, ``std`` ``(D,)`` (from the training split only).

        Dimensions whose ``std`` is below ``1e-6 * max(std)`` (dead ReLU channels, constant cells) get 1, so
        they are centred but never amplified. Raises ValueError if a shape is not ``(D,)`` or a value is not
        finite.
        """
        mean = torch.as_tensor(mean, dtype=torch.float32).detach().cpu()
        std = torch.as_tensor(std, dtype=torch.float32).detach().cpu()
        for name, t in (("mean", mean), ("std", std)):
            if t.shape != (self.input_dim,):
                raise ValueError(f"set_feature_stats: {name} must have shape (D,)=({self.input_dim},), "
                                 f"got {tuple(t.shape)}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"set_feature_stats: {name} has non-finite values")
        floor = 1e-6 * float(std.abs().max()) if std.numel() else 0.0
        std = torch.where(std > floor, std, torch.ones_like(std))
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    @torch.no_grad()
    def set_input_basis(self, basis: torch.Tensor, *, trainable: bool = False) -> None:
        """Make the input projection ``basis (k, D)`` float (bias 0): each row a direction of the standardised
        feature space, e.g. the training split's top-k principal components (PCA) scaled so the first has unit
        variance (the trainer's ``prepare_model`` does this when ``model.input_proj`` is k > 0).

        ``trainable=False`` freezes the projection (``requires_grad`` False; a fixed linear map like the
        standardisation, so no label-driven weights read the raw D dimensions). On 252 clips of 5120-D random
        Lite0 grid features a learned D->k projection or full-width RNN input weights memorise clip appearance
        (train loss ~0.003, test 0.83); the fixed top-128 components keep the directions shared by many frames
        and the RNN learns the motion in them (README "Learning from any encoder"). The weights travel in the
        ``state_dict`` like any Linear; a loaded model is not frozen (freezing is a training-time choice).

        Raises:
            ValueError: the encoder has no input projection (``input_proj`` 0), ``basis`` is not ``(k, D)``, or
                it has non-finite values.
        """
        if not isinstance(self.proj, nn.Linear):
            raise ValueError("set_input_basis: this encoder has no input projection (input_proj=0)")
        basis = torch.as_tensor(basis, dtype=torch.float32).detach()
        want = tuple(self.proj.weight.shape)
        if tuple(basis.shape) != want:
            raise ValueError(f"set_input_basis: basis must have shape (k, D)={want}, got {tuple(basis.shape)}")
        if not bool(torch.isfinite(basis).all()):
            raise ValueError("set_input_basis: basis has non-finite values")
        self.proj.weight.copy_(basis.to(self.proj.weight.device))
        self.proj.bias.zero_()
        self.proj.requires_grad_(trainable)

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., D)`` -> what the first RNN layer reads ``(..., D')``: standardise, LayerNorm, projection."""
        x = (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)
        return self.proj(self.norm(x))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the standardisation buffers existed: identity statistics
        for name, fill in (("feature_mean", 0.0), ("feature_std", 1.0)):
            if prefix + name not in state_dict:
                state_dict[prefix + name] = torch.full((self.input_dim,), fill)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        """Encode ``x (B, T, D)``; ``lengths (B,)`` real frames per clip (None: all ``T``)."""
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x must be (B, T, D={self.input_dim}), got {tuple(x.shape)}")
        B, T, _ = x.shape
        # Fast path when every clip is known (without a device sync) to fill T: no reversal, mask or gather.
        full = lengths is None or (torch.is_tensor(lengths) and lengths.device.type == "cpu" and B > 0
                                   and int(lengths.min()) == T)
        lengths = check_lengths(lengths, B, T, x.device)
        mask = lengths_to_mask(lengths, T)  # (B, T)
        rev_index = _reverse_index(lengths, T) if self.bidirectional and not full else None  # (B, T)
        h = self.embed_input(x)  # (B, T, D')
        for i, stack in enumerate(self.stacks):
            if i > 0:
                h = self.drop(h)
            h = stack(h, rev_index, full=full)  # (B, T, H*dirs)
        if full:
            outputs, last = h, h[:, -1]  # (B, T, H*dirs), (B, H*dirs)
        else:
            outputs = h.masked_fill(~mask[..., None], 0.0)  # (B, T, H*dirs)
            last = outputs.gather(1, repeat(lengths - 1, "b -> b 1 d", d=outputs.shape[-1]))[:, 0]  # (B, H*dirs)
        if self.bidirectional:
            H = self.hidden
            last = torch.cat([last[:, :H], outputs[:, 0, H:]], dim=-1)  # backward direction ends at step 0
        state = rearrange(last, "b (dirs h) -> dirs b h", dirs=self.dirs)  # (dirs, B, H)
        return EncoderOutput(outputs=outputs, last=last, state=state, mask=mask)

    def step(self, x: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """Advance a unidirectional encoder by one frame, carrying the state: O(1) work per frame.

        Feeding a clip's frames one at a time through ``step`` gives ``forward``'s ``outputs[:, t]`` (float
        tolerance), so a stream can be labelled online.

        Args:
            x: ``(B, D)`` float features of one frame per sequence.
            state: what the previous call returned (one entry per stack), or None to start from zeros.

        Returns:
            ``(out (B, H), state)``: the top-layer output at this step and the state for the next call.

        Raises:
            ValueError: the encoder is bidirectional (its backward direction reads the frames after t, so no
                output exists until the clip ends; train with ``bidirectional: false`` to stream), or ``x`` has
                the wrong shape.
        """
        if self.bidirectional:
            raise ValueError("SequenceEncoder.step: a bidirectional encoder cannot run online: its backward "
                             "direction needs every later frame before it can give an output; train a "
                             "unidirectional model (bidirectional: false) to stream")
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x must be (B, D={self.input_dim}), got {tuple(x.shape)}")
        states = list(state) if state is not None else [None] * len(self.stacks)
        h = self.embed_input(x)  # (B, D')
        for i, stack in enumerate(self.stacks):
            if i > 0:
                h = self.drop(h)
            h, states[i] = stack.step(h, states[i])  # (B, H)
        return h, tuple(states)

    def rnn_modules(self) -> list[tuple[nn.RNNBase, int, str, int]]:
        """``(module, stack index, direction, layer offset)`` for every fused module, in execution order."""
        found = []
        for s, stack in enumerate(self.stacks):
            if not stack.bidirectional:
                found.append((stack.rnn, s, "forward", 0))
            else:
                for i in range(stack.num_layers):
                    found.append((stack.fwd[i], s, "forward", i))
                    found.append((stack.bwd[i], s, "backward", i))
        return found
