"""Mutation fuzzing of video files: seed videos, seeded mutations, and an isolated checker.

Used by ``tests/test_fuzz.py`` (small counts) and ``benchmarks/fuzz.py`` (large counts). Import with
``tests/`` on ``sys.path``.

Contract checked for every file and backend (``docs/DESIGN.md``, io): ``VideoReader`` opens it, ``len`` is
>= 1, ``get_frames`` on a uniform sample returns uint8 ``(T, 3, H, W)`` with ``(H, W) == reader.output_size``
-- or a :class:`seqvision.errors.VideoDecodeError` is raised somewhere along the way. Warnings are allowed.
Anything else is a failure: another exception type (``"error"``), a wrong result (``"bad_result"``), the
checking process dying (``"crash"``, e.g. a segfault in a decoder) or not answering in time (``"hang"``).

Every check runs in a separate worker process (:class:`CheckPool`), so a crash or hang in a decoder is
observed and attributed to one file instead of taking the caller down; a dead or stuck worker is replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
import zlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Mutation kinds. "control" is the unmutated seed (must always be valid: a sanity check of the checker).
MUTATIONS = ("control", "truncate", "truncate_tail", "flip", "flip_header", "zero_range", "garbage_range",
             "splice", "swap_ext", "empty", "non_video")
OUTCOMES = ("valid", "decode_error", "error", "bad_result", "crash", "hang")
GOOD_OUTCOMES = ("valid", "decode_error")
BACKENDS = ("pyav", "decord")

# (name, codec, suffix, encoder options for tests/assets.make_index_video)
SEEDS = (
    ("h264_faststart", "h264", ".mp4", {"faststart": True, "gop": 8, "bframes": 2}),
    ("h264_moov_end", "h264", ".mov", {"gop": 8, "bframes": 0}),
    ("mpeg4_bframes", "mpeg4", ".avi", {"gop": 8, "bframes": 2}),
    ("vp9", "vp9", ".webm", {"gop": 8}),
    ("mjpeg", "mjpeg", ".avi", {}),
    ("h264_mkv", "h264", ".mkv", {"gop": 8, "bframes": 2}),
    # libx265 corrupts the heap (glibc abort) when a frame is narrower than its 64-pixel CTU, e.g. 32x48:
    ("hevc_mkv", "hevc", ".mkv", {"gop": 8, "bframes": 2, "size": (48, 64)}),
)
NON_VIDEO = ("text", "random_bytes", "json", "png", "audio_only", "html")


# ---------------------------------------------------------------------------------------------------------------
# Seed files


def make_seed_files(folder, *, num_frames: int = 24, size: tuple[int, int] = (32, 64)) -> dict[str, Path]:
    """Write the seed videos (several codecs and containers) and the non-video files into ``folder``.

    Returns ``{name: path}``; video seeds are named as in :data:`SEEDS`, non-video ones ``nv_<kind>``.
    """
    sys.path.insert(0, str(HERE))
    import assets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, codec, suffix, opts in SEEDS:
        if not assets.encoder_available(codec):
            continue
        out[name] = assets.make_index_video(folder / f"{name}{suffix}", num_frames=num_frames,
                                            codec=codec, **{"size": size, **opts})
    rng = np.random.default_rng(1234)
    (folder / "nv_text.mp4").write_text("this is not a video, only text\n" * 40)
    (folder / "nv_random_bytes.avi").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "nv_json.webm").write_text(json.dumps({"frames": list(range(200))}))
    (folder / "nv_png.mp4").write_bytes(_png(16, 24, rng))
    (folder / "nv_html.mkv").write_text("<html><body>" + "video " * 300 + "</body></html>")
    assets.make_audio_file(folder / "nv_audio_only.mp4", seconds=0.5)
    for kind in NON_VIDEO:
        out[f"nv_{kind}"] = next(folder.glob(f"nv_{kind}.*"))
    return out


def _png(height: int, width: int, rng) -> bytes:
    """A small valid RGB PNG (FFmpeg opens a PNG as a one-frame video: a legitimate 'valid' outcome)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    pixels = rng.integers(0, 256, (height, width * 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------------------------
# Mutations


@dataclass
class Mutant:
    """One mutated file: where it is, what it came from and how it was made."""

    path: Path
    seed_name: str
    mutation: str
    detail: str


def mutate(data: bytes, suffix: str, kind: str, rng: np.random.Generator, *, other_suffixes=(".mp4",)):
    """Apply one mutation to ``data``. Returns ``(bytes, suffix, detail)``.

    ``swap_ext`` keeps the bytes and changes the suffix to another container's (an .avi named .mp4).
    ``empty`` and ``non_video`` are handled by :func:`make_mutants` (they do not start from a video).
    """
    n = len(data)
    buf = bytearray(data)
    if kind == "control":
        return bytes(buf), suffix, "unchanged"
    if kind == "truncate":
        cut = int(rng.integers(1, n))
        return bytes(buf[:cut]), suffix, f"cut at {cut}/{n}"
    if kind == "truncate_tail":  # keep the header, lose the end of the data (or an index at the end)
        cut = int(rng.integers(int(n * 0.5), n))
        return bytes(buf[:cut]), suffix, f"cut at {cut}/{n}"
    if kind == "flip":
        count = int(rng.integers(1, 33))
        where = rng.integers(0, n, count)
        for w in where:
            buf[w] ^= int(rng.integers(1, 256))
        return bytes(buf), suffix, f"{count} bytes flipped, first at {int(where.min())}"
    if kind == "flip_header":
        count = int(rng.integers(1, 9))
        where = rng.integers(0, min(n, 1024), count)
        for w in where:
            buf[w] ^= int(rng.integers(1, 256))
        return bytes(buf), suffix, f"{count} bytes flipped in the first 1 KiB: {sorted(int(w) for w in where)}"
    if kind in ("zero_range", "garbage_range"):
        length = int(rng.integers(16, max(17, min(4096, n // 2))))
        start = int(rng.integers(0, max(1, n - length)))
        if kind == "zero_range":
            buf[start:start + length] = bytes(length)
        else:
            buf[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        return bytes(buf[:n]), suffix, f"{kind.split('_')[0]} bytes {start}..{start + length}"
    if kind == "splice":  # copy one range over another: valid-looking structures in the wrong place
        length = int(rng.integers(16, max(17, n // 4)))
        src = int(rng.integers(0, max(1, n - length)))
        dst = int(rng.integers(0, max(1, n - length)))
        buf[dst:dst + length] = data[src:src + length]
        return bytes(buf[:n]), suffix, f"copied {src}..{src + length} to {dst}"
    if kind == "swap_ext":
        choices = [s for s in other_suffixes if s != suffix] or [".mp4"]
        new = choices[int(rng.integers(0, len(choices)))]
        return bytes(buf), new, f"{suffix} named {new}"
    raise ValueError(f"unknown mutation {kind!r}")


def make_mutants(seeds: dict[str, Path], out, count: int, *, seed: int = 0,
                 kinds: tuple[str, ...] = MUTATIONS) -> list[Mutant]:
    """``count`` mutated files in ``out``, mutation kinds in round robin (so every kind is covered), seed video
    and mutation parameters drawn from ``np.random.default_rng([seed, i])`` for mutant ``i``: each mutant's seed
    video does not depend on the earlier mutants' file sizes (a seed file re-encoded a few bytes longer shifts a
    shared generator's stream, since ``integers`` may draw more than once)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = sorted(k for k in seeds if not k.startswith("nv_"))
    non_video = sorted(k for k in seeds if k.startswith("nv_"))
    suffixes = sorted({seeds[k].suffix for k in videos} | {".mp4", ".avi", ".webm", ".mkv", ".mov"})
    cache = {k: seeds[k].read_bytes() for k in seeds}
    mutants = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        rng = np.random.default_rng([seed, i])
        if kind == "empty":
            suffix = suffixes[int(rng.integers(0, len(suffixes)))]
            path = out / f"m{i:05d}_empty{suffix}"
            path.write_bytes(b"")
            mutants.append(Mutant(path, "-", kind, "0 bytes"))
            continue
        if kind == "non_video":
            name = non_video[int(rng.integers(0, len(non_video)))]
            src = seeds[name]
            path = out / f"m{i:05d}_{name}{src.suffix}"
            path.write_bytes(cache[name])
            mutants.append(Mutant(path, name, kind, name[3:]))
            continue
        name = videos[int(rng.integers(0, len(videos)))]
        data, suffix, detail = mutate(cache[name], seeds[name].suffix, kind, rng, other_suffixes=suffixes)
        path = out / f"m{i:05d}_{name}_{kind}{suffix}"
        path.write_bytes(data)
        mutants.append(Mutant(path, name, kind, detail))
    return mutants


# ---------------------------------------------------------------------------------------------------------------
# The check (runs inside a worker process)


def check_reader(path: str, backend: str, *, size=None, num_frames: int = 8, last_frame: bool = True) -> dict:
    """Open ``path`` with ``VideoReader``, read a uniform sample (and the last frame); classify the outcome.

    Returns ``{"outcome", "detail", "shape", "sha1", "backend_used", "frames", "warnings"}``; ``sha1`` hashes the
    uniform sample's bytes (to compare with the dataset's result).
    """
    import torch

    from seqvision.errors import VideoDecodeError
    from seqvision.io import VideoReader, sample_indices

    result = {"outcome": "valid", "detail": "", "shape": None, "sha1": None, "backend_used": None, "frames": None,
              "warnings": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with VideoReader(path, backend=backend, size=size) as vr:
                result["backend_used"] = vr.backend
                n = len(vr)
                result["frames"] = n
                h, w = vr.output_size
                if n < 1 or h < 1 or w < 1:
                    return {**result, "outcome": "bad_result", "detail": f"len={n}, output_size={(h, w)}"}
                sampled = sample_indices(n, sampler="uniform", num_frames=num_frames)
                frames = vr.get_frames(sampled.indices)
                expect = (len(sampled.indices), 3, h, w)
                if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or tuple(frames.shape) != expect:
                    return {**result, "outcome": "bad_result",
                            "detail": f"got {type(frames).__name__} {getattr(frames, 'dtype', '?')} "
                                      f"{tuple(getattr(frames, 'shape', ()))}, expected uint8 {expect}"}
                result["shape"] = list(frames.shape)
                result["sha1"] = hashlib.sha1(frames.numpy().tobytes()).hexdigest()
                if not _reproducible(path, backend, size, sampled.indices, result["sha1"]):
                    # FFmpeg conceals a damaged intra frame (MJPEG) by leaving rows of a pooled, reused buffer
                    # unwritten, so its pixels depend on what was decoded before (the ffmpeg CLI is
                    # deterministic only through its fixed decode order): no hash to compare with
                    result["sha1"] = None
                    result["detail"] = "damaged frames whose pixels depend on the decode history"
                if last_frame:
                    last = vr.get_frames([n - 1])  # len() counts only frames really present
                    if tuple(last.shape) != (1, 3, h, w):
                        return {**result, "outcome": "bad_result", "detail": f"last frame shape {tuple(last.shape)}"}
        except VideoDecodeError as exc:
            result.update(outcome="decode_error", detail=exc.reason[:300])
        except Exception as exc:  # noqa: BLE001 -- exactly what the fuzz test is looking for
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name}" if tb else "?"
            result.update(outcome="error", detail=f"{type(exc).__module__}.{type(exc).__name__}: "
                                                  f"{str(exc)[:300]} (at {where})")
    result["warnings"] = len(caught)
    return result


def _reproducible(path: str, backend: str, size, indices: list[int], sha1: str) -> bool:
    """Whether a second reader that first decodes every frame in order returns the same sample (``sha1``)."""
    from seqvision.errors import VideoDecodeError
    from seqvision.io import VideoReader

    try:
        with VideoReader(path, backend=backend, size=size) as vr:
            vr.get_frames(list(range(len(vr))))
            return hashlib.sha1(vr.get_frames(indices).numpy().tobytes()).hexdigest() == sha1
    except VideoDecodeError:  # the full read met damage the sample did not: the index may have changed
        return False


def _worker_main() -> None:
    """Read JSON jobs from stdin, answer JSON lines on the original stdout (C-level stdout goes to stderr)."""
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # FFmpeg / decord chatter on fd 1 cannot corrupt the protocol
    sys.stdout = sys.stderr
    import seqvision.io  # noqa: F401 -- import before the first job: it counts against no file's time
    import decord  # noqa: F401

    answer.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        job = json.loads(line)
        t0 = time.perf_counter()
        res = check_reader(job["path"], job["backend"], size=job.get("size"), num_frames=job.get("num_frames", 8),
                           last_frame=job.get("last_frame", True))
        res["seconds"] = time.perf_counter() - t0
        answer.write(json.dumps(res) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Worker processes


class _Worker:
    def __init__(self, start_timeout: float):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-c", "import fuzzing; fuzzing._worker_main()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, cwd=str(ROOT), start_new_session=True)
        self._buf = b""
        ready = self.read(start_timeout)
        if not isinstance(ready, dict) or not ready.get("ready"):
            self.kill()
            raise RuntimeError(f"fuzz worker did not start ({ready!r})")

    def read(self, timeout: float):
        """The next JSON line, ``"dead"`` (EOF) or ``"timeout"``."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return "dead"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, job: dict, timeout: float):
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return "dead"
        return self.read(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the worker's own session: it and its threads only
            except ProcessLookupError:
                pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


@dataclass
class CheckResult:
    path: str
    backend: str
    mutation: str
    seed_name: str
    mutation_detail: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0
    shape: list | None = None
    sha1: str | None = None
    backend_used: str | None = None
    frames: int | None = None
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        return (f"{self.outcome} [{self.backend}] {Path(self.path).name} ({self.mutation} of {self.seed_name}: "
                f"{self.mutation_detail}): {self.detail}")


def run_checks(mutants: list[Mutant], *, backends=BACKENDS, workers: int = 2, timeout: float = 20.0,
               size=None, num_frames: int = 8, last_frame: bool = True, start_timeout: float = 120.0,
               progress=None) -> list[CheckResult]:
    """Check every mutant with every backend, each check in a worker process bounded by ``timeout`` seconds.

    A worker that dies is recorded as ``"crash"`` (with its signal) and one that does not answer in time as
    ``"hang"`` (it is killed); either is replaced by a fresh worker for the next file.
    """
    jobs: queue.Queue = queue.Queue()
    for m in mutants:
        for b in backends:
            jobs.put((m, b))
    results: list[CheckResult] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def drive():
        worker = None
        try:
            while True:
                try:
                    m, b = jobs.get_nowait()
                except queue.Empty:
                    return
                if worker is None:
                    worker = _Worker(start_timeout)
                job = {"path": str(m.path), "backend": b, "size": size, "num_frames": num_frames,
                       "last_frame": last_frame}
                t0 = time.perf_counter()
                answer = worker.ask(job, timeout)
                base = dict(path=str(m.path), backend=b, mutation=m.mutation, seed_name=m.seed_name,
                            mutation_detail=m.detail)
                if isinstance(answer, dict):
                    res = CheckResult(**base, outcome=answer["outcome"], detail=answer["detail"],
                                      seconds=answer["seconds"], shape=answer["shape"], sha1=answer["sha1"],
                                      backend_used=answer["backend_used"], frames=answer["frames"])
                else:
                    if answer == "timeout":
                        worker.kill()
                        res = CheckResult(**base, outcome="hang", detail=f"no answer in {timeout:.0f} s",
                                          seconds=time.perf_counter() - t0)
                    else:
                        rc = worker.proc.wait()
                        why = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
                        res = CheckResult(**base, outcome="crash", detail=f"worker died ({why})",
                                          seconds=time.perf_counter() - t0)
                        worker.kill()
                    worker = None
                with lock:
                    results.append(res)
                    if progress is not None:
                        progress(res)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            failures.append(exc)
        finally:
            if worker is not None:
                try:
                    worker.proc.stdin.close()
                except OSError:
                    pass
                try:
                    worker.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                worker.kill()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    order = {(str(m.path), b): i for i, (m, b) in enumerate((m, b) for m in mutants for b in backends)}
    results.sort(key=lambda r: order[(r.path, r.backend)])
    return results


def tally(results: list[CheckResult]) -> dict:
    """Counts by backend and outcome, and by (backend, mutation) and outcome."""
    by_backend: dict = {}
    by_mutation: dict = {}
    for r in results:
        by_backend.setdefault(r.backend, dict.fromkeys(OUTCOMES, 0))[r.outcome] += 1
        by_mutation.setdefault((r.backend, r.mutation), dict.fromkeys(OUTCOMES, 0))[r.outcome] += 1
    return {"by_backend": by_backend, "by_mutation": by_mutation}


def format_table(results: list[CheckResult]) -> str:
    t = tally(results)
    cols = OUTCOMES
    lines = [f"{'backend':<8} {'mutation':<14} " + " ".join(f"{c:>12}" for c in cols)]
    for (b, m), counts in sorted(t["by_mutation"].items(), key=lambda kv: (kv[0][0], MUTATIONS.index(kv[0][1]))):
        lines.append(f"{b:<8} {m:<14} " + " ".join(f"{counts[c]:>12}" for c in cols))
    for b, counts in sorted(t["by_backend"].items()):
        lines.append(f"{b:<8} {'ALL':<14} " + " ".join(f"{counts[c]:>12}" for c in cols))
    return "\n".join(lines)
