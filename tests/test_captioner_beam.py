"""Beam search returns complete captions: hypotheses that end by the model's own ``<eos>`` are kept in a pool and
preferred, one cut short at ``max_len`` is returned only when none ended (issue #14: a beam-5 caption ended in
"... to the top to"); beam 1 is greedy decoding.

Two parts: a hand-written bigram language model plugged into the real beam search (the search is under test, the
scores are known in closed form), and a real captioner trained on the synthetic set's caption templates, whose
beam-5 captions must be sentences of that grammar.
"""

import itertools
import math

import pytest
import torch

from seqvision.config import ModelConfig
from seqvision.data.synth import _PHRASES, _TEMPLATES, COLOURS, SHAPES  # the caption grammar of the synthetic set
from seqvision.data.vocab import Vocabulary
from seqvision.models import Captioner, SequenceEncoder, build_model

FUNCTION_WORDS = {"a", "the", "to", "in", "that", "from", "is", "there"}


class BigramCaptioner(Captioner):
    """The real decoding code over a fixed next-word table ``P(w | previous word)`` (the RNN step replaced)."""

    def __init__(self, vocab: Vocabulary, table: dict[str, dict[str, float]], max_len: int):
        super().__init__(SequenceEncoder(3, hidden=4), vocab, decoder="s2vt", embed_dim=4, max_len=max_len)
        logp = torch.full((len(vocab), len(vocab)), -30.0)  # (previous word, next word)
        for prev, nxt in table.items():
            for word, p in nxt.items():
                logp[vocab.stoi[prev], vocab.stoi[word]] = math.log(p)
        self.table = logp

    def _step(self, words, state, memory):
        return self.table[words], state, None


def _bigram(max_len: int) -> BigramCaptioner:
    vocab = Vocabulary.build(["a shape moves to the top", "it ends"])
    table = {"<bos>": {"a": 0.9, "it": 0.1}, "a": {"shape": 1.0}, "shape": {"moves": 1.0}, "moves": {"to": 1.0},
             "to": {"the": 1.0}, "the": {"top": 1.0}, "top": {"to": 0.99, "<eos>": 0.01}, "it": {"ends": 1.0},
             "ends": {"<eos>": 1.0}}
    return BigramCaptioner(vocab, table, max_len).eval()


def test_a_caption_cut_at_max_len_ranks_after_finished_ones():
    """Max 9 words: "a shape moves to the top to the top" + forced <eos> has the best length-normalised score
    (log(.9 * .99 * .01) / 10 = -0.472) but the model did not end it; the finished "a shape moves to the top"
    (log(.9 * .01) / 7 = -0.673) and "it ends" (log(.1) / 3 = -0.768) come first."""
    model = _bigram(max_len=9)
    x, lengths = torch.zeros(2, 3, 3), torch.tensor([3, 2])
    out = model.predict(x, lengths, beam_size=3, length_penalty=1.0)
    texts = [[model.vocab.decode(t) for t in clip] for clip in out.beam_tokens]
    assert texts[0] == ["a shape moves to the top", "it ends", "a shape moves to the top to the top"]
    assert texts[1] == texts[0] and out.texts == ["a shape moves to the top"] * 2
    want = [math.log(0.9 * 0.01) / 7, math.log(0.1) / 3, math.log(0.9 * 0.99 * 0.01) / 10]
    torch.testing.assert_close(out.beam_scores[0], torch.tensor(want), atol=1e-4, rtol=0)
    # greedy follows the most probable word: it loops and is cut at max_len
    assert model.predict(x, lengths).texts[0] == "a shape moves to the top to the top"
    # with room to finish, the loop's own <eos> after "... to the top to the top" (p .01) ends it: the same
    # words and score, now a finished caption, so length normalisation ranks it first
    long = _bigram(max_len=12).predict(x, lengths, beam_size=3, length_penalty=1.0)
    assert long.texts[0] == "a shape moves to the top to the top"
    torch.testing.assert_close(long.scores[0], torch.tensor(want[2]), atol=1e-4, rtol=0)


