"""Many-to-one pooling heads and the two labelling task models (clip classifier, frame labeller)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ._encoder import EncoderOutput, SequenceEncoder
from ._output import ModelOutput

__all__ = [
    "LastPool",
    "MeanPool",
    "MaxPool",
    "AttentionPool",
    "PoolOutput",
    "ClipClassifier",
    "ClassifierOutput",
    "ModelOutput",
    "FrameLabeler",
    "build_pool",
    "masked_softmax",
]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` with ``mask`` False entries given weight 0."""
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=dim)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Switch ``model`` to eval for the block and restore its mode after (predict never trains)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass
class PoolOutput:
    """A pooled clip vector ``(B, H)`` and, for attention pooling, the weights ``(B, T)``."""

    pooled: torch.Tensor
    weights: torch.Tensor | None = None


class LastPool(nn.Module):
    """The true last step (forward at ``lengths-1``, backward at step 0)."""

    def forward(self, enc: EncoderOutput) -> PoolOutput:
        return PoolOutput(enc.last)

    def step(self, out: torch.Tensor, acc=None) -> tuple[torch.Tensor, None]:
        """Online update with the new step's output ``out (B, H)``: the last step is the pooled vector."""
        return out, None


class MeanPool(nn.Module):
    """Mean over the valid steps."""

    def forward(self, enc: EncoderOutput) -> PoolOutput:
        count = enc.mask.sum(dim=1, keepdim=True).clamp(min=1).to(enc.outputs.dtype)  # (B, 1)
        return PoolOutput(enc.outputs.sum(dim=1) / count)  # outputs are zero at padded steps

    def step(self, out: torch.Tensor, acc=None) -> tuple[torch.Tensor, tuple]:
        """Online update: running sum and count, so the result at step t is the mean over steps ``0..t``."""
        total, count = (out, 1) if acc is None else (acc[0] + out, acc[1] + 1)
        return total / count, (total, count)


class MaxPool(nn.Module):
    """Max over the valid steps."""

    def forward(self, enc: EncoderOutput) -> PoolOutput:
        masked = enc.outputs.masked_fill(~enc.mask[..., None], float("-inf"))  # (B, T, H)
        return PoolOutput(masked.amax(dim=1))

    def step(self, out: torch.Tensor, acc=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Online update: the running maximum over steps ``0..t``."""
        best = out if acc is None else torch.maximum(acc, out)
        return best, best


class AttentionPool(nn.Module):
    """Learned attention pooling: ``score_t = v . tanh(W o_t)``, softmax over the valid steps."""

    def __init__(self, dim: int, attention_dim: int = 128):
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, enc: EncoderOutput) -> PoolOutput:
        scores = self.score(torch.tanh(self.proj(enc.outputs)))[..., 0]  # (B, T)
        weights = masked_softmax(scores, enc.mask)  # (B, T)
        pooled = torch.einsum("bt,btd->bd", weights, enc.outputs)  # (B, H)
        return PoolOutput(pooled, weights)

    def step(self, out: torch.Tensor, acc=None) -> tuple[torch.Tensor, tuple]:
        """Online update: attention over steps ``0..t`` with a running softmax normaliser (Milakov &
        Gimelshein 2018, "Online normalizer calculation for softmax"): keeps the running max score ``m``, the
        sum ``s`` of ``exp(score - m)`` and the weighted sum of outputs, rescaled when ``m`` grows. The result at
        step t equals ``forward`` on the clip's first t+1 steps; O(1) work per step."""
        score = self.score(torch.tanh(self.proj(out)))[..., 0]  # (B,)
        if acc is None:
            m, s, weighted = score, torch.ones_like(score), out
        else:
            m0, s0, w0 = acc
            m = torch.maximum(m0, score)
            old, new = torch.exp(m0 - m), torch.exp(score - m)  # (B,)
            s = s0 * old + new
            weighted = w0 * old[:, None] + out * new[:, None]  # (B, H)
        return weighted / s[:, None], (m, s, weighted)


def build_pool(head: str, dim: int, *, attention_dim: int = 128) -> nn.Module:
    """The pooling module named by ``model.head``."""
    if head == "last":
        return LastPool()
    if head == "mean":
        return MeanPool()
    if head == "max":
        return MaxPool()
    if head == "attention":
        return AttentionPool(dim, attention_dim)
    raise ValueError(f"build_pool: head must be 'last', 'mean', 'max' or 'attention', got {head!r}")


ClassifierOutput = ModelOutput  # the name of seqvision 0.1; every task model returns a ModelOutput


class ClipClassifier(nn.Module):
    """Many-to-one: encoder -> pooling head -> dropout -> [dense + ReLU]* -> linear classifier (LRCN-style).

    Args:
        encoder: the :class:`SequenceEncoder`.
        num_classes: K.
        head: ``"last"``, ``"mean"``, ``"max"`` or ``"attention"``.
        head_dropout: dropout before the classifier.
        head_hidden: widths of dense ReLU layers between the dropout and the classifier (Keras preset: ``[8]``).
    """

    task = "classify"

    def __init__(self, encoder: SequenceEncoder, *, num_classes: int, head: str = "last",
                 head_dropout: float = 0.5, head_hidden: tuple[int, ...] = (), attention_dim: int = 128):
        super().__init__()
        self.encoder = encoder
        self.num_classes = num_classes
        self.pool = build_pool(head, encoder.out_dim, attention_dim=attention_dim)
        self.dropout = nn.Dropout(head_dropout)
        layers: list[nn.Module] = []
        width = encoder.out_dim
        for h in head_hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers) if layers else nn.Identity()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> ModelOutput:
        """``x (B, T, D)``, ``lengths (B,)`` -> :class:`ModelOutput` with ``logits (B, K)`` and, for attention
        pooling, ``attention (B, T)``."""
        enc = self.encoder(x, lengths)
        pooled = self.pool(enc)  # (B, H)
        logits = self.fc(self.mlp(self.dropout(pooled.pooled)))  # (B, K)
        return ModelOutput(logits=logits, attention=pooled.weights)

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """Online classification: one frame's features ``x (B, D)`` -> logits ``(B, K)`` of the clip so far.

        The logits after step t equal ``forward`` on the first t+1 frames (float tolerance) for every pooling
        head; O(1) work per frame. ``state``: the previous call's, or None to start a clip. Call in eval mode.

        Raises:
            ValueError: the encoder is bidirectional (see :meth:`SequenceEncoder.step`).
        """
        enc_state, pool_state = state if state is not None else (None, None)
        out, enc_state = self.encoder.step(x, enc_state)  # (B, H)
        pooled, pool_state = self.pool.step(out, pool_state)  # (B, H)
        return self.fc(self.mlp(self.dropout(pooled))), (enc_state, pool_state)  # (B, K)

    def loss(self, x: torch.Tensor, lengths: torch.Tensor | None, batch: dict) -> torch.Tensor:
        """Cross-entropy against ``batch["label"] (B,)``."""
        logits = self(x, lengths).logits
        return F.cross_entropy(logits.float(), torch.as_tensor(batch["label"], device=logits.device))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> ModelOutput:
        """:class:`ModelOutput` with ``logits (B, K)`` float32, ``probs (B, K)``, ``preds (B,)`` and, for
        attention pooling, ``attention (B, T)``.

        Runs in eval mode (the module's mode is restored after).
        """
        with eval_mode(self):
            out = self(x, lengths)
        logits = out.logits.float()
        return ModelOutput(logits=logits, attention=out.attention, probs=logits.softmax(-1), preds=logits.argmax(-1))


