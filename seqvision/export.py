"""Export a checkpoint for deployment without seqvision: ONNX (run by ONNX Runtime) and TorchScript files.

Written to ``DIR``:

* ``frame_encoder.{onnx,pt}``: ``frames`` uint8 ``(B, T, 3, H, W)`` RGB -> ``features`` float32 ``(B, T, D)``
  (scaling by 1/255 and the mean/std normalisation are inside). Feed frames resized as in training (``export.json``
  "frame_size", the model's ``data.size``): other sizes give other features than the model learnt from. Where the
  CNN allows it (convolutional trunks: ResNet, EfficientNet(-Lite), MobileNet ...) ``H`` and ``W`` are dynamic
  too (``export.json`` "frame_size_dynamic": true) and any size equals PyTorch's encoder at that size, checked at a
  second, non-square size; CNNs that need their training size (ViT) are exported with ``H, W`` fixed.
* classify / frames: ``sequence_model.{onnx,pt}``: ``features (B, T, D)`` -> ``logits`` ``(B, K)`` (classify)
  or ``(B, T, K)`` (frames). Every clip of a batch has ``T`` real frames (run clips of other lengths separately:
  ``T`` is dynamic).
* classify / frames with a unidirectional encoder: ``sequence_step.{onnx,pt}``: the online form, ``x (B, D)``
  and the state tensors ``state_0..n`` -> ``logits (B, K)`` and ``next_0..n`` (feed back); ``export.json``
  ("step_state") gives each state tensor's shape and initial value (zeros, or -inf for a running max).
* caption: ``caption_encoder.{onnx,pt}``: ``features (B, T, D)`` -> ``memory (B, T, M)``, ``keys (B, T, A)``
  (attention decoder; zeros of width 1 for S2VT), ``h0 (1, B, Hd)``, ``c0 (1, B, Hd)`` (zeros for GRU/RNN
  decoders); ``caption_decoder_step.{onnx,pt}``: ``words`` int64 ``(N,)``, ``h``, ``c``, ``memory``, ``keys``
  -> ``logits (N, V)``, ``h``, ``c``, ``attention (N, T)``: one word, to run greedy or beam search in any
  language; ``vocab.json`` maps ids to words.
* ``export.json``: what was written, input/output names and shapes, labels, the frame size and the parity
  measured against PyTorch.

Batch ``B`` / ``N`` and time ``T`` are dynamic axes. Grid pooling (``encoder.pooling: grid``) is written as
:class:`GridPoolExport`, PyTorch's ``adaptive_avg_pool2d`` cells (overlapping where the map size is not a multiple
of the grid) as two matrix products, because the TorchScript-based ONNX exporter cannot export
``adaptive_avg_pool2d`` on a map whose size it cannot see (EfficientNet-Lite0's TF "SAME" padding depends on the
input size). ONNX needs the optional extra
(``pip install 'seqvision[onnx]'``: onnx and onnxruntime).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from einops import rearrange
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .errors import SeqVisionError
from .models import AttentionPool, LastPool, MaxPool, MeanPool
from .models._captioner import _Memory  # the captioner's own memory record
from .tasks import get_task
from .train import load_model

__all__ = ["export_checkpoint", "ExportError", "FrameEncoderExport", "GridPoolExport", "SequenceModelExport", "SequenceStepExport",
           "initial_state", "CaptionEncoderExport", "CaptionDecoderStepExport"]

FORMATS = ("onnx", "torchscript")
# The TorchScript-based ONNX exporter: it takes dynamic_axes and RNN modules as they are (torch >= 2.9 defaults to
# the dynamo exporter, which needs onnxscript; torch < 2.5 has no `dynamo` argument).
_LEGACY_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


class ExportError(SeqVisionError):
    """An export failed or its output differs from PyTorch's."""