def test_only_cut_captions_when_none_finished():
    model = _bigram(max_len=4)  # nothing but "it ends" can finish in 4 words; with one beam it is not found
    x, lengths = torch.zeros(1, 3, 3), torch.tensor([3])
    assert model.predict(x, lengths, beam_size=1).texts == ["a shape moves to"]
    out = model.predict(x, lengths, beam_size=2)
    assert [model.vocab.decode(t) for t in out.beam_tokens[0]] == ["it ends", "a shape moves to"]


def test_greedy_caption_that_finished_beats_beams_cut_at_max_len():
    """The demo's bug: beam 2 and 3 returned "there is a small yellow circle that moves from the top to" (cut at
    12 words, score -3.16) where greedy finished "a small circle in blue moves from the top to the bottom" (-2.00).
    Here, with at most 3 words, greedy ends "one dot stops" by itself (log(.4 * .4) / 4 ** .6), but after one
    word the two beams hold "there" (.38) and "one" (.4), after two "there goes" (.38 * .52) and "there runs"
    (.38 * .48) over "one dot" (.16); both run on and are cut at max_len ("there goes on" + a forced <eos> of
    p ~1e-13). The greedy caption must come first."""
    vocab = Vocabulary.build(["one dot stops", "one spot blob", "there here goes runs on and"])
    table = {"<bos>": {"one": 0.4, "there": 0.38, "here": 0.22}, "one": {"dot": 0.4, "spot": 0.3, "blob": 0.3},
             "dot": {"stops": 1.0}, "stops": {"<eos>": 1.0}, "there": {"goes": 0.52, "runs": 0.48},
             "here": {"goes": 1.0}, "goes": {"on": 1.0}, "runs": {"on": 1.0}, "on": {"and": 1.0}, "and": {"on": 1.0}}
    model = BigramCaptioner(vocab, table, max_len=3).eval()
    x, lengths = torch.zeros(1, 3, 3), torch.tensor([3])
    greedy = model.predict(x, lengths)
    assert greedy.texts == ["one dot stops"]
    want = math.log(0.4 * 0.4) / 4 ** 0.6
    torch.testing.assert_close(greedy.scores, torch.tensor([want]), atol=1e-4, rtol=0)
    out = model.predict(x, lengths, beam_size=2)
    assert [model.vocab.decode(t) for t in out.beam_tokens[0]] == ["one dot stops", "there goes on"]
    torch.testing.assert_close(out.scores, torch.tensor([want]), atol=1e-4, rtol=0)
    assert out.beam_scores[0, 1] < -5  # the cut caption's forced <eos> (p ~1e-13)
    for beam in (2, 3, 4):  # never worse than greedy's finished caption, and greedy's caption only once
        out = model.predict(x, lengths, beam_size=beam)
        texts = [model.vocab.decode(t) for t in out.beam_tokens[0]]
        assert texts[0] == "one dot stops" and len(set(texts)) == len(texts), (beam, texts)
        assert float(out.scores[0]) >= float(greedy.scores[0]) - 1e-6, beam


class RowCountingBigram(BigramCaptioner):
    """Records how many rows each decoder step ran."""

    def _step(self, words, state, memory):
        self.rows.append(len(words))
        return super()._step(words, state, memory)


def test_greedy_caption_decoded_alone_after_every_beam_is_done():
    """Two beams: after one word they hold "one" (.4) and "there" (.36); after two "there goes" (.36 * .55) and
    "there runs" (.36 * .45) prune greedy's "one dot" (.16); both end at the next word, which fills the pool and
    ends the beam search after 3 steps. The greedy caption is still running then ("one dot a b", finished at the
    5th step) and has the best score: log(.16) / 5 ** .6 = -0.698 over log(.198) / 3 ** .6 = -0.838. Its row
    is the beam's while the beam holds its prefix, its own from step 3, the only one from step 4."""
    vocab = Vocabulary.build(["one dot spot blob a b there here goes runs"])
    table = {"<bos>": {"one": 0.4, "there": 0.36, "here": 0.24}, "one": {"dot": 0.4, "spot": 0.3, "blob": 0.3},
             "dot": {"a": 1.0}, "a": {"b": 1.0}, "b": {"<eos>": 1.0}, "there": {"goes": 0.55, "runs": 0.45},
             "here": {"goes": 1.0}, "goes": {"<eos>": 1.0}, "runs": {"<eos>": 1.0}}
    model = RowCountingBigram(vocab, table, max_len=8).eval()
    x, lengths = torch.zeros(1, 3, 3), torch.tensor([3])
    model.rows = []
    greedy = model.predict(x, lengths)
    assert greedy.texts == ["one dot a b"]
    model.rows = []
    out = model.predict(x, lengths, beam_size=2)
    assert model.rows == [2, 2, 3, 1, 1]
    assert [model.vocab.decode(t) for t in out.beam_tokens[0]] == ["one dot a b", "there goes"]
    want = [math.log(0.16) / 5 ** 0.6, math.log(0.36 * 0.55) / 3 ** 0.6]
    torch.testing.assert_close(out.beam_scores[0], torch.tensor(want), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.scores, greedy.scores)


