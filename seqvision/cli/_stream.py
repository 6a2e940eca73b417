"""Arguments and implementations of ``seqvision stream``, ``seqvision export`` and ``classify --window``
(issue #15). Imports sit at the top, except the heavy ones, imported when a command runs and marked ``# lazy:``
on their line: ``seqvision.stream`` and ``seqvision.train`` (matplotlib, pycocoevalcap: about 0.4 s on the
shared test machine) and the exporter (onnx), so building the parser and the light commands do not pay for them.
``seqvision.data``, ``runtime`` and ``errors`` are imported by the CLI anyway."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import difflib
import functools
import json
import math
import os
import sys
from pathlib import Path

import av

from ..data import ErrorReport
from ..errors import ArgumentError, ConfigError, SeqVisionError, VideoDecodeError
from ..runtime import select_device

__all__ = ["add_stream_args", "stream_command", "add_export_args", "export_command", "add_window_args",
           "check_window_args", "timeline_paths", "window_command"]


def _finite(value):
    """``value`` with every float that is NaN or infinite (recursively in dicts, lists and tuples) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_line(record: dict) -> str:
    """One JSON line of ``stream`` / ``classify --window`` output: strict JSON, a non-finite number is null
    (``json.dumps`` would write ``NaN``, which JSON parsers reject)."""
    return json.dumps(_finite(record), allow_nan=False)


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ConfigError("--option", f"expected KEY=VALUE (an FFmpeg input option), got {p!r}")
        out[key] = value
    return out


# libavutil/opt.h
_AV_OPT_FLAG_DECODING_PARAM = 2
_AV_OPT_SEARCH_CHILDREN, _AV_OPT_SEARCH_FAKE_OBJ = 1, 2


def _ffmpeg_library(name: str) -> str | None:
    """The path of FFmpeg's ``lib<name>`` as PyAV runs it: the copy bundled with PyAV's wheel, else (PyAV built
    against a system FFmpeg) the copy loaded in this process (``/proc/self/maps``), else the system's; None when
    there is none."""
    here = Path(av.__file__).resolve().parent
    for folder in (here.parent / "av.libs", here / ".dylibs"):  # auditwheel / delvewheel, delocate
        for pattern in (f"lib{name}*", f"{name}*.dll"):
            found = sorted(folder.glob(pattern))
            if found:
                return str(found[0])
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if Path(path).name.startswith(f"lib{name}."):
                    return path
    except OSError:  # not Linux
        pass
    return ctypes.util.find_library(name)


class _InputOptions:
    """The input options FFmpeg knows, read from its own option tables (libavutil's ``av_opt_find``) with
    ctypes: options of the format context, of every demuxer and device, of AVIO and every protocol, that are
    decoding (input) options. PyAV's ``av.open(options=...)`` drops the dictionary in which FFmpeg hands back
    the options nobody used, so this is how an unknown key can be found at all."""

    def __init__(self, avformat: ctypes.CDLL, avutil: ctypes.CDLL):
        avformat.avformat_get_class.restype = ctypes.c_void_p
        self._find = avutil.av_opt_find
        self._find.restype = ctypes.c_void_p
        self._find.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        self._next = avutil.av_opt_next
        self._next.restype = ctypes.c_void_p
        self._next.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._children = avutil.av_opt_child_class_iterate
        self._children.restype = ctypes.c_void_p
        self._children.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        self._root = avformat.avformat_get_class()

    def __contains__(self, name: str) -> bool:
        fake = ctypes.c_void_p(self._root)  # AV_OPT_SEARCH_FAKE_OBJ: a pointer to a pointer to the AVClass
        return bool(self._find(ctypes.byref(fake), name.encode(), None, _AV_OPT_FLAG_DECODING_PARAM,
                               _AV_OPT_SEARCH_CHILDREN | _AV_OPT_SEARCH_FAKE_OBJ))

    def names(self) -> set[str]:
        """Every option name in the tables (named constants included), for suggestions."""
        names: set[str] = set()
        seen: set[int] = set()
        todo = [self._root]
        while todo:
            cls = todo.pop()
            if cls in seen:
                continue
            seen.add(cls)
            fake, opt = ctypes.c_void_p(cls), None
            while opt := self._next(ctypes.byref(fake), opt):
                names.add(ctypes.cast(opt, ctypes.POINTER(ctypes.c_char_p))[0].decode())  # AVOption.name
            it = ctypes.c_void_p()
            while child := self._children(cls, ctypes.byref(it)):
                todo.append(child)
        return names


