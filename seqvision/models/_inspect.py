"""Looking inside a model: per-layer, per-step gates and states of one clip (reference cells), and the
attention weights of attention models, as plain numpy arrays for plotting."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._captioner import Captioner
from ._cells import reference_forward
from ._encoder import SequenceEncoder
from ._heads import AttentionPool, eval_mode

__all__ = ["inspect", "Inspection", "LayerInspection"]


@dataclass
class LayerInspection:
    """One layer and direction of the encoder over the clip's ``T`` real steps (time in clip order).

    ``gates``: LSTM ``input``, ``forget``, ``cell_candidate`` (g, input modulation), ``output``;
    GRU ``reset``, ``update``, ``candidate``; vanilla RNN ``preactivation``; minGRU ``update`` (z), ``candidate``
    (g(.)); minLSTM ``forget``, ``input`` (normalised: f' + i' = 1), ``candidate``. Each ``(T, H)``.
    """

    layer: int  # 0-based, counted over the whole encoder (hidden_sizes stacks included)
    direction: str  # "forward" | "backward"
    gates: dict[str, np.ndarray]
    hidden: np.ndarray  # (T, H)
    cell: np.ndarray | None  # (T, H), LSTM only
    kind: str = ""  # "rnn" | "lstm" | "gru" | "mingru" | "minlstm"

    def __repr__(self) -> str:
        return (f"LayerInspection(layer={self.layer}, direction={self.direction!r}, gates={sorted(self.gates)}, "
                f"hidden={self.hidden.shape})")


@dataclass
class Inspection:
    """What :func:`inspect` found for one clip.

    Attributes:
        cell: ``"rnn"``, ``"lstm"``, ``"gru"``, ``"mingru"`` or ``"minlstm"``.
        length: T, the clip's real frames.
        layers: one :class:`LayerInspection` per layer and direction (forward before backward).
        outputs: ``(T, H*dirs)`` the encoder's top-layer output (from the reference cells).
        attention: ``(T,)`` attention-pooling weights, or ``(L, T)`` per generated word for an attention
            captioner, else None.
        words: the generated tokens (``<eos>`` included) for captioners, else None.
    """

    cell: str
    length: int
    layers: list[LayerInspection]
    outputs: np.ndarray
    attention: np.ndarray | None = None
    words: list[str] | None = None
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        att = None if self.attention is None else self.attention.shape
        return f"Inspection(cell={self.cell!r}, length={self.length}, layers={len(self.layers)}, attention={att})"


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t[0].detach().float().cpu().numpy()


@torch.no_grad()
def inspect(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | int | None = None, *, clip: int = 0,
            beam_size: int = 1, max_len: int | None = None) -> Inspection:
    """Gates, hidden and cell states per layer and step for one clip, plus attention weights.

    Args:
        model: a task model from :func:`build_model` (or a :class:`SequenceEncoder`).
        x: features ``(T, D)`` or ``(B, T, D)``.
        lengths: real frames (``(B,)`` or an int); None = all ``T``.
        clip: which clip of a batch.
        beam_size, max_len: decoding options for captioners (attention per generated word).

    Returns:
        :class:`Inspection` with plain numpy arrays. Runs in eval mode (no dropout).
    """
    encoder = model if isinstance(model, SequenceEncoder) else getattr(model, "encoder", None)
    if not isinstance(encoder, SequenceEncoder):
        raise TypeError(f"inspect needs a seqvision model with a SequenceEncoder, got {type(model).__name__}")
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"x must be (T, D) or (B, T, D), got {tuple(x.shape)}")
    if not 0 <= clip < x.shape[0]:
        raise ValueError(f"clip must be in [0, {x.shape[0]}), got {clip}")
    if lengths is None:
        length = x.shape[1]
    elif isinstance(lengths, int):
        length = lengths
    else:
        length = int(torch.as_tensor(lengths).reshape(-1)[clip if torch.as_tensor(lengths).numel() > 1 else 0])
    if not 1 <= length <= x.shape[1]:
        raise ValueError(f"length must be in [1, T={x.shape[1]}], got {length}")
    device = next(encoder.parameters()).device
    x1 = x[clip: clip + 1, :length].to(device=device, dtype=torch.float32)  # (1, T, D)

    layers: list[LayerInspection] = []
    with eval_mode(model):
        h = encoder.embed_input(x1)  # (1, T, D'): standardised, as in forward
        layer = 0
        for stack in encoder.stacks:
            if not stack.bidirectional:
                ref = reference_forward(stack.rnn, h)
                for tr in ref.traces:
                    layers.append(LayerInspection(layer + tr.layer, "forward", {k: _np(v) for k, v in tr.gates.items()},
                                                  _np(tr.hidden), _np(tr.cell)))
                h = ref.output
                layer += stack.num_layers
                continue
            for fwd, bwd in zip(stack.fwd, stack.bwd):
                f = reference_forward(fwd, h)
                b = reference_forward(bwd, h.flip(1))  # the backward module reads the clip reversed
                flip = lambda t: None if t is None else t.flip(1)  # noqa: E731  back to clip time order
                for direction, ref, fix in (("forward", f, lambda t: t), ("backward", b, flip)):
                    tr = ref.traces[0]
                    layers.append(LayerInspection(layer, direction, {k: _np(fix(v)) for k, v in tr.gates.items()},
                                                  _np(fix(tr.hidden)), _np(fix(tr.cell))))
                h = torch.cat([f.output, b.output.flip(1)], dim=-1)  # (1, T, 2H)
                layer += 1
        for li in layers:
            li.kind = encoder.cell
        result = Inspection(encoder.cell, length, layers, _np(h))

        pool = getattr(model, "pool", None)
        if isinstance(pool, AttentionPool):
            result.attention = _np(model(x1).attention)  # (T,)
        if isinstance(model, Captioner):
            pred = model.predict(x1, torch.tensor([length]), beam_size=beam_size, max_len=max_len)
            ids = pred["tokens"][0].tolist()
            n = ids.index(model.vocab.eos_id) + 1 if model.vocab.eos_id in ids else len(ids)
            result.words = [model.vocab.itos[i] for i in ids[:n]]
            if "attention" in pred:
                result.attention = pred["attention"][0, :n].float().cpu().numpy()  # (L, T)
    return result