# ---------------------------------------------------------------------------------------------------------------
# random tiny captioners against exhaustive search

def _tiny_captioner(seed: int, decoder: str, cell: str) -> Captioner:
    """2 words (+ <unk>, also a word the decoder may emit), max 3 words: 1 + 3 + 9 + 27 = 40 captions. The word
    classifier is scaled up so that the distributions are far from uniform and <eos> comes at different steps."""
    torch.manual_seed(seed)
    cfg = ModelConfig(task="caption", cell=cell, hidden=8, embed_dim=4, attention_dim=4, decoder=decoder,
                      head_dropout=0.0, max_caption_len=3)
    model = build_model(cfg, input_dim=5, vocab=Vocabulary.build(["a b"])).eval()
    with torch.no_grad():
        model.out.weight.mul_(3.0)
    return model


def _all_captions(model: Captioner, x: torch.Tensor, lengths: torch.Tensor, length_penalty: float):
    """Every caption of at most ``max_len`` words for each clip, scored teacher-forced (no search): per clip a list
    of ``(cut, score, ids with <eos>)`` best first, ranked as :meth:`Captioner.predict` documents (captions that
    end by the model's own ``<eos>`` before those cut at ``max_len``, then by ``sum(log p) / tokens ** lp``)."""
    vocab, L = model.vocab, model.max_len
    words = [i for i in range(len(vocab)) if i not in (vocab.pad_id, vocab.bos_id, vocab.eos_id)]
    out = [[] for _ in range(len(x))]
    with torch.no_grad():
        for n in range(L + 1):
            combos = list(itertools.product(words, repeat=n))
            S = len(combos)
            seqs = torch.tensor(combos, dtype=torch.long).reshape(S, n)  # (S, n)
            inputs = torch.cat([torch.full((S, 1), vocab.bos_id), seqs], dim=1)  # (S, n + 1)
            targets = torch.cat([seqs, torch.full((S, 1), vocab.eos_id)], dim=1)
            for b in range(len(x)):
                logits = model(x[b: b + 1].expand(S, -1, -1), lengths[b: b + 1].expand(S), inputs).logits
                logp = logits.float().log_softmax(-1)  # (S, n + 1, V)
                total = logp.gather(2, targets[..., None])[..., 0].sum(1)  # (S,)
                last = logp[:, -1].clone()
                last[:, [vocab.pad_id, vocab.bos_id]] = float("-inf")  # never generated
                cut = (last.argmax(-1) != vocab.eos_id) & (n == L)  # <eos> forced at max_len, not the model's
                for s in range(S):
                    out[b].append((bool(cut[s]), float(total[s]) / (n + 1) ** length_penalty, targets[s].tolist()))
    return [sorted(c, key=lambda h: (h[0], -h[1])) for c in out]