@functools.lru_cache(maxsize=1)
def _input_options() -> _InputOptions | None:
    """FFmpeg's input option tables, or None when its libraries cannot be loaded with ctypes."""
    paths = _ffmpeg_library("avformat"), _ffmpeg_library("avutil")
    if None in paths:
        return None
    try:
        return _InputOptions(ctypes.CDLL(paths[0]), ctypes.CDLL(paths[1]))
    except (OSError, AttributeError):  # not loadable, or a build without these functions
        return None


def check_input_options(options: dict[str, str]) -> None:
    """Refuse ``--option`` keys that no FFmpeg input format, device or protocol of this build reads: FFmpeg
    leaves such a key unused and PyAV does not say so, so it would be ignored without a word. A key that some
    other input reads (``video_size`` given for an MP4 file) is still ignored by FFmpeg, as the ffmpeg CLI's
    ``-option`` would not be; a warning on stderr says when the tables cannot be read at all.

    Raises:
        ArgumentError: ``--option``, naming the key and the closest known name.
    """
    if not options:
        return
    known = _input_options()
    if known is None:
        print("seqvision stream: warning: FFmpeg's libraries could not be loaded to check the --option names "
              f"({', '.join(options)}); FFmpeg ignores a name it does not know", file=sys.stderr)
        return
    unknown = [key for key in options if key not in known]
    if unknown:
        key = unknown[0]
        close = [n for n in difflib.get_close_matches(key, known.names(), n=5, cutoff=0.75) if n in known][:1]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ArgumentError("--option", f"{key!r} is not an input option of any FFmpeg format, device or protocol "
                                        f"of this build{hint}; FFmpeg would ignore it (`ffmpeg -h demuxer=NAME` and "
                                        "`ffmpeg -h protocol=NAME` list the real ones)")


def shown(path) -> str:
    """``path`` for a line of text output: as it is, or Python-quoted with escapes (``'new\\nline.mp4'``) when
    it holds a newline, a tab or another unprintable character (or bytes that are not UTF-8), so one result stays
    one line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _number(kind, low: float, *, strict: bool):
    """An argparse ``type`` for numbers ``> low`` (``strict``) or ``>= low``: a bad value is one ``error:`` line
    (exit 2) naming the option, before anything runs."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got "
                                             f"{text!r}") from None
        if not math.isfinite(value):  # nan, inf: no count, rate or duration is infinite here
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value <= low if strict else value < low:
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_float = _number(float, 0, strict=True)
#: --window / --stride: 1 ms at least (shorter than any video's frame interval; 1e-9 s made ~4e9 empty windows
#: per second of video)
window_seconds = _number(float, 0.001, strict=False)
window_seconds.__name__ = "seconds"
positive_int = _number(int, 0, strict=True)
nonnegative_float = _number(float, 0, strict=False)
nonnegative_int = _number(int, 0, strict=False)


def check_output_image(path: str | os.PathLike, option: str, *, folder: bool = False) -> Path:
    """Check before a run that an image can be written at ``path`` (so a bad ``--timeline`` fails in a second,
    not after the whole run): its extension is one matplotlib writes (``png``, ``pdf``, ``svg``, ...) and its
    folder can be created and written (``folder``: ``path`` is a folder to create and write into).

    Raises:
        ArgumentError: naming ``option`` and the path.
    """
    from matplotlib.backend_bases import FigureCanvasBase  # lazy: matplotlib (see the top)

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if not folder and suffix not in formats:
        raise ArgumentError(option, f"{path}: not an image format matplotlib writes (use one of: "
                                    f"{', '.join(sorted(formats))})")
    target = path if folder else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".seqvision-write-test-{os.getpid()}" if folder else path
        existed = probe.exists()
        with open(probe, "ab"):
            pass
        if not existed:
            probe.unlink()
    except OSError as exc:
        raise ArgumentError(option, f"{path}: cannot write there ({exc.strerror or exc})") from None
    return path


