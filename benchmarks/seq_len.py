"""Sequence-length benchmark: how the RNN encoders (and a Transformer) scale with the number of frames T.

    python benchmarks/seq_len.py [--quick] [--out bench_out/seq_len] [--batch 8] [--width 64] [--hidden 64]
                                 [--reps 3] [--threads 1] [--device auto] [--cells rnn,lstm,gru,mingru,minlstm]
                                 [--layers 1,2,3] [--directions uni,bi] [--sections ...]
    seqvision bench seq-len --quick
    seqvision bench seq-len --device cuda --batch 32 --width 512 --hidden 512 --max-t 16384 --layers 1 \
        --directions uni --sections scaling,longrange          # the sizes people train

Sections (all side by side in one process, interleaved where two things are compared, median of --reps):
  scaling     forward+backward time (min of --reps) and memory vs T = 8, 16, ..., 4096 (--quick: to 512) for every cell
              (--cells: rnn, lstm, gru through the fused torch kernels, cuDNN on CUDA and oneDNN on CPU; mingru,
              minlstm through the log-space parallel scan of seqvision.models._minrnn) x layers (--layers; default
              1-3, --quick 1-2) x uni/bidirectional (--directions), and a Transformer encoder layer (attention by
              torch's scaled_dot_product_attention: flash / memory-efficient kernels where the device has them) of
              about the parameter count of the 1-layer LSTM. A model's sweep stops once a step takes over
              --max-seconds or runs out of memory. Growth exponent = log-log slope over the upper half of the T
              values. Crossover = the smallest T from which the Transformer stays slower than the RNN. For the min
              cells also the float32 scan's largest relative error against a float64 run of the same weights.
  longrange   what each model learns vs T: a synthetic task whose label (4 classes) is the pair of signs of one
              marker frame in the first eighth of the clip and one in the last eighth (the rest is noise), so a
              model must carry the early frame across ~T steps. Every model (--acc-layers layers,
              unidirectional; Transformer with mean pooling) trains --acc-steps Adam steps on fresh batches, then
              is scored on 512 held-out clips. Chance = 0.25; remembering only the late frame = 0.5.
  overhead    seqvision SequenceEncoder vs a bare torch.nn.LSTM/GRU of the same shape (goal <= 1.05).
  packing     bidirectional with variable lengths: ours (padded + per-sequence reverse, exact) vs
              pack_padded_sequence through nn.LSTM(bidirectional=True) (exact) vs bare padded (NOT exact).
  decoding    captioner greedy vs beam-5 time vs number of frames and vs caption length; clips/s ratio.

Memory: on CUDA, torch.cuda.max_memory_allocated over the step minus what was allocated before. On CPU there is
no allocator peak counter (and tracemalloc does not see torch's allocations), so we report an estimate: the bytes
of the tensors autograd saves for backward (unique storages, parameters excluded, via
torch.autograd.graph.saved_tensors_hooks): the activation memory that grows with T. It leaves out transient
buffers (the real peak is higher by roughly one layer's temporaries).
CPU timings use --threads intra-op threads (default 1: stable on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from seqvision.config import ModelConfig  # noqa: E402
from seqvision.data.vocab import Vocabulary  # noqa: E402
from seqvision.models import SequenceEncoder, build_model  # noqa: E402
from seqvision.models._encoder import make_rnn  # noqa: E402
from seqvision.models._minrnn import MinRNN  # noqa: E402

MIN_CELLS = ("mingru", "minlstm")


# ----------------------------------------------------------------------------------------------------------------
# measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: nn.Module, run) -> None:
    model.zero_grad(set_to_none=True)
    out = run()
    out.float().sum().backward()


def _time_once(model, run, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    _step(model, run)
    _sync(device)
    return time.perf_counter() - t0


def interleaved(cases: dict[str, tuple[nn.Module, callable]], device, reps: int, *,
                stat=statistics.median) -> dict[str, float]:
    """Median (or ``stat``) seconds of forward+backward per case, run interleaved (rotating order) after a warm-up."""
    for model, run in cases.values():
        _step(model, run)
    times = {name: [] for name in cases}
    names = list(cases)
    for r in range(reps):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(_time_once(*cases[name], device))
    return {name: stat(v) for name, v in times.items()}


def memory_bytes(model: nn.Module, run, device) -> int:
    """Peak extra CUDA memory of one step, or (CPU) bytes saved for backward."""
    if device.type == "cuda":
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _step(model, run)
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    out.float().sum().backward()
    return sum(seen.values())


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x over the upper half of the points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y and y > 0]
    pts = pts[len(pts) // 2:] if len(pts) >= 4 else pts
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


# ----------------------------------------------------------------------------------------------------------------
# models under test


class TransformerEncoder(nn.Module):
    """A pre-norm Transformer encoder over (B, T, D) with learned positions, sized to a parameter budget."""

    def __init__(self, width: int, d_model: int, *, params_target: int, max_len: int, nhead: int = 4,
                 layers: int = 1):
        super().__init__()
        self.proj = nn.Linear(width, d_model) if width != d_model else nn.Identity()
        base = 4 * d_model * d_model + 4 * d_model + 6 * d_model  # attention + norms + ff output bias
        ff = max(d_model, round((params_target - base) / (2 * d_model + 1)))
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=ff, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.enc = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)

    def forward(self, x):
        h = self.proj(x) + self.pos[:, : x.shape[1]]  # (B, T, d)
        return self.enc(h)


def n_params(m: nn.Module, exclude: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for n, p in m.named_parameters() if not n.startswith(exclude))


# ----------------------------------------------------------------------------------------------------------------
# sections


def _out_of_memory(err: Exception) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


@torch.no_grad()
def scan_rel_error(cell: str, D: int, H: int, T: int, device) -> float:
    """Largest relative error of the float32 minGRU/minLSTM scan against float64 (same weights, 2 clips)."""
    torch.manual_seed(0)
    rnn = MinRNN(cell, D, H).to(device)
    x = torch.randn(2, T, D, device=device)
    out32 = rnn(x)[0].double()
    out64 = rnn.double()(x.double())[0]
    return float(((out32 - out64).abs() / out64.abs().clamp_min(1e-6)).max())


def section_scaling(args, device, Ts) -> dict:
    B, D, H = args.batch, args.width, args.hidden
    cells = [c for c in args.cells.split(",") if c]
    configs = [(c, n, bi) for c in cells for n in args.layer_list for bi in args.bidirectional_list]
    ref_lstm = SequenceEncoder(D, cell="lstm", hidden=H)
    target = n_params(ref_lstm)
    models, rows = {}, {}
    names = [f"{c}-L{n}-{'bi' if bi else 'uni'}" for c, n, bi in configs] + ["transformer"]
    for name, cfg in zip(names, configs + [None]):
        torch.manual_seed(0)
        if cfg is None:
            models[name] = TransformerEncoder(D, H, params_target=target, max_len=max(Ts)).to(device)
            count = n_params(models[name], ("pos",))
        else:
            c, n, bi = cfg
            models[name] = SequenceEncoder(D, cell=c, hidden=H, layers=n, bidirectional=bi).to(device)
            count = n_params(models[name])
        rows[name] = {"params": count, "T": [], "ms": [], "mem_bytes": []}
    print(f"\n== scaling: forward+backward vs T (B={B}, D={D}, H={H}); at each T every model is timed interleaved "
          f"(rotating order), min of {args.reps} ==")
    print(f"{'T':>6}  " + "".join(f"{n[:12]:>13}" for n in names) + "   (ms)")
    active = list(names)
    for T in Ts:
        if not active:
            break
        x = torch.randn(B, T, D, device=device)
        lengths = torch.full((B,), T, dtype=torch.long)
        runs = {n: (models[n], (lambda m=models[n]: m(x)) if n == "transformer"
                    else (lambda m=models[n]: m(x, lengths).outputs)) for n in active}
        try:
            secs = interleaved(runs, device, args.reps, stat=min)  # min: robust to a busy CPU
            mems = {n: memory_bytes(*runs[n], device) for n in active}
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not _out_of_memory(err):
                raise
            # find who fits alone: the others stop here
            secs, mems = {}, {}
            for n in active:
                try:
                    secs[n] = interleaved({n: runs[n]}, device, args.reps, stat=min)[n]
                    mems[n] = memory_bytes(*runs[n], device)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as err2:
                    if not _out_of_memory(err2):
                        raise
                    rows[n]["out_of_memory_at_T"] = T
                    models[n].zero_grad(set_to_none=True)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
        for n, sec in secs.items():
            rows[n]["T"].append(T)
            rows[n]["ms"].append(sec * 1e3)
            rows[n]["mem_bytes"].append(mems[n])
        print(f"{T:>6}  " + "".join(f"{secs[n] * 1e3:>13.2f}" if n in secs else f"{'-':>13}" for n in names))
        # the next T would take too long (or did not fit): stop that model here
        active = [n for n in active if n in secs and secs[n] <= args.max_seconds]
        del x, runs
    for name, row in rows.items():
        row["time_exponent"] = slope(row["T"], row["ms"])
        row["mem_exponent"] = slope(row["T"], row["mem_bytes"])
        if name.startswith(MIN_CELLS) and name.endswith("-L1-uni") and row["T"]:
            row["scan_rel_error_f32"] = {T: scan_rel_error(name.split("-")[0], D, H, T, device) for T in row["T"][-1:]}
    results = rows
    print(f"\n{'model':<22}{'time exp':>9}{'mem exp':>9}{'MB@maxT':>10}{'/transf.@maxT':>14}"
          f"  transformer slower from T=")
    tr = results["transformer"]
    for name, row in results.items():
        cross = None
        if name != "transformer":
            pairs = list(zip(row["T"], row["ms"], tr["ms"]))
            for i, (T, _, _) in enumerate(pairs):
                if all(t_ms > r_ms for _, r_ms, t_ms in pairs[i:]):
                    cross = T
                    break
            row["transformer_slower_from_T"] = cross
            row["time_over_transformer"] = [r / t for _, r, t in pairs]
        te, me = row["time_exponent"], row["mem_exponent"]
        ratio = row.get("time_over_transformer", [])
        mb = row["mem_bytes"][-1] / 2**20 if row["mem_bytes"] else float("nan")
        print(f"{name:<22}{te if te is None else round(te, 2)!s:>9}{me if me is None else round(me, 2)!s:>9}"
              f"{mb:>10.1f}{(f'{ratio[-1]:.2f}' if ratio else ''):>14}  "
              f"{'' if name == 'transformer' else (cross or 'never')}")
    for name, row in results.items():
        for T, err in row.get("scan_rel_error_f32", {}).items():
            print(f"{name}: float32 scan vs float64, largest relative error at T={T}: {err:.1e}")
    return results


# ----------------------------------------------------------------------------------------------------------------
# long-range task


def long_range_batch(n: int, T: int, D: int, *, generator: torch.Generator,
                     device) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (n, T, D)``, ``labels (n,)`` in 0..3: feature 0 holds +-1 at one frame in the first eighth of the clip,
    feature 1 holds +-1 at one frame in the last eighth (zero elsewhere); features 2.. are N(0, 1) noise.
    ``label = 2 * [early > 0] + [late > 0]``."""
    x = torch.randn(n, T, D, generator=generator)
    x[..., :2] = 0
    span = max(1, T // 8)
    early_t = torch.randint(0, span, (n,), generator=generator)
    late_t = T - 1 - torch.randint(0, span, (n,), generator=generator)
    a = torch.randint(0, 2, (n,), generator=generator)
    b = torch.randint(0, 2, (n,), generator=generator)
    idx = torch.arange(n)
    x[idx, early_t, 0] = a.float() * 2 - 1
    x[idx, late_t, 1] = b.float() * 2 - 1
    return x.to(device), (2 * a + b).to(device)


class _Classifier(nn.Module):
    """Encoder + linear head: RNNs read their final state, the Transformer its mean over time."""

    def __init__(self, kind: str, D: int, H: int, max_len: int, layers: int):
        super().__init__()
        self.kind = kind
        if kind == "transformer":
            self.enc = TransformerEncoder(D, H, params_target=n_params(SequenceEncoder(D, cell="lstm", hidden=H)),
                                          max_len=max_len, layers=layers)
        else:
            self.enc = SequenceEncoder(D, cell=kind, hidden=H, layers=layers)
        self.head = nn.Linear(H, 4)

    def forward(self, x):
        if self.kind == "transformer":
            return self.head(self.enc(x).mean(1))  # (B, 4)
        return self.head(self.enc(x).last)  # (B, 4)


def section_longrange(args, device) -> dict:
    D, H, B = args.acc_width, args.acc_hidden, 32
    Ts = [t for t in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192) if t <= args.acc_max_t]
    kinds = [c for c in args.cells.split(",") if c] + ["transformer"]
    print(f"\n== long-range task: held-out accuracy vs T (D={D}, H={H}, {args.acc_layers} layers, "
          f"{args.acc_steps} Adam steps of {B} clips, "
          f"chance 0.25, late frame only 0.5) ==")
    print(f"{'model':<14}" + "".join(f"{t:>8}" for t in Ts) + "   train s")
    results = {}
    for kind in kinds:
        row = {"T": [], "accuracy": [], "train_seconds": []}
        for T in Ts:
            torch.manual_seed(0)
            g = torch.Generator().manual_seed(1)
            model = _Classifier(kind, D, H, max_len=T, layers=args.acc_layers).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=args.acc_lr)
            t0 = time.perf_counter()
            model.train()
            for _ in tqdm(range(args.acc_steps), desc=f"{kind} T={T}", leave=False, disable=not args.progress):
                x, y = long_range_batch(B, T, D, generator=g, device=device)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            _sync(device)
            secs = time.perf_counter() - t0
            model.eval()
            x, y = long_range_batch(512, T, D, generator=torch.Generator().manual_seed(99), device=device)
            with torch.no_grad():
                acc = sum(float((model(x[i:i + 128]).argmax(-1) == y[i:i + 128]).float().sum())
                          for i in range(0, 512, 128)) / 512
            row["T"].append(T)
            row["accuracy"].append(acc)
            row["train_seconds"].append(secs)
        results[kind] = row
        print(f"{kind:<14}" + "".join(f"{a:>8.2f}" for a in row["accuracy"]) + f"   {sum(row['train_seconds']):.0f}")
    return results