@pytest.mark.parametrize("decoder,cell", [("attention", "lstm"), ("s2vt", "gru"), ("attention", "rnn")])
def test_beam_wide_enough_for_every_caption_is_exhaustive_search(decoder, cell):
    """With K >= the number of captions (40) beam search keeps every one: its K results are all captions,
    ranked; the best is the true best caption. Orders are compared where scores differ by more than float noise."""
    for seed in range(3):
        model = _tiny_captioner(seed, decoder, cell)
        g = torch.Generator().manual_seed(seed)
        x, lengths = torch.randn(3, 4, 5, generator=g), torch.tensor([4, 2, 3])
        for lp in (0.0, 0.6, 1.0):
            truth = _all_captions(model, x, lengths, lp)
            out = model.predict(x, lengths, beam_size=40, length_penalty=lp)
            assert out.beam_tokens.shape[1] == 40
            for b in range(len(x)):
                got = [(row[: row.index(model.vocab.eos_id) + 1], float(s))
                       for row, s in zip(out.beam_tokens[b].tolist(), out.beam_scores[b])]
                torch.testing.assert_close(torch.tensor([s for _, s in got]), torch.tensor([h[1] for h in truth[b]]),
                                           atol=1e-5, rtol=0)
                assert sorted(map(tuple, (t for t, _ in got))) == sorted(tuple(h[2]) for h in truth[b])
                for k, (tokens, _) in enumerate(got):
                    near = [h[2] for h in truth[b] if h[0] == truth[b][k][0] and abs(h[1] - truth[b][k][1]) < 1e-5]
                    assert tokens in near, (seed, lp, b, k)


@pytest.mark.parametrize("decoder,cell", [("attention", "lstm"), ("s2vt", "lstm"), ("attention", "gru")])
def test_greedy_row_is_the_greedy_caption(decoder, cell):
    """Beam K returns the best K of its finished pool plus the greedy caption: the greedy caption (tokens, score,
    cut or not, as the standalone greedy decoding gives them) is among the K results unless K results rank
    ahead of it. Random tiny captioners, where greedy's prefix is often pruned."""
    checked = {"returned": 0, "outranked": 0}
    for seed in range(8):
        model = _tiny_captioner(seed, decoder, cell)
        g = torch.Generator().manual_seed(100 + seed)
        x, lengths = torch.randn(6, 4, 5, generator=g), torch.randint(1, 5, (6,), generator=g)
        with torch.no_grad():
            memory, state = model._encode(x, lengths)
            g_tokens, g_scores, _, g_cut = model._greedy(memory, state, model.max_len, 0.6, None)
        for K in (1, 2, 3, 5):
            out = model.predict(x, lengths, beam_size=K)
            for b in range(len(x)):
                seq = g_tokens[b].tolist()
                seq = seq[: seq.index(model.vocab.eos_id) + 1]
                rows = [row[: row.index(model.vocab.eos_id) + 1] if model.vocab.eos_id in row else None
                        for row in out.beam_tokens[b].tolist()]
                if seq in rows:
                    k = rows.index(seq)
                    assert abs(float(out.beam_scores[b, k]) - float(g_scores[b])) < 1e-5, (seed, K, b)
                    checked["returned"] += 1
                else:  # K captions rank ahead: finished ones only, if greedy finished, each scoring at least as well
                    assert torch.isfinite(out.beam_scores[b]).all(), (seed, K, b)
                    if not g_cut[b]:
                        assert (out.beam_scores[b] >= g_scores[b] - 1e-5).all(), (seed, K, b)
                    checked["outranked"] += 1
    assert checked["returned"] and checked["outranked"], checked


# ---------------------------------------------------------------------------------------------------------------
# a captioner trained on the synthetic caption grammar

ACTIONS = sorted(_PHRASES)
SIZES = ("small", "big")


def _grammar() -> set[str]:
    out = set()
    for action, colour, shape, size in itertools.product(ACTIONS, COLOURS, SHAPES, SIZES + (None,)):
        words = {"size": f"{size} " if size else "", "colour": colour, "shape": shape}
        out |= {t.format(phrase=p, **words) for t in _TEMPLATES for p in _PHRASES[action]}
    return out