def add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("source", metavar="SOURCE",
                   help="a video file, a file still being written (--follow), a URL (rtsp://, rtmp://, udp://, "
                        "http(s)://, ...) or a capture device (/dev/video0)")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="frames per second to run the model at (default: the pace it was trained at: data.fps "
                        "for the fps sampler; for the uniform sampler the rate the training clips' frames were "
                        "sampled at, recorded in the checkpoint; else every frame)")
    win = p.add_mutually_exclusive_group()
    win.add_argument("--window", type=window_seconds, default=None, metavar="SECONDS",
                     help="windows of this many seconds (>= 0.001) of stream time, cut as `classify --window` "
                          "cuts a video: clip models restart their running label, captioners write a caption "
                          "(default: never / 2 x data.num_frames frames)")
    win.add_argument("--window-frames", type=positive_int, default=None, metavar="N",
                     help="windows of N frames instead (what --window meant before it took seconds)")
    p.add_argument("--micro-batch", type=positive_int, default=1, help="frames per CNN call when frames queue up")
    p.add_argument("--queue", type=positive_int, default=None, help="decoded frames waiting at most (default 2 for live "
                                                           "sources, which drop the oldest beyond it; 8 for files)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many processed frames")
    p.add_argument("--follow", action="store_true", help="the file is still being written: wait for more data")
    p.add_argument("--idle-timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="--follow only: end after this many seconds without growth (default 5); without --follow "
                        "it is an error (a live URL or device stalls after --timeout instead)")
    p.add_argument("--timeout", type=positive_float, default=5.0, help="seconds without data before a live source counts "
                                                              "as stalled")
    p.add_argument("--reconnects", type=nonnegative_int, default=3, help="reopen a stalled or cut live source at most this "
                                                             "many times in a row")
    p.add_argument("--backoff", type=nonnegative_float, default=0.5, help="seconds before the first reconnect, doubled each "
                                                              "time")
    p.add_argument("--format", dest="input_format", default=None, help="FFmpeg input format (mpegts, v4l2, ...)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="FFmpeg input option, e.g. rtsp_transport=tcp or video_size=640x480 (repeatable). A "
                        "name no FFmpeg input format, device or protocol reads is an error; one that only other "
                        "formats read (video_size for an MP4 file) is ignored by FFmpeg without a word")
    p.add_argument("--top-k", type=nonnegative_int, default=5, help="labels with probabilities per answer (0: all "
                                                                    "classes)")
    p.add_argument("--timeline", default=None, metavar="PNG", help="write a timeline plot of the run (any "
                                                                   "image format matplotlib writes: .png, .pdf, "
                                                                   ".svg, ...; checked before the run)")
    p.add_argument("--device", default="cpu")