def section_overhead(args, device) -> dict:
    B, D, H = args.batch, args.width, args.hidden
    Ts = [64, 512] if args.quick else [64, 512, 2048]
    print(f"\n== overhead: SequenceEncoder / bare torch module, same shape (goal <= 1.05), median of {args.reps_overhead} ==")
    results = {}
    for cell in ("lstm", "gru"):
        for layers, bi in ((1, False), (2, False), (1, True)):
            for T in Ts:
                torch.manual_seed(0)
                ours = SequenceEncoder(D, cell=cell, hidden=H, layers=layers, bidirectional=bi).to(device)
                bare = make_rnn(cell, D, H, num_layers=layers, bidirectional=bi).to(device)
                x = torch.randn(B, T, D, device=device)
                lengths = torch.full((B,), T, dtype=torch.long)
                t = interleaved({"ours": (ours, lambda: ours(x, lengths).outputs), "bare": (bare, lambda: bare(x)[0])},
                                device, args.reps_overhead)
                key = f"{cell}-L{layers}-{'bi' if bi else 'uni'}-T{T}"
                results[key] = {"ours_ms": t["ours"] * 1e3, "bare_ms": t["bare"] * 1e3, "ratio": t["ours"] / t["bare"]}
                note = "  (bare bidirectional is not exact with padding)" if bi else ""
                print(f"{key:<22} ours {t['ours'] * 1e3:8.2f} ms  bare {t['bare'] * 1e3:8.2f} ms  "
                      f"ratio {t['ours'] / t['bare']:.3f}{note}")
    return results