class GridPoolExport(nn.Module):
    """``fmap (N, C, h, w)`` -> ``(N, C * g * g)``: the grid pooling of :class:`~seqvision.features.FrameEncoder`
    (``F.adaptive_avg_pool2d(fmap, g)`` flattened channel-major) for any ``h, w``, in ops every ONNX exporter
    takes with ``h, w`` unknown.

    Cell ``i`` of a side of ``n`` covers rows ``floor(i n / g)`` to ``ceil((i + 1) n / g)`` (PyTorch's adaptive
    pooling rule; cells overlap when ``g`` does not divide ``n``, e.g. rows 0-1 and 1-2 of a 3-row map for
    ``g = 2``): a 0/1 matrix ``(g, n)`` sums them, divided by the cell's area as PyTorch does.
    """

    def __init__(self, grid: int):
        super().__init__()
        self.grid = grid

    def _cells(self, n, dtype):
        i = torch.arange(self.grid)  # (g,)
        start, end = (i * n) // self.grid, ((i + 1) * n + self.grid - 1) // self.grid  # (g,) each
        rows = torch.arange(n)  # (n,)
        inside = (rows[None] >= start[:, None]) & (rows[None] < end[:, None])  # (g, n)
        return inside.to(dtype), (end - start).to(dtype)  # (g, n), (g,)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        ch, count_h = self._cells(fmap.shape[2], fmap.dtype)
        cw, count_w = self._cells(fmap.shape[3], fmap.dtype)
        sums = torch.matmul(torch.matmul(ch, fmap), cw.transpose(0, 1))  # (N, C, g, g)
        cells = sums / (count_h[:, None] * count_w[None, :])  # (N, C, g, g)
        return rearrange(cells, "n c gh gw -> n (c gh gw)")  # (N, C*g*g)