def stream_command(args) -> int:
    """``seqvision stream``: JSON lines on stdout (one per processed frame, then ``{"summary": ...}``)."""
    from ..stream import FrameSource, OnlinePredictor, plot_timeline, run_stream  # lazy: matplotlib (see the top)

    if args.input_format is not None and args.input_format not in av.formats_available:
        raise ArgumentError("--format", f"{args.input_format!r} is not an FFmpeg input format of this build "
                                        f"(e.g. mpegts, v4l2, matroska; `ffmpeg -formats` lists them)")
    options = _options(args.option)
    check_input_options(options)
    if args.idle_timeout is not None and not args.follow:
        raise ArgumentError("--idle-timeout", "only applies with --follow (a file still being written: the seconds "
                                              "without growth before it ends); a live URL or device counts as "
                                              "stalled after --timeout seconds without data")
    if args.timeline:
        check_output_image(args.timeline, "--timeline")
    if ((args.window is not None and not args.window > 0)
            or (args.window_frames is not None and args.window_frames < 1)):
        raise ArgumentError("--window/--window-frames", f"must be > 0 seconds / >= 1 frames, got "
                                                        f"{args.window}, {args.window_frames}")
    idle = {} if args.idle_timeout is None else {"idle_timeout": args.idle_timeout}  # None: FrameSource's default
    source = FrameSource(args.source, follow=args.follow, timeout=args.timeout, reconnects=args.reconnects,
                         backoff=args.backoff, input_format=args.input_format, options=options, **idle)
    pred = OnlinePredictor.from_checkpoint(args.checkpoint, device=args.device, window=args.window,
                                           window_frames=args.window_frames, top_k=args.top_k)
    fps = args.fps if args.fps is not None else pred.training_fps  # explicit --fps always wins
    notes = []  # printed with the first frame: advice about a source that does not open is noise
    if args.fps is None and fps is not None and pred.cfg.data.sampler != "fps":
        pace = pred.pace
        notes.append(f"seqvision stream: sampling at {fps:.1f} fps, the pace the model was trained at ("
                     f"{pace['num_frames']} frames per clip; median of {pace['clips']} training clips, quartiles "
                     f"{pace['q1']:.1f}-{pace['q3']:.1f}); --fps to change")
    elif fps is None and pred.cfg.data.sampler != "all":
        # Trained on num_frames spread over each clip, but the checkpoint does not record its pace (raw video,
        # or a feature cache or seqvision that did not keep the clips' durations). Every frame is a faster pace
        # than it saw whenever the clips were longer (the demo's classifier: test accuracy 0.44 on every frame,
        # 0.94 at --fps 6, 0.93 offline).
        notes.append(f"seqvision stream: note: the model was trained on {pred.cfg.data.num_frames} frames spread "
                     f"over each clip (data.sampler={pred.cfg.data.sampler!r}) and its checkpoint does not record "
                     f"the pace (trained on raw video, or from a feature cache written before seqvision kept the "
                     f"clips' durations); the stream gives it every frame; pass --fps {pred.cfg.data.num_frames}/"
                     "(typical training clip length in s) so it sees motion at its training pace, or retrain")

    def emit(r: dict) -> None:
        while notes:
            print(notes.pop(0), file=sys.stderr, flush=True)
        print(_json_line(r), flush=True)

    summary, results = run_stream(source, pred, fps=fps, micro_batch=args.micro_batch, queue_size=args.queue,
                                  max_frames=args.max_frames, on_result=emit, keep_results=bool(args.timeline))
    print(_json_line({"summary": summary.to_dict()}), flush=True)
    if args.timeline:
        plot_timeline(results, args.timeline, title=f"{args.source} ({pred.task})")
    lat = summary.latency_ms.get("total", {})
    print(f"seqvision stream: {summary.processed} frames in {summary.seconds:.1f} s ({summary.fps} frames/s), "
          f"{summary.dropped} dropped, {summary.reconnects} reconnects, end: {summary.end_reason}; latency "
          f"p50 {lat.get('p50', 0):.1f} ms, p95 {lat.get('p95', 0):.1f} ms", file=sys.stderr)
    return 1 if summary.error_type is not None else 0  # a live source stayed lost, or a file ended at an error


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", dest="formats", action="append", choices=["onnx", "torchscript"], default=None,
                   help="onnx or torchscript (repeatable; default both)")
    p.add_argument("--out", required=True, help="output folder (created; the files of an earlier export there are "
                                                "replaced, other files left alone; nothing is written when the "
                                                "export or its check fails)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    p.add_argument("--tolerance", type=nonnegative_float, default=1e-4,
                   help="the check: how much further each output of an exported file may be from PyTorch run in "
                        "float64 than PyTorch's own float32 result, times max(1, the output's largest magnitude) "
                        "(default 1e-4)")


def export_command(args) -> int:
    from ..export import export_checkpoint  # lazy: imports seqvision.train (see the top)

    report = export_checkpoint(args.checkpoint, args.out, formats=args.formats or ["onnx", "torchscript"],
                               check=not args.no_check, tolerance=args.tolerance)
    print(json.dumps(report, indent=2))
    return 0