def _clips(n: int, seed: int):
    """Features spelling (colour, shape, size, action) as one-hot blocks plus noise, ``(n, 6, D)``, and all of the
    grammar's captions of each clip as references."""
    g = torch.Generator().manual_seed(seed)
    feats, refs = [], []
    for _ in range(n):
        a = int(torch.randint(len(ACTIONS), (1,), generator=g))
        c = int(torch.randint(len(COLOURS), (1,), generator=g))
        s = int(torch.randint(len(SHAPES), (1,), generator=g))
        z = int(torch.randint(2, (1,), generator=g))
        action, colour, shape = ACTIONS[a], list(COLOURS)[c], SHAPES[s]
        size = None if action in ("grows", "shrinks") else SIZES[z]
        v = torch.zeros(len(ACTIONS) + len(COLOURS) + len(SHAPES) + 2)
        v[[a, len(ACTIONS) + c, len(ACTIONS) + len(COLOURS) + s, -2 + z]] = 1.0
        feats.append(v + 0.1 * torch.randn(6, len(v), generator=g))
        words = {"size": f"{size} " if size else "", "colour": colour, "shape": shape}
        refs.append(sorted({t.format(phrase=p, **words) for t in _TEMPLATES[:3] for p in _PHRASES[action][:2]}))
    return torch.stack(feats), refs


@pytest.fixture(scope="module")
def trained():
    x, refs = _clips(64, seed=0)
    vocab = Vocabulary.build([c for r in refs for c in r])
    torch.manual_seed(0)
    cfg = ModelConfig(task="caption", cell="lstm", hidden=48, embed_dim=32, attention_dim=32, decoder="attention",
                      head_dropout=0.0, max_caption_len=12)
    model = build_model(cfg, input_dim=x.shape[-1], vocab=vocab)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    lengths = torch.full((len(x),), x.shape[1])
    for step in range(80):
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(step))[:16]
        opt.zero_grad()
        loss = model.loss(x[idx], lengths[idx], {"captions": [refs[i] for i in idx.tolist()]})
        loss.backward()
        opt.step()
    return model.eval(), float(loss.detach())


def test_trained_captioner_beam_captions_are_complete_sentences(trained):
    model, loss = trained
    assert loss < 1.0, loss  # it learned the grammar (a uniform choice among 6 references is ln 6 / ~7 words)
    x, refs = _clips(24, seed=1)
    lengths = torch.full((len(x),), x.shape[1])
    grammar = _grammar()
    for beam in (3, 5):
        out = model.predict(x, lengths, beam_size=beam)
        for text, tokens in zip(out.texts, out.tokens.tolist()):
            assert text in grammar, (beam, text)
            assert text.split()[-1] not in FUNCTION_WORDS, (beam, text)
            assert model.vocab.eos_id in tokens
        assert torch.isfinite(out.scores).all()


def test_trained_captioner_beam_never_ranks_below_a_finished_greedy_caption(trained):
    """Beam K's best caption scores at least greedy's whenever greedy ended by itself (same scoring), and is
    itself finished then; ``max_len`` 7 is short for this grammar, so some beams run past it."""
    model, _ = trained
    x, _ = _clips(24, seed=3)
    lengths = torch.full((len(x),), x.shape[1])
    with torch.no_grad():
        memory, state = model._encode(x, lengths)
        _, greedy_scores, _, cut = model._greedy(memory, state, 7, 0.6, None)
    assert 0 < int((~cut).sum()) < len(x)  # both kinds occur
    for beam in (2, 3, 5):
        out = model.predict(x, lengths, beam_size=beam, max_len=7)
        ok = ~cut
        assert (out.scores[ok] >= greedy_scores[ok] - 1e-5).all(), beam


def test_trained_captioner_beam_one_is_greedy(trained):
    model, _ = trained
    x, _ = _clips(8, seed=2)
    lengths = torch.tensor([6, 5, 6, 3, 6, 4, 6, 6])
    greedy = model.predict(x, lengths, length_penalty=0.6)
    with torch.no_grad():
        memory, state = model._encode(x, lengths)
        tokens, scores, attention = model._beam(memory, state, 1, model.max_len, 0.6)
    assert tokens.shape[1] == 1  # one hypothesis: greedy's, not also a copy of it
    assert torch.equal(tokens[:, 0, : greedy.tokens.shape[1]], greedy.tokens)
    torch.testing.assert_close(scores[:, 0], greedy.scores)
    torch.testing.assert_close(attention[:, 0, : greedy.attention.shape[1]], greedy.attention)