class FrameEncoderExport(nn.Module):
    """``frames`` uint8 ``(B, T, 3, H, W)`` -> ``features`` float32 ``(B, T, D)``: the checkpoint's CNN with
    its input scaling and normalisation, in float32 (no autocast, no chunking); grid pooling as
    :class:`GridPoolExport`, avg / max pooling as the encoder does it."""

    def __init__(self, encoder):
        super().__init__()
        self.trunk = encoder.trunk
        self.pool = GridPoolExport(encoder.grid) if encoder.pooling == "grid" else encoder._pool
        self.register_buffer("mean", torch.tensor(encoder.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(encoder.std).view(1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        B = frames.shape[0]
        x = rearrange(frames, "b t c h w -> (b t) c h w").float() / 255.0  # (B*T, 3, H, W)
        feats = self.pool(self.trunk((x - self.mean) / self.std))  # (B*T, D)
        return rearrange(feats, "(b t) d -> b t d", b=B)  # (B, T, D)


class SequenceModelExport(nn.Module):
    """``features (B, T, D)`` -> ``logits``: ``(B, K)`` for a clip classifier, ``(B, T, K)`` for a frame
    labeller (every clip of the batch has T real frames)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features).logits


def initial_state(model, batch: int = 1):
    """The state a unidirectional classify / frames model starts a stream from, as tensors only (so it can be an
    exported graph's input): zeros for every RNN stack (``(h, c)`` for LSTMs), and for the pooling head: none
    (last), running sum and count zero (mean), -inf (max), and for attention the running max score -inf, the
    normaliser and the weighted sum zero. Stepping from it equals stepping from ``None``."""
    enc = model.encoder
    if enc.bidirectional:
        raise ExportError("a bidirectional encoder has no step form (it needs every later frame); export a "
                          "unidirectional model for streaming")
    stacks = []
    for stack in enc.stacks:
        rnn = stack.rnn
        zeros = torch.zeros(rnn.num_layers, batch, rnn.hidden_size)
        stacks.append((zeros, zeros.clone()) if getattr(rnn, "mode", None) == "LSTM" else zeros)
    enc_state = tuple(stacks)
    if get_task(model.task).per_frame:  # a label per frame: no pooling head, so no pooling state
        return enc_state
    H = enc.out_dim
    pool = model.pool
    if isinstance(pool, LastPool):
        pool_state = None
    elif isinstance(pool, MeanPool):
        pool_state = (torch.zeros(batch, H), torch.zeros(batch, 1))
    elif isinstance(pool, MaxPool):
        pool_state = torch.full((batch, H), float("-inf"))
    elif isinstance(pool, AttentionPool):
        pool_state = (torch.full((batch,), float("-inf")), torch.zeros(batch), torch.zeros(batch, H))
    else:
        raise ExportError(f"no step form known for the pooling head {type(pool).__name__}")
    return enc_state, pool_state


class SequenceStepExport(nn.Module):
    """One online step: ``x (B, D)`` and the state as flat tensors ``state_0..state_n`` -> ``logits (B, K)`` and
    the next state ``next_0..next_n`` (feed them back). Start from :func:`initial_state` (``export.json`` lists
    each tensor's shape and initial value)."""

    def __init__(self, model, spec, none_at=()):
        super().__init__()
        self.model = model
        self.spec = spec
        self.none_at = frozenset(none_at)  # leaves of the state that are None (a stateless head: last), not inputs

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        given = iter(state)
        leaves = [None if i in self.none_at else next(given) for i in range(self.spec.num_leaves)]
        logits, new = self.model.step(x, tree_unflatten(leaves, self.spec))
        return (logits, *_tensor_leaves(new))


def _tensor_leaves(state) -> list[torch.Tensor]:
    """The state's tensors in flattening order, without the None a stateless part carries."""
    return [leaf for leaf in tree_flatten(state)[0] if leaf is not None]


class CaptionEncoderExport(nn.Module):
    """``features (B, T, D)`` -> ``memory (B, T, M)``, ``keys (B, T, A)``, ``h0 (1, B, Hd)``, ``c0 (1, B, Hd)``."""

    def __init__(self, captioner):
        super().__init__()
        self.captioner = captioner

    def forward(self, features: torch.Tensor):
        memory, state = self.captioner._encode(features, None)
        keys = memory.keys if memory.keys is not None else memory.outputs[..., :1] * 0  # (B, T, A)
        c0 = state[1] if len(state) > 1 else torch.zeros_like(state[0])
        return memory.outputs, keys, state[0], c0


class CaptionDecoderStepExport(nn.Module):
    """One decoder step: ``words (N,)`` int64, ``h``, ``c`` ``(1, N, Hd)``, ``memory (N, T, M)``, ``keys (N, T, A)``
    -> ``logits (N, V)``, ``h``, ``c``, ``attention (N, T)`` (all frames valid; zeros for S2VT)."""

    def __init__(self, captioner):
        super().__init__()
        self.captioner = captioner
        self.lstm = captioner.cell == "lstm"

    def forward(self, words, h, c, memory, keys):
        mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)  # (N, T)
        mem = _Memory(memory, keys if self.captioner.attention is not None else None, mask)
        state = (h, c) if self.lstm else (h,)
        logits, state, attn = self.captioner._step(words, state, mem)
        attn = attn if attn is not None else memory[..., 0] * 0  # (N, T)
        return logits, state[0], (state[1] if self.lstm else c), attn


def _onnx_export(module, args, path: Path, input_names, output_names, dynamic_axes) -> None:
    try:  # lazy: onnx is an optional extra, checked before the exporter needs it
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the optional extra: pip install 'seqvision[onnx]' "
                          "(onnx and onnxruntime)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=18, **_LEGACY_EXPORTER)


def _torchscript_export(module, args, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, args, check_trace=False)
    traced.save(str(path))


def _run_onnx(path: Path, inputs: dict) -> list:
    try:  # lazy: onnxruntime is an optional extra (seqvision[onnx])
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking the ONNX files needs the optional extra: pip install 'seqvision[onnx]' "
                          "(onnx and onnxruntime), or export with check=False") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v.numpy() for k, v in inputs.items() if k in names})


def _run_torchscript(path: Path, inputs: dict) -> list:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        got = torch.jit.load(str(path))(*inputs.values())
    return list(got) if isinstance(got, tuple) else [got]


def _other_size_diff(module, args, path: Path, fmt: str, outputs, axes, frames_other, want_other) -> float | None:
    """Write the frame encoder to ``path`` with ``axes`` (``H, W`` dynamic), run it on ``frames_other`` (another
    size than the traced one) and give its largest difference to PyTorch's encoder there; None where that export
    or run fails (the caller then writes the file with ``H, W`` fixed). Always checked, whatever ``check`` says:
    whether the file takes other sizes must be measured, not assumed."""
    try:
        if fmt == "onnx":
            _onnx_export(module, tuple(args.values()), path, list(args), outputs, axes)
            got = _run_onnx(path, {"frames": frames_other})
        else:
            _torchscript_export(module, tuple(args.values()), path)
            got = _run_torchscript(path, {"frames": frames_other})
    except ExportError:
        raise  # the ONNX extra missing: not a property of the CNN
    except Exception:  # noqa: BLE001 - an exporter or runtime failure at another size: fixed-size CNN
        return None
    return _max_diff(got, want_other)


def _max_diff(a, b) -> float:
    return max(float((torch.as_tensor(x).float() - y.float()).abs().max()) for x, y in zip(a, b))


def _float64_reference(module: nn.Module, inputs: dict) -> list[torch.Tensor] | None:
    """``module`` run in float64 on ``inputs`` (floating inputs cast, integer ones as they are): the reference the
    check measures both the exported file and PyTorch's own float32 result against. None where the module does
    not run in float64 (then the check compares with PyTorch's float32 outputs only)."""
    try:
        m64 = copy.deepcopy(module).double()
        args = [v.double() if v.is_floating_point() else v for v in inputs.values()]
        with torch.no_grad():
            out = m64(*args)
    except Exception:  # noqa: BLE001 - a module with a fixed float32 path somewhere: no float64 reference
        return None
    return [o.double() for o in (out if isinstance(out, tuple) else (out,))]


def _check_outputs(got, want, want64, outputs: list[str], tolerance: float) -> tuple[dict, list[str]]:
    """Per output tensor: the exported file's and PyTorch's float32 errors against the float64 reference, and the
    failures: a file's error may exceed PyTorch's own float32 error by at most ``tolerance`` x max(1, the output's
    largest magnitude). Without a float64 reference: the file's difference to PyTorch's float32 output against
    the same allowance. Returns ``(per-output record, failure messages)``."""
    record, failures = {}, []
    for i, (name, g, w) in enumerate(zip(outputs, got, want)):
        g = torch.as_tensor(g).double()
        scale = _scale(w)
        allow = tolerance * scale
        row = {"max_abs_diff": float((g - w.double()).abs().max()) if w.numel() else 0.0, "allowed": allow}
        if want64 is not None:
            ref = want64[i]
            row["error_vs_float64"] = float((g - ref).abs().max()) if w.numel() else 0.0
            row["pytorch_error_vs_float64"] = float((w.double() - ref).abs().max()) if w.numel() else 0.0
            excess = row["error_vs_float64"] - row["pytorch_error_vs_float64"]
            if not excess <= allow:
                failures.append(f"output '{name}' is {row['error_vs_float64']:.3g} from PyTorch in float64, "
                                f"PyTorch's own float32 result {row['pytorch_error_vs_float64']:.3g}: "
                                f"{excess:.3g} worse (> {tolerance:g} x max(1, largest |{name}| {scale:.3g}))")
        elif not row["max_abs_diff"] <= allow:
            failures.append(f"output '{name}' differs from PyTorch by {row['max_abs_diff']:.3g} (> {tolerance:g} x "
                            f"max(1, largest |{name}| {scale:.3g}))")
        record[name] = row
    return record, failures


# the files an export writes into its folder (replaced by the next export there; anything else is left alone)
_OWNED = ("frame_encoder", "sequence_model", "sequence_step", "caption_encoder", "caption_decoder_step")


def _owned_files(folder: Path) -> list[Path]:
    names = [f"{n}.{ext}" for n in _OWNED for ext in ("onnx", "pt")] + ["vocab.json", "export.json"]
    return [folder / n for n in names if (folder / n).exists()]


def _scale(y: torch.Tensor) -> float:
    """What a tolerance is multiplied by for output ``y``: its largest magnitude where that exceeds 1 (float32
    rounding grows with the values: a random-init Lite0's features reach ~6, and PyTorch itself is 1.1e-4 from
    float64 there), so a tolerance is absolute for logits and probabilities of order 1 and relative for large
    features."""
    return max(1.0, float(y.float().abs().max()) if y.numel() else 0.0)


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, formats=FORMATS,
                      check: bool = True, tolerance: float = 1e-4) -> dict:
    """Write the checkpoint's frame encoder and sequence model (or caption encoder + decoder step) to ``out``.

    The files are written to a temporary folder next to ``out`` and moved in only when every one was written
    (and checked): a failed export leaves ``out`` as it was. Exporting into a folder that holds an earlier
    export replaces the files an export owns (``frame_encoder.*``, ``sequence_model.*``, ``sequence_step.*``,
    ``caption_encoder.*``, ``caption_decoder_step.*``, ``vocab.json``, ``export.json``): none of the earlier
    model's files stay behind (e.g. ``sequence_step.*`` of a unidirectional model when a bidirectional one is
    exported); other files in the folder are left alone.

    Args:
        checkpoint: a ``best.pt`` / ``last.pt``.
        out: output folder (created, parents too).
        formats: any of ``"onnx"``, ``"torchscript"``.
        check: run each exported file on inputs of a batch size and length other than the tracing ones and
            compare, per output tensor, with the module run by PyTorch in float64: the file's error may exceed
            PyTorch's own float32 error by at most ``tolerance`` x max(1, that output's largest magnitude) (a
            long reduction, e.g. an LSTM reading 5120-D grid features, is 2e-4 from float64 in PyTorch itself,
            and ONNX Runtime sums in another order). Where a module does not run in float64 the file is compared
            with PyTorch's float32 output under the same allowance. ``export.json`` records each output's
            figures (``check``) and the largest difference to PyTorch per file (``max_abs_diff``). The frame
            encoder is always also run at a second frame size (``data.size + 40`` x ``data.size + 8``; its
            difference is recorded in ``frame_size_checked``): within ``tolerance`` (relative above magnitude 1)
            there, its ``H, W`` are dynamic (``frame_size_dynamic``), else fixed.
        tolerance: see ``check`` (>= 0).

    Returns:
        The ``export.json`` content.

    Raises:
        ExportError: an unknown format, a negative tolerance, ``out`` an existing file or a folder that cannot be
            created or written, the ONNX extra missing, or an output above the tolerance (naming the file and
            the output tensor).
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"unknown export format(s) {bad}; allowed: {', '.join(FORMATS)}")
    if not tolerance >= 0:
        raise ExportError(f"tolerance must be >= 0, got {tolerance}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder (--out names the folder to write the files to)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    except OSError as exc:
        raise ExportError(f"{out}: cannot create the output folder there ({exc.strerror or exc})") from None
    try:
        report = _export_into(checkpoint, work, out, formats=formats, check=check, tolerance=tolerance)
        try:
            out.mkdir(exist_ok=True)
            for old in _owned_files(out):
                old.unlink()
            for f in sorted(work.iterdir(), key=lambda f: f.name == "export.json"):  # export.json last
                os.replace(f, out / f.name)
        except OSError as exc:
            raise ExportError(f"{out}: cannot write the exported files there ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _export_into(checkpoint, out: Path, final: Path, *, formats, check: bool, tolerance: float) -> dict:
    """:func:`export_checkpoint`'s work: every file written to ``out`` (a fresh folder); messages name
    ``final``, where the files will be."""
    loaded = load_model(checkpoint, device="cpu", with_encoder=True)
    model, cfg = loaded.model.eval(), loaded.config
    size = int(cfg.data.crop or cfg.data.size)
    if cfg.data.resize != "square" and not cfg.data.crop:
        warnings.warn("data.resize=short_side: resize the short side of the frames to data.size as in training "
                      "(the exported encoder takes any frame size where export.json says frame_size_dynamic)",
                      RuntimeWarning, stacklevel=2)
    D = loaded.input_dim
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, 3, size, size), dtype=torch.uint8, generator=gen)  # tracing input
    frames_check = torch.randint(0, 256, (1, 5, 3, size, size), dtype=torch.uint8, generator=gen)
    # another, non-square frame size (a 5 x 2 map of a /32 CNN at 96 px: cells of a 2x2 grid overlap)
    frames_other = torch.randint(0, 256, (1, 2, 3, size + 40, size + 8), dtype=torch.uint8, generator=gen)
    parts: list[tuple[str, nn.Module, dict, dict, list[str], dict]] = []
    enc = FrameEncoderExport(loaded.encoder).eval()
    parts.append(("frame_encoder", enc, {"frames": frames}, {"frames": frames_check}, ["features"],
                  {"frames": {0: "B", 1: "T"}, "features": {0: "B", 1: "T"}}))
    try:  # does the CNN itself take other frame sizes (convolutional trunks do; ViT / Swin need theirs)?
        with torch.no_grad():
            want_other = [enc(frames_other)]
    except Exception:  # noqa: BLE001 - any failure means: a fixed-size CNN
        want_other = None
    feats, feats_check = torch.randn(2, 3, D, generator=gen), torch.randn(3, 7, D, generator=gen)
    report_state = None  # the step model's state tensors (classify / frames, unidirectional)
    task = loaded.task  # what the model's outputs mean: its export form, per-frame or per-clip logits, names
    if task.export_form == "encoder_decoder":
        cenc = CaptionEncoderExport(model).eval()
        parts.append(("caption_encoder", cenc, {"features": feats}, {"features": feats_check},
                      ["memory", "keys", "h0", "c0"],
                      {"features": {0: "B", 1: "T"}, "memory": {0: "B", 1: "T"}, "keys": {0: "B", 1: "T"},
                       "h0": {1: "B"}, "c0": {1: "B"}}))
        with torch.no_grad():
            memory, keys, h, c = cenc(feats)
            mem_c, keys_c, h_c, c_c = cenc(feats_check)
        step = CaptionDecoderStepExport(model).eval()
        bos = model.vocab.bos_id
        parts.append(("caption_decoder_step", step,
                      {"words": torch.full((2,), bos), "h": h, "c": c, "memory": memory, "keys": keys},
                      {"words": torch.randint(0, len(model.vocab), (3,), generator=gen), "h": h_c, "c": c_c,
                       "memory": mem_c, "keys": keys_c},
                      ["logits", "h_out", "c_out", "attention"],
                      {"words": {0: "N"}, "h": {1: "N"}, "c": {1: "N"}, "memory": {0: "N", 1: "T"},
                       "keys": {0: "N", 1: "T"}, "logits": {0: "N"}, "h_out": {1: "N"}, "c_out": {1: "N"},
                       "attention": {0: "N", 1: "T"}}))
        (out / "vocab.json").write_text(json.dumps(model.vocab.to_dict()))
    else:
        seq = SequenceModelExport(model).eval()
        logits_axes = {0: "B", 1: "T"} if task.per_frame else {0: "B"}
        parts.append(("sequence_model", seq, {"features": feats}, {"features": feats_check}, ["logits"],
                      {"features": {0: "B", 1: "T"}, "logits": logits_axes}))
        if not model.encoder.bidirectional:  # the online form: one frame in, the state carried
            all_leaves, spec = tree_flatten(initial_state(model, 2))
            none_at = [i for i, leaf in enumerate(all_leaves) if leaf is None]
            leaves = [leaf for leaf in all_leaves if leaf is not None]
            with torch.no_grad():  # a state some frames into a stream, so the check covers real values
                st = initial_state(model, 3)
                for t in range(4):
                    _, st = model.step(torch.randn(3, D, generator=gen), st)
            names = [f"state_{i}" for i in range(len(leaves))]
            step_axes = {"x": {0: "B"}, "logits": {0: "B"}}
            for i, leaf in enumerate(leaves):
                step_axes[f"state_{i}"] = step_axes[f"next_{i}"] = {leaf.dim() - 2 if leaf.dim() == 3 else 0: "B"}
            parts.append(("sequence_step", SequenceStepExport(model, spec, none_at).eval(),
                          {"x": torch.randn(2, D, generator=gen), **dict(zip(names, leaves))},
                          {"x": torch.randn(3, D, generator=gen), **dict(zip(names, _tensor_leaves(st)))},
                          ["logits"] + [f"next_{i}" for i in range(len(leaves))], step_axes))
            report_state = [{"name": n, "shape": [("B" if d == (leaf.dim() - 2 if leaf.dim() == 3 else 0) else
                                                   int(leaf.shape[d])) for d in range(leaf.dim())],
                             "initial": "-inf" if bool(torch.isinf(leaf).all()) and leaf.numel() else "zeros"}
                            for n, leaf in zip(names, leaves)]
    report: dict = {"checkpoint": str(checkpoint), "task": model.task, "frame_size": [size, size],
                    "frame_size_dynamic": True, "frame_size_checked": {"frame_size": [size + 40, size + 8]},
                    "feature_dim": D, "labels": task.output_names,
                    "files": {}, "max_abs_diff": {}, "tolerance": tolerance if check else None, "check": {}}
    if report_state is not None:
        report["step_state"] = report_state
    for name, module, args, check_args, outputs, axes in parts:
        with torch.no_grad():
            want = module(*check_args.values())
        want = list(want) if isinstance(want, tuple) else [want]
        want64 = _float64_reference(module, check_args) if check else None
        for fmt in formats:
            path = out / f"{name}.{'onnx' if fmt == 'onnx' else 'pt'}"
            file_axes, written = axes, False
            if name == "frame_encoder":  # H, W dynamic where the CNN and the exporter allow it
                size_axes = {"frames": {**axes["frames"], 3: "H", 4: "W"}, "features": axes["features"]}
                other_diff = None if want_other is None else _other_size_diff(
                    module, args, path, fmt, outputs, size_axes, frames_other, want_other)
                written = other_diff is not None and other_diff <= tolerance * max(_scale(y) for y in want_other)
                report["frame_size_dynamic"] = report["frame_size_dynamic"] and written
                if written:
                    file_axes = size_axes
                    report["frame_size_checked"][f"{name}.{fmt}"] = other_diff
            if fmt == "onnx":
                if not written:
                    _onnx_export(module, tuple(args.values()), path, list(args), outputs, file_axes)
                got = _run_onnx(path, check_args) if check else None
            else:
                if not written:
                    _torchscript_export(module, tuple(args.values()), path)
                got = _run_torchscript(path, check_args) if check else None
            report["files"][f"{name}.{fmt}"] = {"path": path.name, "inputs": list(args), "outputs": outputs,
                                                "dynamic_axes": {k: list(v.values()) for k, v in file_axes.items()}}
            if check:
                diff = _max_diff(got, want)
                report["max_abs_diff"][f"{name}.{fmt}"] = diff
                record, failures = _check_outputs(got, want, want64, outputs, tolerance)
                report["check"][f"{name}.{fmt}"] = record
                if failures:
                    raise ExportError(f"{final / path.name}: {'; '.join(failures)}; pass a larger tolerance "
                                      "(--tolerance), or check=False (--no-check) to write the files unchecked")
    (out / "export.json").write_text(json.dumps(report, indent=2))
    return report