def section_packing(args, device) -> dict:
    B, D, H = args.batch, args.width, args.hidden
    Ts = [64, 256] if args.quick else [64, 256, 1024]
    print("\n== variable lengths, bidirectional: padded+reverse (ours) vs packed vs bare padded ==")
    results = {}
    for cell in ("lstm", "gru"):
        for T in Ts:
            torch.manual_seed(0)
            ours = SequenceEncoder(D, cell=cell, hidden=H, bidirectional=True).to(device)
            packed = make_rnn(cell, D, H, bidirectional=True).to(device)
            with torch.no_grad():  # same weights, so the exact methods must agree
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(packed, f"{name}_l0").copy_(getattr(ours.stacks[0].fwd[0], f"{name}_l0"))
                    getattr(packed, f"{name}_l0_reverse").copy_(getattr(ours.stacks[0].bwd[0], f"{name}_l0"))
            x = torch.randn(B, T, D, device=device)
            lengths = torch.randint(T // 2, T + 1, (B,))
            lengths[0] = T

            def run_packed():
                p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                return pad_packed_sequence(packed(p)[0], batch_first=True, total_length=T)[0]

            with torch.no_grad():
                diff = (ours(x, lengths).outputs - run_packed()).abs().max().item()
            t = interleaved({"ours": (ours, lambda: ours(x, lengths).outputs), "packed": (packed, run_packed),
                             "bare_padded": (packed, lambda: packed(x)[0])}, device, args.reps_overhead)
            key = f"{cell}-bi-T{T}"
            results[key] = {"ours_ms": t["ours"] * 1e3, "packed_ms": t["packed"] * 1e3,
                            "bare_padded_ms": t["bare_padded"] * 1e3, "packed_over_ours": t["packed"] / t["ours"],
                            "max_abs_diff_ours_vs_packed": diff}
            print(f"{key:<16} ours {t['ours'] * 1e3:8.2f}  packed {t['packed'] * 1e3:8.2f}  bare(inexact) "
                  f"{t['bare_padded'] * 1e3:8.2f} ms   packed/ours {t['packed'] / t['ours']:.2f}x   |ours-packed| "
                  f"{diff:.1e}")
    return results


def section_decoding(args, device) -> dict:
    B, D, H = args.batch, args.width, args.hidden
    words = [f"w{i}" for i in range(200)]
    vocab = Vocabulary.build([" ".join(words)])
    frames = [8, 32, 128] if args.quick else [8, 32, 128, 512]
    lens = [5, 10, 20] if args.quick else [5, 10, 20, 40]
    print(f"\n== captioner decoding (B={B}, V={len(vocab)}): ms per batch, clips/s; captions forced to max_len ==")
    results = {}
    for decoder in ("s2vt", "attention"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(task="caption", cell="lstm", hidden=H, embed_dim=H, attention_dim=H,
                                        decoder=decoder, head_dropout=0.0), input_dim=D, vocab=vocab).to(device)
        with torch.no_grad():
            model.out.bias[vocab.eos_id] = -1e4  # never stop early: every caption has exactly max_len words
        rows = []
        for T, L in [(t, 20) for t in frames] + [(32, n) for n in lens if n != 20]:
            x = torch.randn(B, T, D, device=device)
            lengths = torch.full((B,), T, dtype=torch.long)
            t = {}
            for _ in range(1):  # warm-up
                model.predict(x, lengths, max_len=L)
            for k in (1, 5):
                samples = []
                for _ in range(args.reps):
                    _sync(device)
                    t0 = time.perf_counter()
                    model.predict(x, lengths, beam_size=k, max_len=L)
                    _sync(device)
                    samples.append(time.perf_counter() - t0)
                t[k] = statistics.median(samples)
            row = {"T": T, "max_len": L, "greedy_ms": t[1] * 1e3, "beam5_ms": t[5] * 1e3,
                   "greedy_clips_s": B / t[1], "beam5_clips_s": B / t[5], "beam5_over_greedy_time": t[5] / t[1]}
            rows.append(row)
            print(f"{decoder:<10} T={T:<5} L={L:<3} greedy {t[1] * 1e3:8.2f} ms ({B / t[1]:7.1f} clips/s)   beam-5 "
                  f"{t[5] * 1e3:8.2f} ms ({B / t[5]:7.1f} clips/s)   beam5/greedy time {t[5] / t[1]:.2f}x")
        results[decoder] = rows
    return results


def plot(out: Path, report: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    scaling, decoding, longrange = report.get("scaling"), report.get("decoding"), report.get("longrange")
    if scaling:
        fig, axes = plt.subplots(1, 3 if longrange else 2, figsize=(19 if longrange else 13, 5))
        for name, row in scaling.items():
            style = (dict(lw=2.5, color="black") if name == "transformer" else
                     dict(lw=2, ls="--") if name.startswith("min") else dict(lw=1, alpha=0.8))
            axes[0].loglog(row["T"], row["ms"], marker=".", label=name, **style)
            axes[1].loglog(row["T"], [max(b, 1) / 2**20 for b in row["mem_bytes"]], marker=".", label=name, **style)
        axes[0].set(xlabel="T (frames)", ylabel="forward+backward ms", title=f"time vs T ({report['device']})")
        axes[1].set(xlabel="T (frames)", ylabel="MB", title="memory vs T")
        axes[1].legend(fontsize=6, ncol=2)
        if longrange:
            for name, row in longrange.items():
                axes[2].semilogx(row["T"], row["accuracy"], marker="o", label=name,
                                 **(dict(lw=2.5, color="black") if name == "transformer" else {}))
            axes[2].axhline(0.25, color="gray", ls=":", lw=1)
            axes[2].axhline(0.5, color="gray", ls="--", lw=1)
            axes[2].set(xlabel="T (frames)", ylabel="held-out accuracy", ylim=(0, 1.02),
                        title="long-range task (chance 0.25, late frame only 0.5)")
            axes[2].legend(fontsize=7)
        for ax in axes:
            ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        paths.append(out / "seq_len_scaling.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if decoding:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for decoder, rows in decoding.items():
            sub = [r for r in rows if r["max_len"] == 20]
            ax.loglog([r["T"] for r in sub], [r["greedy_ms"] for r in sub], marker="o", label=f"{decoder} greedy")
            ax.loglog([r["T"] for r in sub], [r["beam5_ms"] for r in sub], marker="s", label=f"{decoder} beam-5")
        ax.set(xlabel="T (frames)", ylabel="ms per batch (20 words)", title="caption decoding time")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(out / "seq_len_decoding.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return [str(p) for p in paths]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--quick", action="store_true", help="T up to 512, fewer configs and repeats")
    p.add_argument("--out", default="bench_out/seq_len")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--width", type=int, default=64, help="feature width D")
    p.add_argument("--hidden", type=int, default=64, help="RNN hidden size H (Transformer d_model)")
    p.add_argument("--max-t", type=int, default=0, help="largest T (default 4096, --quick 512)")
    p.add_argument("--reps", type=int, default=0, help="repeats for the scaling sweep (default 3, --quick 2)")
    p.add_argument("--reps-overhead", type=int, default=0, help="repeats for comparisons (default 15, --quick 7)")
    p.add_argument("--max-seconds", type=float, default=3.0, help="stop a model's T sweep once a step is slower")
    p.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (0 = leave torch's default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--sections", default="scaling,overhead,packing,decoding,longrange",
                   help="comma-separated: scaling, overhead, packing, decoding, longrange")
    p.add_argument("--cells", default="rnn,lstm,gru,mingru,minlstm", help="cells for scaling and longrange")
    p.add_argument("--layers", default="", help="layer counts for scaling (default 1,2,3; --quick 1,2)")
    p.add_argument("--directions", default="uni,bi", help="uni, bi or both for scaling")
    p.add_argument("--acc-max-t", type=int, default=0, help="largest T of the long-range task (default 512, "
                   "--quick 32)")
    p.add_argument("--acc-steps", type=int, default=0, help="training steps per model and T (default 300, --quick 30)")
    p.add_argument("--acc-width", type=int, default=16, help="feature width D of the long-range task")
    p.add_argument("--acc-hidden", type=int, default=64, help="hidden size of the long-range models")
    p.add_argument("--acc-layers", type=int, default=2, help="layers of every long-range model")
    p.add_argument("--acc-lr", type=float, default=3e-3)
    p.add_argument("--progress", action="store_true", help="tqdm bars for the long-range training")
    args = p.parse_args(argv)
    args.layer_list = [int(v) for v in (args.layers or ("1,2" if args.quick else "1,2,3")).split(",")]
    dirs = {"uni": False, "bi": True}
    unknown = set(args.directions.split(",")) - set(dirs)
    if unknown:
        p.error(f"--directions: unknown {sorted(unknown)}; allowed: uni, bi")
    args.bidirectional_list = [dirs[d] for d in args.directions.split(",")]
    args.acc_max_t = args.acc_max_t or (32 if args.quick else 512)
    args.acc_steps = args.acc_steps or (30 if args.quick else 300)
    args.reps = args.reps or (2 if args.quick else 3)
    args.reps_overhead = args.reps_overhead or (7 if args.quick else 15)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads > 0 and device.type == "cpu":
        torch.set_num_threads(args.threads)
    max_t = args.max_t or (512 if args.quick else 4096)
    Ts = [2 ** k for k in range(3, int(math.log2(max_t)) + 1)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"seq-len benchmark on {dev_name}, torch {torch.__version__}")
    sections = set(args.sections.split(","))
    report = {"device": dev_name, "torch": torch.__version__, "args": vars(args),
              "memory_measure": "cuda max_memory_allocated delta" if device.type == "cuda"
              else "bytes saved for backward (saved_tensors_hooks, unique storages, parameters excluded)"}
    t0 = time.time()
    if "scaling" in sections:
        report["scaling"] = section_scaling(args, device, Ts)
    if "overhead" in sections:
        report["overhead"] = section_overhead(args, device)
    if "packing" in sections:
        report["packing"] = section_packing(args, device)
    if "decoding" in sections:
        report["decoding"] = section_decoding(args, device)
    if "longrange" in sections:
        report["longrange"] = section_longrange(args, device)
    report["seconds"] = time.time() - t0
    (out / "seq_len.json").write_text(json.dumps(report, indent=1))
    report["plots"] = plot(out, report)
    print(f"\nwrote {out / 'seq_len.json'} {' '.join(report.get('plots', []))}  ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
