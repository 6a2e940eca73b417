"""Mutation fuzzing of the video readers at a larger count than the test suite.

    python benchmarks/fuzz.py --count 1000 --seed 0

Makes small real videos (h264 mp4/mov/mkv, MPEG-4 AVI with B-frames, VP9 WebM, MJPEG AVI, HEVC MKV) and
non-video files, mutates them (truncation, byte flips, zeroed / random ranges, spliced ranges, swapped
extensions, 0-byte files, non-video files), and checks each one with ``VideoReader`` (pyav and decord backends:
open, ``len``, ``get_frames`` on a uniform sample, the last frame) in isolated worker processes with a per-file
timeout. Prints counts by backend, mutation and outcome:

- ``valid``: frames of the promised shape; ``decode_error``: a ``VideoDecodeError`` (both are fine);
- ``error``: another exception; ``bad_result``: wrong shape / dtype; ``crash``: the worker died (segfault,
  abort); ``hang``: no answer within ``--timeout`` (all four are bugs).

Files that gave a bad outcome are copied to ``--keep`` (default ``fuzz_failures/``) for reproduction. Exit code 1
when any file gave a bad outcome.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fuzzing  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="fuzz.py")
    p.add_argument("--count", type=int, default=1000, help="mutated files (kinds in round robin)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="checking processes in parallel")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per file and backend before 'hang'")
    p.add_argument("--backend", action="append", choices=fuzzing.BACKENDS, default=None,
                   help="repeatable; default both")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--size", type=int, default=0, help="decode-time resize (0 = native size)")
    p.add_argument("--keep", default="fuzz_failures", help="folder for files with a bad outcome")
    p.add_argument("--json", default="", help="also write every result to this JSON file")
    args = p.parse_args(argv)
    backends = tuple(args.backend or fuzzing.BACKENDS)

    with tempfile.TemporaryDirectory(prefix="seqvision_fuzz_") as tmp:
        t0 = time.perf_counter()
        seeds = fuzzing.make_seed_files(Path(tmp) / "seeds")
        mutants = fuzzing.make_mutants(seeds, Path(tmp) / "mutants", args.count, seed=args.seed)
        print(f"{len(mutants)} files from {len([s for s in seeds if not s.startswith('nv_')])} seed videos "
              f"({', '.join(s for s in seeds if not s.startswith('nv_'))}) and "
              f"{len([s for s in seeds if s.startswith('nv_')])} non-video files; backends {', '.join(backends)}; "
              f"{args.workers} workers, {args.timeout:g} s per file", flush=True)
        done = [0]
        total = len(mutants) * len(backends)

        def progress(res):
            done[0] += 1
            if done[0] % 200 == 0 or done[0] == total:
                print(f"  {done[0]}/{total} checks, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

        results = fuzzing.run_checks(mutants, backends=backends, workers=args.workers, timeout=args.timeout,
                                     size=args.size or None, num_frames=args.num_frames, progress=progress)
        elapsed = time.perf_counter() - t0
        print(fuzzing.format_table(results))
        bad = [r for r in results if r.outcome not in fuzzing.GOOD_OUTCOMES]
        slowest = max(results, key=lambda r: r.seconds)
        print(f"{len(results)} checks in {elapsed:.1f} s; slowest {slowest.seconds:.2f} s "
              f"({Path(slowest.path).name}, {slowest.backend})")
        fell_back = sum(1 for r in results if r.backend == "decord" and r.backend_used == "pyav")
        if "decord" in backends:
            print(f"decord backend: {fell_back} of {len(mutants)} files fell back to pyav (damaged or unverifiable)")
        if bad:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            print(f"{len(bad)} BAD outcomes (files copied to {keep}/):")
            for r in bad:
                shutil.copy2(r.path, keep / Path(r.path).name)
                print("  " + r.describe())
        else:
            print("no crash, hang or unexpected exception: every file gave valid frames or a VideoDecodeError")
        if args.json:
            Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