def add_window_args(p: argparse.ArgumentParser) -> None:
    """``classify --window S --stride S``: label a long video window by window."""
    p.add_argument("--window", type=window_seconds, default=None, metavar="SECONDS",
                   help="label long videos window by window (streaming decode); frame models give a per-frame "
                        "timeline (>= 0.001 s)")
    p.add_argument("--stride", type=window_seconds, default=None, metavar="SECONDS",
                   help="--window: window step (default: --window; not shorter than the video's frame interval)")
    p.add_argument("--timeline", default=None, metavar="PNG_OR_DIR",
                   help="--window: timeline image (.png, .pdf, .svg, ...). With several videos, x.png writes "
                        "x_<video name>.png beside it, one per video (x_<name>_2.png for a repeated name); a path "
                        "without an image extension, or an existing folder, is a folder of "
                        "<video name>_timeline.png files")


def check_window_args(args) -> bool:
    """``classify``: True when ``--window`` asks for window labelling; ``--stride`` / ``--timeline`` without it
    are an error (they would be ignored), and ``--timeline`` is checked before the run.

    Raises:
        ArgumentError: ``--stride`` or ``--timeline`` without ``--window``; a ``--timeline`` path that cannot be
            written (see :func:`check_output_image`).
    """
    window = getattr(args, "window", None)
    if window is None:
        given = [o for o, v in (("--stride", getattr(args, "stride", None)),
                                ("--timeline", getattr(args, "timeline", None))) if v is not None]
        if given:
            raise ArgumentError("/".join(given), "only applies with --window SECONDS (window-by-window labelling "
                                                 "of long videos); plain classify labels each whole video")
        return False
    return True


def timeline_paths(timeline: str | os.PathLike, videos: list[Path]) -> list[Path]:
    """``classify --window --timeline``: the image written for each of ``videos`` (in order), checked before
    the run.

    A path with an image extension matplotlib writes (``x.png``) is the image of a single video; with several
    videos each gets ``x_<video stem>.png`` beside it (``x_<stem>_2.png``, ... where stems repeat), never a
    folder named ``x.png``. A path without an extension, an existing folder, or (several videos) a path whose
    extension is no image format is a folder of ``<video stem>_timeline.png`` files.

    Raises:
        ArgumentError: ``--timeline``: a single video's path is no image format, or the place is not writable
            (see :func:`check_output_image`).
    """
    from matplotlib.backend_bases import FigureCanvasBase  # lazy: matplotlib (see the top)

    path = Path(timeline)
    image = path.suffix.lower().lstrip(".") in FigureCanvasBase.get_supported_filetypes()
    folder = path.is_dir() or not path.suffix or (len(videos) > 1 and not image)
    check_output_image(path, "--timeline", folder=folder)
    if not folder and len(videos) <= 1:
        return [path for _ in videos]
    out: list[Path] = []
    used: set[str] = set()
    for video in videos:
        stem, k = Path(video).stem, 1
        while (name := stem if k == 1 else f"{stem}_{k}") in used:
            k += 1
        used.add(name)
        out.append(path / f"{name}_timeline.png" if folder else path.with_name(f"{path.stem}_{name}{path.suffix}"))
    return out


def _window_pace_note(loaded, window: float) -> None:
    """``classify --window`` feeds each window's ``data.num_frames`` frames (kept at ``num_frames / window``
    per second), as ``classify`` feeds a clip: its pace is the window's, not every frame. When the checkpoint
    records the training pace (``Checkpoint.pace``) and the window's pace is outside the training clips' range,
    a note on stderr names the window that matches."""
    pace = getattr(loaded.checkpoint, "pace", None)
    num_frames = loaded.config.data.num_frames
    rate = num_frames / window
    if pace is None or pace["min"] - 1e-9 <= rate <= pace["max"] + 1e-9:
        return
    print(f"seqvision classify: note: --window {window:g} gives the model {num_frames} frames per "
          f"{window:g} s ({rate:.1f} fps); it was trained at {pace['fps']:.1f} fps (training clips "
          f"{pace['min']:.1f}-{pace['max']:.1f}): --window {num_frames / pace['fps']:.3g} matches its pace",
          file=sys.stderr)


