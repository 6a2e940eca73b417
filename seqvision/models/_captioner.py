"""Seq2seq video captioning: frame encoder RNN -> word decoder RNN (S2VT-style state hand-over, or soft
temporal attention), teacher-forced training, greedy / beam / sampled decoding batched over clips and beams."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..data.vocab import Vocabulary
from ._encoder import SequenceEncoder, make_rnn, rnn_step
from ._heads import eval_mode, masked_softmax
from ._output import ModelOutput

__all__ = ["Captioner", "CaptionerOutput", "AdditiveAttention", "shift_for_teacher_forcing"]


def shift_for_teacher_forcing(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs and targets from ``tokens (B, L)`` = ``<bos> w1 .. wn <eos> <pad>..``.

    The input at step t is token t, the target is token t+1, so the model learns to predict the next word.
    Targets equal to ``<pad>`` (0) are ignored by the loss.

    Example (``<pad>``=0 ``<bos>``=1 ``<eos>``=2):
        >>> inputs, targets = shift_for_teacher_forcing(torch.tensor([[1, 7, 8, 2], [1, 9, 2, 0]]))
        >>> inputs.tolist(), targets.tolist()
        ([[1, 7, 8], [1, 9, 2]], [[7, 8, 2], [9, 2, 0]])
    """
    return tokens[:, :-1], tokens[:, 1:]


