"""The one output type of every task model: :class:`ModelOutput`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterator

import torch

__all__ = ["ModelOutput"]


@dataclass
class ModelOutput:
    """What every task model's ``forward`` and ``predict`` return; a field a model does not produce is None.

    Shapes (B clips, T frames, K classes, L caption tokens, V vocabulary, beams N):

    - ``logits``: clip classifier ``(B, K)``; frame labeller ``(B, T, K)``; captioner, teacher forced,
      ``(B, L, V)``. float32 from ``predict``.
    - ``attention``: attention pooling ``(B, T)`` (zero on padded frames); attention captioner ``(B, L, T)``.
    - ``probs``: ``softmax(logits)`` (``predict`` of the classifier and the frame labeller).
    - ``preds``: ``argmax`` class ids, ``(B,)`` or ``(B, T)`` int64 with -100 on padded frames.
    - ``tokens``: generated ids ``(B, L)`` ending in ``<eos>`` then ``<pad>``; ``texts``: B strings;
      ``scores``: ``(B,)`` length-normalised log-probabilities; ``beam_tokens`` ``(B, N, L)`` and
      ``beam_scores`` ``(B, N)``, best first (captioner ``predict``).

    ``out["probs"]`` / ``"probs" in out`` read the fields that are set, for code written against the dict
    outputs of seqvision 0.1 (a field that is None is absent: ``KeyError``).
    """

    logits: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    preds: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    texts: list[str] | None = None
    scores: torch.Tensor | None = None
    beam_tokens: torch.Tensor | None = None
    beam_scores: torch.Tensor | None = None

    def keys(self) -> list[str]:
        """Names of the fields that are set."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __repr__(self) -> str:
        def show(v):
            if isinstance(v, torch.Tensor):
                return f"{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
            return f"[{len(v)} texts]" if isinstance(v, list) else repr(v)

        return "ModelOutput(" + ", ".join(f"{k}={show(getattr(self, k))}" for k in self.keys()) + ")"