def window_command(args, videos, problems) -> int:
    """``seqvision classify --window S [--stride S]``: one line (or JSON line) per window of each video.

    A video that cannot be read is reported as ``classify`` reports it (the same typed error and message, e.g.
    "file is empty (0 bytes)"), and the others still run: with ``--json`` as a JSON line ``{"path", "error":
    message, "error_type": the error's class name, or null for an input never opened (no such file)}``, else as
    ``PATH: FAILED: message`` on stdout. Exit code 1 when some inputs failed; when every video fails (or the
    first 8 for one cause) the run stops with ``SystemicDecodeError`` (exit 2), as ``classify`` does.
    """
    from ..stream import label_windows, plot_timeline  # lazy: seqvision.stream imports matplotlib (see the top)
    from ..train import load_model  # lazy: seqvision.train imports matplotlib + pycocoevalcap (see the top)

    if args.window <= 0 or (args.stride is not None and args.stride <= 0):
        raise ArgumentError("--window/--stride", f"must be > 0 seconds, got {args.window:g}, {args.stride}")
    pngs = timeline_paths(args.timeline, videos) if args.timeline else []
    loaded = load_model(args.checkpoint, device=str(select_device(args.device)), with_encoder=True)
    _window_pace_note(loaded, args.window)
    failed: list[tuple[str, str]] = []
    report = ErrorReport()  # classify's systemic-failure rule

    def fail(path: str, message: str, error_type: str | None, **extra) -> None:
        failed.append((path, message))
        if args.json:
            print(_json_line({"path": path, "error": message, "error_type": error_type, **extra}), flush=True)

    for p, e in problems:
        fail(p, e, None)
    for v, video in enumerate(videos):
        gen = label_windows(loaded, video, window=args.window, stride=args.stride, top_k=args.top_k)
        done = 0
        try:
            while True:
                w = next(gen)
                done += 1
                if args.json:
                    print(_json_line({"path": str(video), **w}), flush=True)
                else:
                    what = w.get("label") or w.get("caption") or " ".join(w.get("frame_labels", []))
                    print(f"{shown(video)} [{w['start']:.2f}-{w['end']:.2f} s]: {what}", flush=True)
        except StopIteration as stop:
            labels = stop.value
            report.add([], loaded=1)
        except ValueError as exc:  # a stride shorter than this video's frame interval
            if isinstance(exc, SeqVisionError):
                raise
            if len(videos) + len(problems) == 1:  # the one input: a bad argument
                raise ArgumentError("--window/--stride", str(exc)) from None
            fail(str(video), str(exc), "ArgumentError")  # among several: this video fails, the others go on
            continue
        except SeqVisionError as exc:  # one bad video does not stop the others
            message = exc.reason if isinstance(exc, VideoDecodeError) else str(exc)
            fail(str(video), message, type(exc).__name__)
            report.add([(str(video), message)], loaded=0)
            report.raise_if_systemic(total=len(videos))
            continue
        if labels.error:  # decoding stopped part way: the windows so far are not the whole video
            until = "no frame decoded" if labels.until_s is None else f"at {labels.until_s:.2f} s"
            fail(str(video), f"decoding stopped {until} ({labels.error}); {done} windows labelled before it, the "
                             f"rest of the video was not", "VideoDecodeError", windows_done=done,
                 until_s=labels.until_s)
        if args.timeline:
            png = pngs[v]
            rows = labels.timeline or [  # captioners: each window's caption over its span, as `stream` draws it
                {"time": w["start"], "caption": w["caption"], "window": [w["start"], w["end"]]} if "caption" in w
                else {"time": w["start"], "label": w.get("label"), "probs": w.get("probs", {})}
                for w in labels.windows]
            plot_timeline(rows, png, title=f"{Path(video).name}: windows of {args.window:g} s")
            print(f"timeline: {png}", file=sys.stderr)
    if not args.json:
        for p, e in failed:
            print(f"{shown(p)}: FAILED: {e}")
        if failed:
            print(f"{len(failed)} of {len(videos) + len(problems)} inputs failed", file=sys.stderr)
    return 1 if failed else 0