class AdditiveAttention(nn.Module):
    """Bahdanau attention: ``score_t = v . tanh(W_k m_t + W_q h)``, softmax over the valid frames."""

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int):
        super().__init__()
        self.key = nn.Linear(memory_dim, attention_dim, bias=False)
        self.query = nn.Linear(query_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``query (N, Hq)``, ``keys = self.key(memory) (N, T, A)``, ``memory (N, T, M)``, ``mask (N, T)`` ->
        context ``(N, M)``, weights ``(N, T)``."""
        e = self.score(torch.tanh(keys + self.query(query)[:, None]))[..., 0]  # (N, T)
        weights = masked_softmax(e, mask)  # (N, T)
        return torch.einsum("nt,ntm->nm", weights, memory), weights


CaptionerOutput = ModelOutput  # the name of seqvision 0.1; every task model returns a ModelOutput


@dataclass
class _Memory:
    """What the decoder reads at every step; ``N`` = clips (x beams)."""

    outputs: torch.Tensor  # (N, T, M)
    keys: torch.Tensor | None  # (N, T, A)
    mask: torch.Tensor  # (N, T)

    def expand(self, k: int) -> "_Memory":
        rep = lambda t: None if t is None else repeat(t, "b ... -> (b k) ...", k=k)  # noqa: E731
        return _Memory(rep(self.outputs), rep(self.keys), rep(self.mask))


class Captioner(nn.Module):
    """Encoder RNN over frames, decoder RNN over words.

    Args:
        encoder: the frame :class:`SequenceEncoder`.
        vocab: the :class:`~seqvision.data.vocab.Vocabulary` (kept as ``model.vocab``; not in the state dict).
        decoder: ``"s2vt"`` (decoder starts from the encoder's final state) or ``"attention"`` (additionally
            soft attention over the encoder outputs at every word).
        cell: decoder cell, ``"lstm"``, ``"gru"`` or ``"rnn"``.
        embed_dim: word embedding width.
        hidden: decoder hidden size (0 = the encoder's hidden size).
        attention_dim: width of the additive attention.
        max_len: default maximum words generated (``<eos>`` excluded) and cap on training captions.
        scheduled_sampling: in training, probability of feeding the model's own previous word.
        dropout: dropout before the word classifier.

    The decoder's initial hidden state is ``bridge(encoder.last)`` (a linear map when the widths differ,
    else identity); an LSTM's initial cell state is zero.
    """

    task = "caption"

    def __init__(self, encoder: SequenceEncoder, vocab: Vocabulary, *, decoder: str = "attention",
                 cell: str = "lstm", embed_dim: int = 256, hidden: int = 0, attention_dim: int = 128,
                 max_len: int = 20, scheduled_sampling: float = 0.0, dropout: float = 0.0,
                 nonlinearity: str = "tanh"):
        super().__init__()
        if decoder not in ("s2vt", "attention"):
            raise ValueError(f"Captioner: decoder must be 's2vt' or 'attention', got {decoder!r}")
        self.encoder = encoder
        self.vocab = vocab
        self.decoder_kind = decoder
        self.cell = cell
        self.max_len = max_len
        self.scheduled_sampling = scheduled_sampling
        hidden = hidden or encoder.hidden
        self.hidden = hidden
        mem = encoder.out_dim
        V = len(vocab)
        self.embed = nn.Embedding(V, embed_dim, padding_idx=vocab.pad_id)
        self.bridge = nn.Linear(mem, hidden) if mem != hidden else nn.Identity()
        if decoder == "attention":
            self.attention = AdditiveAttention(hidden, mem, attention_dim)
            self.rnn = make_rnn(cell, embed_dim + mem, hidden, nonlinearity=nonlinearity)
            out_in = hidden + mem
        else:
            self.attention = None
            self.rnn = make_rnn(cell, embed_dim, hidden, nonlinearity=nonlinearity)
            out_in = hidden
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(out_in, V)

    # ------------------------------------------------------------------------------------------------------------
    # building blocks

    def _encode(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[_Memory, tuple[torch.Tensor, ...]]:
        enc = self.encoder(x, lengths)
        keys = self.attention.key(enc.outputs) if self.attention is not None else None  # (B, T, A)
        h0 = self.bridge(enc.last)[None]  # (1, B, Hd)
        state = (h0, torch.zeros_like(h0)) if self.cell == "lstm" else (h0,)
        return _Memory(enc.outputs, keys, enc.mask), state

    def _run_rnn(self, inp: torch.Tensor, state: tuple[torch.Tensor, ...]):
        if inp.shape[1] == 1 and not torch.is_grad_enabled() and isinstance(self.rnn, nn.RNNBase):
            # one word at inference: the cell functions (a fused call with T=1 costs ~20 ms on CPU in oneDNN setup)
            out, new = rnn_step(self.rnn, inp[:, 0], state if self.cell == "lstm" else state[0])
            return out[:, None], (new if self.cell == "lstm" else (new,))
        out, new = self.rnn(inp, state if self.cell == "lstm" else state[0])
        return out, (new if self.cell == "lstm" else (new,))

    def _step(self, words: torch.Tensor, state: tuple[torch.Tensor, ...], memory: _Memory):
        """One decoder step for ``words (N,)`` -> logits ``(N, V)``, new state, attention ``(N, T)`` or None."""
        emb = self.embed(words)  # (N, E)
        attn = None
        if self.attention is not None:
            ctx, attn = self.attention(state[0][-1], memory.keys, memory.outputs, memory.mask)  # (N, M), (N, T)
            emb = torch.cat([emb, ctx], dim=-1)  # (N, E+M)
        out, state = self._run_rnn(emb[:, None], state)  # (N, 1, Hd)
        out = out[:, 0]  # (N, Hd)
        if attn is not None:
            out = torch.cat([out, ctx], dim=-1)  # (N, Hd+M)
        return self.out(self.dropout(out)), state, attn

    # ------------------------------------------------------------------------------------------------------------
    # training

    def tokenize_captions(self, captions, *, device=None) -> torch.Tensor:
        """``(B, L)`` ids of one caption per clip: ``<bos> words <eos> <pad>..`` (words cut at ``max_len``).

        A list of captions for a clip (the collate format) uses its first caption.
        """
        texts = []
        for i, c in enumerate(captions):
            if isinstance(c, (list, tuple)):
                if not c:
                    raise ValueError(f"batch['captions'][{i}] is empty: every clip needs a caption to train on")
                c = c[0]
            if not isinstance(c, str):
                raise ValueError(f"batch['captions'][{i}] must be a string, got {type(c).__name__}")
            texts.append(c)
        return self.vocab.encode_batch(texts, max_len=self.max_len, device=device)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, inputs: torch.Tensor) -> ModelOutput:
        """Teacher-forced decoding of decoder ``inputs (B, L)`` (from :func:`shift_for_teacher_forcing`) ->
        :class:`ModelOutput` with ``logits (B, L, V)`` and ``attention (B, L, T)`` (attention decoder)."""
        memory, state = self._encode(x, lengths)
        ss = self.scheduled_sampling if self.training else 0.0
        if self.attention is None and ss == 0.0:
            out, _ = self._run_rnn(self.embed(inputs), state)  # (B, L, Hd): one fused call
            return ModelOutput(logits=self.out(self.dropout(out)))
        logits, attns = [], []
        words = inputs[:, 0]
        for t in range(inputs.shape[1]):
            if t > 0:
                words = inputs[:, t]
                if ss > 0:
                    own = logits[-1].detach().argmax(-1)  # (B,)
                    use_own = torch.rand(words.shape, device=words.device) < ss
                    words = torch.where(use_own & (words != self.vocab.pad_id), own, words)
            step_logits, state, attn = self._step(words, state, memory)
            logits.append(step_logits)
            attns.append(attn)
        attention = torch.stack(attns, dim=1) if self.attention is not None else None  # (B, L, T)
        return ModelOutput(logits=torch.stack(logits, dim=1), attention=attention)  # (B, L, V)

    def loss(self, x: torch.Tensor, lengths: torch.Tensor | None, batch: dict) -> torch.Tensor:
        """Cross-entropy of the next word, teacher forced, on ``batch["captions"]`` (one string per clip);
        padding is ignored."""
        tokens = self.tokenize_captions(batch["captions"], device=x.device)  # (B, L)
        inputs, targets = shift_for_teacher_forcing(tokens)
        logits = self(x, lengths, inputs).logits  # (B, L-1, V)
        return F.cross_entropy(rearrange(logits.float(), "b l v -> (b l) v"), rearrange(targets, "b l -> (b l)"),
                               ignore_index=self.vocab.pad_id)

    # ------------------------------------------------------------------------------------------------------------
    # inference

    @torch.no_grad()
    def predict(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, beam_size: int = 1,
                max_len: int | None = None, length_penalty: float = 1.0,
                temperature: float | None = None) -> ModelOutput:
        """Generate a caption per clip.

        Args:
            beam_size: 1 = greedy; K > 1 = beam search over K beams per clip (batched as ``(B*K, ...)``).
            max_len: at most this many words (``<eos>`` excluded; default ``max_len`` of the model); a caption
                that reaches it is ended with ``<eos>``.
            length_penalty: final scores are ``sum(log p) / num_tokens ** length_penalty`` (0 = raw sum).
            temperature: sample words from ``softmax(logits / temperature)`` instead of the argmax
                (``beam_size`` must be 1).

        Returns:
            :class:`ModelOutput` with ``tokens (B, L)`` ids ending in <eos> then <pad>, ``texts`` (B strings),
            ``scores (B,)``, ``beam_tokens (B, K, L)``, ``beam_scores (B, K)`` sorted best first, and
            ``attention (B, L, T)`` for the attention decoder (zero after ``<eos>``).
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if temperature is not None and (beam_size != 1 or temperature <= 0):
            raise ValueError(f"temperature sampling needs beam_size=1 and temperature > 0, got beam_size="
                             f"{beam_size}, temperature={temperature}")
        max_len = self.max_len if max_len is None else int(max_len)
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        with eval_mode(self):
            memory, state = self._encode(x, lengths)
            if beam_size == 1:
                tokens, scores, attention = self._greedy(memory, state, max_len, length_penalty, temperature)
                beam_tokens, beam_scores = tokens[:, None], scores[:, None]
            else:
                beam_tokens, beam_scores, beam_attention = self._beam(memory, state, beam_size, max_len,
                                                                      length_penalty)
                tokens, scores = beam_tokens[:, 0], beam_scores[:, 0]
                attention = None if beam_attention is None else beam_attention[:, 0]
        return ModelOutput(tokens=tokens, texts=[self.vocab.decode(row) for row in tokens.tolist()], scores=scores,
                           beam_tokens=beam_tokens, beam_scores=beam_scores, attention=attention)

    def _next_logp(self, logits: torch.Tensor, t: int, max_len: int) -> torch.Tensor:
        logp = logits.float().log_softmax(-1)  # (N, V)
        logp[:, [self.vocab.pad_id, self.vocab.bos_id]] = float("-inf")  # never generated
        if t == max_len:  # the last step may only end the caption
            only_eos = torch.full_like(logp, float("-inf"))
            only_eos[:, self.vocab.eos_id] = logp[:, self.vocab.eos_id]
            logp = only_eos
        return logp

    def _greedy(self, memory: _Memory, state, max_len: int, length_penalty: float, temperature: float | None):
        B = memory.outputs.shape[0]
        dev = memory.outputs.device
        pad, eos = self.vocab.pad_id, self.vocab.eos_id
        words = torch.full((B,), self.vocab.bos_id, dtype=torch.long, device=dev)
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        total = torch.zeros(B, device=dev)
        count = torch.zeros(B, device=dev)
        tokens, attns = [], []
        for t in range(max_len + 1):
            logits, state, attn = self._step(words, state, memory)
            logp = self._next_logp(logits, t, max_len)  # (N, V)
            if temperature is not None:
                probs = (logits.float() / temperature).masked_fill(logp == float("-inf"), float("-inf")).softmax(-1)
                w = torch.multinomial(probs, 1)[:, 0]
            else:
                w = logp.argmax(-1)  # (B,)
            w = w.masked_fill(finished, pad)
            total = total + logp.gather(1, w[:, None])[:, 0].masked_fill(finished, 0.0)
            count = count + (~finished).float()
            if attn is not None:
                attns.append(attn.masked_fill(finished[:, None], 0.0))
            finished = finished | (w == eos)
            tokens.append(w)
            words = w
            if bool(finished.all()):
                break
        scores = total / count.clamp(min=1) ** length_penalty
        attention = torch.stack(attns, dim=1) if attns else None  # (B, L, T)
        return torch.stack(tokens, dim=1), scores, attention

    def _beam(self, memory: _Memory, state, K: int, max_len: int, length_penalty: float):
        B = memory.outputs.shape[0]
        N = B * K
        dev = memory.outputs.device
        pad, eos = self.vocab.pad_id, self.vocab.eos_id
        V = len(self.vocab)
        memory = memory.expand(K)
        state = tuple(repeat(s, "l b h -> l (b k) h", k=K) for s in state)  # (1, N, Hd)
        scores = torch.zeros(B, K, device=dev)
        scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
        scores = rearrange(scores, "b k -> (b k)")  # (N,)
        frozen = torch.full((V,), float("-inf"), device=dev)
        frozen[pad] = 0.0  # a finished beam continues with <pad> at no cost
        finished = torch.zeros(N, dtype=torch.bool, device=dev)
        count = torch.zeros(N, device=dev)
        words = torch.full((N,), self.vocab.bos_id, dtype=torch.long, device=dev)
        tokens = torch.zeros(N, 0, dtype=torch.long, device=dev)
        attn_hist = None
        base = torch.arange(B, device=dev)[:, None] * K  # (B, 1)
        for t in range(max_len + 1):
            logits, state, attn = self._step(words, state, memory)
            logp = self._next_logp(logits, t, max_len)  # (N, V)
            logp = torch.where(finished[:, None], frozen[None], logp)
            cand = rearrange(scores[:, None] + logp, "(b k) v -> b (k v)", k=K)  # (B, K*V)
            top, idx = cand.topk(K, dim=1)  # (B, K)
            src = rearrange(base + idx // V, "b k -> (b k)")  # (N,) beam each new beam extends
            words = rearrange(idx % V, "b k -> (b k)")  # (N,)
            scores = rearrange(top, "b k -> (b k)")
            state = tuple(s.index_select(1, src) for s in state)
            was_finished = finished[src]
            tokens = torch.cat([tokens[src], words[:, None]], dim=1)  # (N, t+1)
            if attn is not None:
                step_attn = attn[src].masked_fill(was_finished[:, None], 0.0)[:, None]  # (N, 1, T)
                attn_hist = step_attn if attn_hist is None else torch.cat([attn_hist[src], step_attn], dim=1)
            count = count[src] + (~was_finished).float()
            finished = was_finished | (words == eos)
            if bool(finished.all()):
                break
        final = rearrange(scores / count.clamp(min=1) ** length_penalty, "(b k) -> b k", k=K)
        final, order = final.sort(dim=1, descending=True)  # (B, K)
        pick = rearrange(base + order, "b k -> (b k)")
        beam_tokens = rearrange(tokens[pick], "(b k) l -> b k l", k=K)
        beam_attention = None if attn_hist is None else rearrange(attn_hist[pick], "(b k) l t -> b k l t", k=K)
        return beam_tokens, final, beam_attention
