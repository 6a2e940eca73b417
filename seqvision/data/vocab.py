"""Caption vocabulary: tokenisation, word <-> id maps, padded batches of ids.

Example:
    >>> vocab = Vocabulary.build(["A dog runs.", "A cat doesn't run!"], min_freq=1)
    >>> vocab.tokenize("A cat doesn't run!")
    ['a', 'cat', "doesn't", 'run', '!']
    >>> vocab.decode(vocab.encode("a dog runs."))
    'a dog runs .'
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..errors import ArgumentError, DatasetError

__all__ = ["Vocabulary", "tokenize", "PAD", "BOS", "EOS", "UNK", "SPECIAL_TOKENS"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

# A word is letters/digits with optional inner apostrophes ("don't", "dog's", "rock'n'roll");
# every other non-space character (punctuation) is a token of its own.
_TOKEN_RE = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words and punctuation marks.

    Example:
        >>> tokenize("Don't stop, Mr. Smith!")
        ["don't", 'stop', ',', 'mr', '.', 'smith', '!']
    """
    return [t.replace("’", "'") for t in _TOKEN_RE.findall(text.lower())]


class Vocabulary:
    """Word <-> id map with the special tokens ``<pad>``=0, ``<bos>``=1, ``<eos>``=2, ``<unk>``=3.

    Build it from the training captions with :meth:`build`; save it with the model (:meth:`to_dict`).
    """

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str] = ()):
        """``words`` are the non-special tokens, in id order (ids start at 4)."""
        self.itos: list[str] = list(SPECIAL_TOKENS)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        for w in words:
            if w in self.stoi:
                raise DatasetError(f"vocabulary: duplicate or special word {w!r}")
            self.stoi[w] = len(self.itos)
            self.itos.append(w)

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, captions: Iterable[str], *, min_freq: int = 1, max_size: int = 10000) -> "Vocabulary":
        """Vocabulary of the words seen at least ``min_freq`` times, the most frequent first.

        Args:
            captions: training captions (strings).
            min_freq: drop words seen fewer times (``model.vocab_min_freq``).
            max_size: at most this many entries, the 4 special tokens included (``model.vocab_max_size``).

        Raises:
            ArgumentError: ``min_freq`` < 1 or ``max_size`` < 5 (the config checks its keys before).
            DatasetError: a caption that is not a string.
        """
        if min_freq < 1:
            raise ArgumentError("min_freq", f"must be >= 1, got {min_freq}")
        if max_size < len(SPECIAL_TOKENS) + 1:
            raise ArgumentError("max_size", f"must be >= 5 (4 special tokens + 1 word), got {max_size}")
        counts: Counter[str] = Counter()
        for text in captions:
            if not isinstance(text, str):
                raise DatasetError(f"vocabulary: captions must be strings, got {type(text).__name__}")
            counts.update(t for t in tokenize(text) if t not in SPECIAL_TOKENS)
        # Most frequent first; ties alphabetical so the ids do not depend on caption order.
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(ranked[: max_size - len(SPECIAL_TOKENS)])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"

    def tokenize(self, text: str) -> list[str]:
        """Same as the module-level :func:`tokenize`."""
        return tokenize(text)

    def encode(self, text: str, add_bos_eos: bool = True) -> list[int]:
        """Ids of the tokens of ``text`` (unknown words -> ``<unk>``), framed by ``<bos>``/``<eos>``."""
        ids = [self.stoi.get(t, self.unk_id) for t in tokenize(text)]
        return [self.bos_id, *ids, self.eos_id] if add_bos_eos else ids

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Text of ``ids``: stops at the first ``<eos>``, drops the other special tokens."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i < len(SPECIAL_TOKENS) or i >= len(self.itos):
                continue
            words.append(self.itos[i])
        return " ".join(words)

    def encode_batch(self, texts: Sequence[str], *, add_bos_eos: bool = True, max_len: int | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """``(B, L)`` long tensor of ids, padded with ``<pad>``=0 to the longest.

        ``max_len`` caps the words per caption (``<bos>``/``<eos>`` not counted; a cut caption keeps its
        ``<eos>``).
        """
        rows = []
        for text in texts:
            ids = self.encode(text, add_bos_eos=False)
            if max_len is not None:
                ids = ids[:max_len]
            rows.append([self.bos_id, *ids, self.eos_id] if add_bos_eos else ids)
        width = max((len(r) for r in rows), default=0)
        out = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, L)
        for b, r in enumerate(rows):
            out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(device) if device is not None else out

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain-data form (JSON / checkpoint safe)."""
        return {"format": "seqvision-vocab", "version": 1, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise DatasetError("vocabulary: expected a dict with an 'itos' list (from Vocabulary.to_dict())")
        itos = data["itos"]
        if list(itos[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise DatasetError(f"vocabulary: the first entries must be {list(SPECIAL_TOKENS)}, got {itos[:4]}")
        return cls(itos[len(SPECIAL_TOKENS):])

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=0), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a file written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise DatasetError(f"{p}: vocabulary file does not exist")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{p}: not a vocabulary JSON file ({exc})") from None
        try:
            return cls.from_dict(data)
        except DatasetError as exc:
            raise DatasetError(f"{p}: {exc}") from None
