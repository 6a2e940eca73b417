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
        references_per_clip: in :meth:`loss`, at most this many of a clip's reference captions are trained on
            per step (all of them up to this cap; MSR-VTT has 20 per clip).

    Raises:
        ValueError: an unknown ``decoder`` or ``references_per_clip`` < 1.

    The decoder's initial hidden state is ``bridge(encoder.last)`` (a linear map when the widths differ,
    else identity); an LSTM's initial cell state is zero.
    """

    task = "caption"

    def __init__(self, encoder: SequenceEncoder, vocab: Vocabulary, *, decoder: str = "attention",
                 cell: str = "lstm", embed_dim: int = 256, hidden: int = 0, attention_dim: int = 128,
                 max_len: int = 20, scheduled_sampling: float = 0.0, dropout: float = 0.0,
                 nonlinearity: str = "tanh", references_per_clip: int = 5):
        super().__init__()
        if decoder not in ("s2vt", "attention"):
            raise ValueError(f"Captioner: decoder must be 's2vt' or 'attention', got {decoder!r}")
        self.encoder = encoder
        self.vocab = vocab
        self.decoder_kind = decoder
        self.cell = cell
        self.max_len = max_len
        self.scheduled_sampling = scheduled_sampling
        if references_per_clip < 1:
            raise ValueError(f"Captioner: references_per_clip must be >= 1, got {references_per_clip}")
        self.references_per_clip = int(references_per_clip)
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
        return self._teacher_forced(memory, state, inputs)

    def _teacher_forced(self, memory: _Memory, state: tuple[torch.Tensor, ...], inputs: torch.Tensor) -> ModelOutput:
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
        """Cross-entropy of the next word, teacher forced, averaged over the target words (padding ignored).
        A caption longer than ``max_len`` words trains on its first ``max_len`` words without an ``<eos>`` target.

        ``batch["captions"]`` holds per clip one caption string, or a list of its reference captions: then the
        clip's first ``references_per_clip`` references are all trained on in this step (the clip is encoded once
        and its decoder state repeated per reference), so every step sees each clip's captions, as training on
        every (clip, caption) pair does (Venugopalan et al. 2015, S2VT) with the clip batch kept as the unit.
        :class:`~seqvision.tasks.CaptionTask` passes the references shuffled by a seeded generator.

        Raises:
            ValueError: a clip with an empty reference list or a caption that is not a string.
        """
        refs = []
        for i, c in enumerate(batch["captions"]):
            c = [c] if isinstance(c, str) else list(c)[: self.references_per_clip]
            if not c or not all(isinstance(t, str) for t in c):
                raise ValueError(f"batch['captions'][{i}] must be a caption string or a non-empty list of them, "
                                 f"got {batch['captions'][i]!r}")
            refs.append(c)
        tokens = self.vocab.encode_batch([t for r in refs for t in r], device=x.device)  # (R, L), R references
        if tokens.shape[1] > self.max_len + 2:  # a caption longer than max_len words: its first max_len words,
            tokens = tokens[:, : self.max_len + 2].clone()  # and no <eos> after them (it would teach the model to
            cut = tokens[:, -1] != self.vocab.eos_id  # stop mid-sentence, "... from the bottom to <eos>")
            tokens[cut, -1] = self.vocab.pad_id
        inputs, targets = shift_for_teacher_forcing(tokens)
        memory, state = self._encode(x, lengths)
        if len(tokens) != len(refs):  # a row per reference: repeat each clip's memory and decoder state
            src = torch.repeat_interleave(torch.arange(len(refs), device=x.device),
                                          torch.tensor([len(r) for r in refs], device=x.device))  # (R,)
            # index_select, not x[src]: the backward of x[src] with repeated indices is index_put_(accumulate=True),
            # which on CPU (float32, >= 32768 elements, > 1 thread) adds with atomics from several threads, so the
            # encoder's gradients depended on thread timing (a loaded machine); index_add_ adds in index order.
            memory = _Memory(memory.outputs.index_select(0, src),
                             None if memory.keys is None else memory.keys.index_select(0, src),
                             memory.mask.index_select(0, src))
            state = tuple(s.index_select(1, src) for s in state)
        logits = self._teacher_forced(memory, state, inputs).logits  # (R, L-1, V)
        return F.cross_entropy(rearrange(logits.float(), "b l v -> (b l) v"), rearrange(targets, "b l -> (b l)"),
                               ignore_index=self.vocab.pad_id)

    # ------------------------------------------------------------------------------------------------------------
    # inference

    @torch.no_grad()
    def predict(self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, beam_size: int = 1,
                max_len: int | None = None, length_penalty: float = 0.6,
                temperature: float | None = None) -> ModelOutput:
        """Generate a caption per clip.

        Args:
            beam_size: 1 = greedy; K > 1 = beam search over K beams per clip (batched as ``(B*K, ...)``), whose
                best caption never ranks below the greedy one (decoded in the same batch, see ``_beam``).
            max_len: at most this many words (``<eos>`` excluded; default ``max_len`` of the model); a caption
                that reaches it is ended with ``<eos>``.
            length_penalty: final scores are ``sum(log p) / num_tokens ** length_penalty`` (0 = raw sum; 1 = per
                word, which favours long captions of predictable words: on the demo's test clips beam 3 scored
                CIDEr 4.05 at 1.0 and 4.32 at 0.6, the exponent Wu et al. 2016 use).
            temperature: sample words from ``softmax(logits / temperature)`` instead of the argmax
                (``beam_size`` must be 1).

        Returns:
            :class:`ModelOutput` with ``tokens (B, L)`` ids ending in <eos> then <pad>, ``texts`` (B strings),
            ``scores (B,)``, ``beam_tokens (B, K, L)``, ``beam_scores (B, K)`` (finished captions best first, then
            any cut short at ``max_len``), and
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
                tokens, scores, attention, _ = self._greedy(memory, state, max_len, length_penalty, temperature)
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

    def _greedy_advance(self, w: torch.Tensor, logp: torch.Tensor, finished: torch.Tensor, total: torch.Tensor,
                        count: torch.Tensor):
        """One greedy step of rows that picked ``w (N,)`` from ``logp (N, V)``: a finished row writes ``<pad>``
        and adds nothing; the others add the pick's log p to ``total (N,)`` and one token to ``count (N,)``.
        Returns ``w``, ``total``, ``count``, ``finished (N,)`` (now also the rows that picked ``<eos>``)."""
        w = w.masked_fill(finished, self.vocab.pad_id)
        total = total + logp.gather(1, w[:, None])[:, 0].masked_fill(finished, 0.0)
        count = count + (~finished).float()
        return w, total, count, finished | (w == self.vocab.eos_id)

    def _greedy(self, memory: _Memory, state, max_len: int, length_penalty: float, temperature: float | None):
        """Returns ``tokens (B, L)``, ``scores (B,)``, attention ``(B, L, T)`` or None, and ``cut (B,)`` bool: the
        caption reached ``max_len`` and its ``<eos>`` was forced there (the model's own choice was another word)."""
        B = memory.outputs.shape[0]
        dev = memory.outputs.device
        eos = self.vocab.eos_id
        words = torch.full((B,), self.vocab.bos_id, dtype=torch.long, device=dev)
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        total = torch.zeros(B, device=dev)
        count = torch.zeros(B, device=dev)
        cut = torch.zeros(B, dtype=torch.bool, device=dev)
        tokens, attns = [], []
        for t in range(max_len + 1):
            logits, state, attn = self._step(words, state, memory)
            logp = self._next_logp(logits, t, max_len)  # (N, V)
            if t == max_len:  # <eos> is forced here: was it the model's own choice?
                cut = ~finished & (self._next_logp(logits, t, max_len + 1).argmax(-1) != eos)
            if temperature is not None:
                probs = (logits.float() / temperature).masked_fill(logp == float("-inf"), float("-inf")).softmax(-1)
                w = torch.multinomial(probs, 1)[:, 0]
            else:
                w = logp.argmax(-1)  # (B,)
            if attn is not None:
                attns.append(attn.masked_fill(finished[:, None], 0.0))
            w, total, count, finished = self._greedy_advance(w, logp, finished, total, count)
            tokens.append(w)
            words = w
            if bool(finished.all()):
                break
        scores = total / count.clamp(min=1) ** length_penalty
        attention = torch.stack(attns, dim=1) if attns else None  # (B, L, T)
        return torch.stack(tokens, dim=1), scores, attention, cut

    def _beam(self, memory: _Memory, state, K: int, max_len: int, length_penalty: float):
        """Beam search with a pool of finished hypotheses (as Hugging Face ``BeamSearchScorer``; Wu et al. 2016
        for the length normalisation): per clip ``K`` live hypotheses are extended by the best ``2K`` candidates of
        each step; a candidate ending in ``<eos>`` within the best ``K`` enters the clip's pool of the ``K`` best
        finished hypotheses (by ``sum(log p) / num_tokens ** length_penalty``, ``<eos>`` counted), the best ``K``
        others live on. A clip is done when its pool is full and its best live hypothesis, normalised at its
        current length, scores no better than the pool's worst. Hypotheses still live at ``max_len`` are ended
        with ``<eos>`` there; those whose own next word was not ``<eos>`` are cut short and rank after every
        hypothesis that ended by itself, so a truncated caption is returned only when fewer than ``K`` finished.
        Pruning can drop the greedy caption's prefix for ``K`` prefixes that are more probable so far but run past
        ``max_len`` (the demo's "there is a small yellow circle that moves from the top to", cut, over greedy's
        finished "a small circle in blue moves from the top to the bottom"), so the greedy caption joins the pool
        too: the best caption returned is never ranked below greedy's under the same scoring. It is decoded in the
        same step loop, one more hypothesis per clip that follows the argmax and is never pruned. It reads the
        row of the live beam that holds its prefix (usually one does), and gets a row of its own in the batch
        only from the step its prefix is pruned until it ends: a row per clip throughout would cost as much as a
        separate greedy loop (the work grows with the rows, not the loops). With ``K = 1`` this is greedy
        decoding.

        Returns ``tokens (B, K, L)`` (each ends in ``<eos>``, then ``<pad>``), ``scores (B, K)`` (``-inf`` for a
        missing hypothesis), attention ``(B, K, L, T)`` or None."""
        B = memory.outputs.shape[0]
        N = B * K
        dev = memory.outputs.device
        pad, eos = self.vocab.pad_id, self.vocab.eos_id
        V = len(self.vocab)
        clips = memory  # (B, T, M); the batch's rows are the N beam rows, then the greedy rows of their own
        beams = memory.expand(K)  # (N, T, M)
        # the beam rows' memory, then room for the greedy rows of their own: the batch reads a prefix of it
        buf = _Memory(*(None if m is None else torch.cat([m, m[:B]]) for m in (beams.outputs, beams.keys, beams.mask)))
        memory = _Memory(buf.outputs[:N], None if buf.keys is None else buf.keys[:N], buf.mask[:N])
        state = tuple(repeat(s, "l b h -> l (b k) h", k=K) for s in state)  # (1, N, Hd)
        scores = torch.zeros(B, K, device=dev)
        scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
        scores = rearrange(scores, "b k -> (b k)")  # (N,) sum of log p of each live hypothesis
        words = torch.full((N,), self.vocab.bos_id, dtype=torch.long, device=dev)
        tokens = torch.zeros(N, 0, dtype=torch.long, device=dev)
        attn_hist = None  # (N, t, T)
        base = torch.arange(B, device=dev)[:, None] * K  # (B, 1)
        rank = torch.arange(2 * K, device=dev)[None]  # (1, 2K)
        g_row = base[:, 0].clone()  # (B,) the batch row holding each clip's greedy prefix (0 once it ended)
        g_finished = torch.zeros(B, dtype=torch.bool, device=dev)
        g_total = torch.zeros(B, device=dev)
        g_count = torch.zeros(B, device=dev)
        g_cut = torch.zeros(B, dtype=torch.bool, device=dev)
        g_tokens, g_attns = [], []  # per step (B,), (B, T)
        # per clip: [(truncated, -normalised score, order, tokens (L,), attention (L, T) or None)]
        pools: list[list[tuple]] = [[] for _ in range(B)]
        done = [False] * B
        beams_live = True  # False once every clip is done: then only greedy rows of their own are decoded
        layout = (True, [])  # the batch's rows: beam rows or not, clips with a greedy row of their own
        serial = 0
        for t in range(max_len + 1):
            logits, state, attn = self._step(words, state, memory)
            logp = self._next_logp(logits, t, max_len)  # (rows, V); at t == max_len only <eos> is finite
            # at max_len <eos> is forced: a hypothesis is cut short there unless <eos> was the model's own choice
            own_not_eos = None
            if t == max_len:
                own_not_eos = self._next_logp(logits, t, max_len + 1).argmax(-1) != eos  # (rows,)
                g_cut = ~g_finished & own_not_eos[g_row]
            if attn is not None:
                g_attns.append(attn[g_row].masked_fill(g_finished[:, None], 0.0))
            g_logp = logp[g_row]  # (B, V)
            g_words, g_total, g_count, g_finished = self._greedy_advance(g_logp.argmax(-1), g_logp, g_finished,
                                                                         g_total, g_count)
            g_tokens.append(g_words)
            if beams_live:
                cand = rearrange(scores[:, None] + logp[:N], "(b k) v -> b (k v)", k=K)  # (B, K*V)
                top, idx = cand.topk(min(2 * K, K * V), dim=1)  # (B, 2K) best first
                src = base + idx // V  # (B, 2K) flat index of the live hypothesis each candidate extends
                word = idx % V  # (B, 2K)
                done_t = torch.tensor(done, device=dev)  # (B,)
                ends = (word == eos) & torch.isfinite(top) & ~done_t[:, None]  # (B, 2K)
                finish = ends & (rank[:, : top.shape[1]] < K)  # only an <eos> among the best K candidates finishes
                cut_list = own_not_eos[:N].tolist() if t == max_len else [False] * N
                top_list = top.detach().tolist()
                for b, j in finish.nonzero().tolist():
                    truncated = cut_list[int(src[b, j])]
                    score = top_list[b][j] / (t + 1) ** length_penalty  # t + 1 tokens, <eos> included
                    pool = pools[b]
                    if not truncated and len(pool) >= K:
                        worst = max(range(len(pool)), key=lambda i: pool[i][:3])
                        if (False, -score, serial) >= pool[worst][:3]:
                            continue
                        pool.pop(worst)
                    seq = torch.cat([tokens[src[b, j]], word[b, j: j + 1]])  # (t + 1,)
                    hist = None
                    if attn is not None:
                        prev = attn_hist[src[b, j]] if attn_hist is not None else attn.new_zeros(0, attn.shape[-1])
                        hist = torch.cat([prev, attn[src[b, j]][None]])  # (t + 1, T)
                    pool.append((truncated, -score, serial, seq, hist))
                    serial += 1
                # the best K candidates that do not end live on
                key = rank[:, : top.shape[1]] + (word == eos) * (2 * K) + (~torch.isfinite(top)) * (4 * K)
                keep = key.argsort(dim=1)[:, :K]  # (B, K)
                live = top.gather(1, keep)  # (B, K) best first
                # an <eos> is kept only when fewer than K other candidates are finite (K > V - 3): its beam is dead,
                # it must not go on after <eos>
                live = live.masked_fill(word.gather(1, keep) == eos, float("-inf"))
                best_live = (live[:, 0] / (t + 1) ** length_penalty).tolist()
                for b, pool in enumerate(pools):  # done: the pool is full and beats the best live hypothesis
                    if not done[b] and len(pool) >= K and min(-h[1] for h in pool) >= best_live[b]:
                        done[b] = True
            if t == max_len:
                break
            beams_live = beams_live and not all(done)
            on_beam = torch.zeros(B, dtype=torch.bool, device=dev)  # the greedy prefix is a live beam's
            if beams_live:
                scores = rearrange(live.masked_fill(torch.tensor(done, device=dev)[:, None], float("-inf")),
                                   "b k -> (b k)")  # a clip that is done keeps dead beams
                sel = rearrange(src.gather(1, keep), "b k -> (b k)")  # (N,)
                beam_words = rearrange(word.gather(1, keep), "b k -> (b k)")
                tokens = torch.cat([tokens[sel], beam_words[:, None]], dim=1)  # (N, t+1)
                if attn is not None:
                    step_attn = attn[sel][:, None]  # (N, 1, T)
                    attn_hist = step_attn if attn_hist is None else torch.cat([attn_hist[sel], step_attn], dim=1)
                match = ((sel.view(B, K) == g_row[:, None])
                         & (beam_words.view(B, K) == g_words[:, None]))  # (B, K): at most one beam per clip
                on_beam = match.any(1) & ~g_finished
            own = (~g_finished & ~on_beam).nonzero()[:, 0]  # (d,) clips whose greedy prefix no beam holds
            own_list = own.tolist()
            if not beams_live and not own_list:
                break
            rows = sel if beams_live else own.new_zeros(0)  # (rows,) the rows that go on: beams, then own greedy
            words = beam_words if beams_live else own.new_zeros(0)
            new_row = base[:, 0] + match.int().argmax(1) if beams_live else g_row
            new_row = torch.where(on_beam, new_row, 0)  # an ended greedy caption reads row 0 (its step is masked)
            if own_list:
                new_row[own] = len(rows) + torch.arange(len(own_list), device=dev)
                rows = torch.cat([rows, g_row[own]])
                words = torch.cat([words, g_words[own]])
            g_row = new_row
            state = tuple(s.index_select(1, rows) for s in state)
            if (beams_live, own_list) != layout:  # the rows changed: so does the memory they read
                layout = (beams_live, own_list)
                if beams_live:  # the greedy rows' memory goes after the beam rows': d rows copied, a prefix read
                    n = N + len(own_list)
                    for part, whole in ((buf.outputs, clips.outputs), (buf.keys, clips.keys), (buf.mask, clips.mask)):
                        if part is not None:
                            part[N:n] = whole[own]
                    memory = _Memory(buf.outputs[:n], None if buf.keys is None else buf.keys[:n], buf.mask[:n])
                else:
                    memory = _Memory(clips.outputs[own], None if clips.keys is None else clips.keys[own],
                                     clips.mask[own])  # (d, T, M)
        g_tokens = torch.stack(g_tokens, dim=1)  # (B, Lg)
        g_scores = g_total / g_count.clamp(min=1) ** length_penalty  # (B,)
        g_attn = torch.stack(g_attns, dim=1) if g_attns else None  # (B, Lg, T)
        g_len = ((g_tokens == eos).int().argmax(1) + 1).tolist()  # every greedy caption ends in one <eos>
        for b, pool in enumerate(pools):
            seq = g_tokens[b, : g_len[b]]
            if not any(torch.equal(seq, h[3]) for h in pool):  # the beams found it too
                hist = None if g_attn is None else g_attn[b, : g_len[b]]
                pool.append((bool(g_cut[b]), -float(g_scores[b]), serial, seq, hist))
                serial += 1
        L = max(len(h[3]) for pl in pools for h in pl)
        T = memory.outputs.shape[1]
        beam_tokens = torch.full((B, K, L), pad, dtype=torch.long, device=dev)
        beam_scores = torch.full((B, K), float("-inf"), device=dev)
        beam_attention = None if attn is None else torch.zeros(B, K, L, T, device=dev)
        for b, pl in enumerate(pools):
            for k, (_, neg, _, seq, hist) in enumerate(sorted(pl, key=lambda h: h[:3])[:K]):
                beam_tokens[b, k, : len(seq)] = seq
                beam_scores[b, k] = -neg
                if hist is not None:
                    beam_attention[b, k, : len(seq)] = hist
        return beam_tokens, beam_scores, beam_attention