class FrameLabeler(nn.Module):
    """Many-to-many: a label per frame, ``logits (B, T, K)``; the loss is masked to the valid steps."""

    task = "frames"

    def __init__(self, encoder: SequenceEncoder, *, num_classes: int, head_dropout: float = 0.5):
        super().__init__()
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = nn.Dropout(head_dropout)
        self.fc = nn.Linear(encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> ModelOutput:
        """``x (B, T, D)`` -> :class:`ModelOutput` with ``logits (B, T, K)``."""
        enc = self.encoder(x, lengths)
        return ModelOutput(logits=self.fc(self.dropout(enc.outputs)))  # (B, T, K)

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """Online labelling: one frame's features ``x (B, D)`` -> that frame's logits ``(B, K)`` and the state.

        Equals ``forward(...)[:, t]`` for a unidirectional encoder (float tolerance). Call in eval mode.

        Raises:
            ValueError: the encoder is bidirectional (see :meth:`SequenceEncoder.step`).
        """
        out, state = self.encoder.step(x, state)  # (B, H)
        return self.fc(self.dropout(out)), state  # (B, K)

    def loss(self, x: torch.Tensor, lengths: torch.Tensor | None, batch: dict) -> torch.Tensor:
        """Cross-entropy against ``batch["frame_labels"] (B, T)``; -100 and padded steps are ignored."""
        logits = self(x, lengths).logits  # (B, T, K)
        B, T, _ = logits.shape
        targets = torch.as_tensor(batch["frame_labels"], device=logits.device).long()[:, :T]  # (B, T)
        if targets.shape != (B, T):
            raise ValueError(f"batch['frame_labels'] must be (B, T)=({B}, {T}), got {tuple(targets.shape)}")
        if lengths is not None:
            mask = torch.arange(T, device=logits.device)[None] < torch.as_tensor(lengths, device=logits.device)[:, None]
            targets = targets.masked_fill(~mask, -100)
        return F.cross_entropy(rearrange(logits.float(), "b t k -> (b t) k"), rearrange(targets, "b t -> (b t)"),
                               ignore_index=-100)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> ModelOutput:
        """:class:`ModelOutput` with ``logits (B, T, K)`` float32, ``probs (B, T, K)``, ``preds (B, T)``;
        padded steps of ``preds`` are -100."""
        with eval_mode(self):
            logits = self(x, lengths).logits.float()
        preds = logits.argmax(-1)  # (B, T)
        if lengths is not None:
            T = logits.shape[1]
            mask = torch.arange(T, device=logits.device)[None] < torch.as_tensor(lengths, device=logits.device)[:, None]
            preds = preds.masked_fill(~mask, -100)
        return ModelOutput(logits=logits, probs=logits.softmax(-1), preds=preds)
