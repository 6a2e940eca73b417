"""The streaming loop: a decode thread feeds a bounded queue, the main thread encodes micro-batches and steps
the model; per-frame latency split into decode / queue / CNN / RNN; frames dropped (oldest first) when a live
source outruns the model."""

from __future__ import annotations

import queue
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._online import OnlinePredictor
from ._source import FrameSource, RateSampler, SourceFrame

__all__ = ["run_stream", "StreamSummary", "plot_timeline"]

_END = object()


@dataclass
class StreamSummary:
    """What a stream run did.

    Attributes:
        source: the source string; ``end_reason``: ``"eof"``, ``"interrupted"``, ``"stopped"``, ``"max frames"``,
            ``"eof after a decode error (...)"`` or ``"source lost: ..."``.
        error_type: the class name of the error that ended the run early (:attr:`FrameSource.end_error`, e.g.
            ``"ExitError"`` for a read timeout, ``"ConnectionRefusedError"``, ``"VideoDecodeError"``), for code to
            test instead of parsing ``end_reason``; ``None`` for a clean end (``"eof"``, ``"interrupted"``,
            ``"stopped"``, ``"max frames"``). ``seqvision stream`` exits 1 when it is set.
        decoded / sampled / processed / dropped: frames decoded, kept by the fps sampling, run through the model,
            and dropped because the model fell behind a live source.
        reconnects: reopenings of the source after stalls or disconnects.
        skipped_packets: damaged packets the decoder rejected (skipped, as the ffmpeg CLI skips them), and
            packets of a stream that appeared mid-stream (a new MPEG-TS PID).
        discontinuities: timestamp resets or far jumps (concatenated MPEG-TS, an encoder restart) re-based so
            that stream time goes on one frame duration after the last frame.
        seconds: wall time of the run; ``fps``: processed frames per wall second.
        latency_ms: per part (``decode``, ``queue``, ``cnn``, ``rnn``, ``total`` from the frame's arrival to its
            result) ``{"mean", "p50", "p95", "max"}`` in milliseconds.
        labels: processed frames per label (frame models; the running label for clip models); ``captions``:
            the captioner's windows.
    """

    source: str
    end_reason: str = ""
    decoded: int = 0
    sampled: int = 0
    processed: int = 0
    dropped: int = 0
    reconnects: int = 0
    skipped_packets: int = 0
    discontinuities: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    latency_ms: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    final_label: str | None = None
    captions: list = field(default_factory=list)
    error_type: str | None = None  # last, so the fields before it keep their order (JSON-safe: a str or null)

    def to_dict(self) -> dict:
        return asdict(self)


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"mean": round(statistics.fmean(ordered), 3), "p50": round(pick(0.5), 3), "p95": round(pick(0.95), 3),
            "max": round(ordered[-1], 3)}


def run_stream(source: FrameSource, predictor: OnlinePredictor, *, fps: float | None = None, micro_batch: int = 1,
               queue_size: int | None = None, max_frames: int | None = None, drop: bool | None = None,
               on_result: Callable[[dict], None] | None = None, keep_results: bool = True) -> tuple[StreamSummary, list[dict]]:
    """Run ``predictor`` over ``source`` until the end, ``max_frames`` processed frames, or Ctrl-C.

    Args:
        source: a :class:`FrameSource`.
        predictor: an :class:`OnlinePredictor`.
        fps: keep frames at this rate (by stream time, on a grid of ``1/fps`` s from the first frame: see
            :class:`~seqvision.stream._source.RateSampler`; no catch-up burst after a gap); None keeps every frame.
        micro_batch: encode up to this many queued frames in one CNN call (1 = lowest latency).
        queue_size: decoded frames waiting for the model at most (default: 2 when dropping, so a live result is
            at most ~2 frames behind; 8 for files).
        drop: when the queue is full, drop its oldest frame instead of waiting (counted in ``dropped``).
            Default: ``source.live`` (a live URL, a device, a pipe), False for files, including files served
            over http(s) or file:// (every frame is processed).
        on_result: called with each per-frame result as soon as it exists (e.g. to print JSON lines).
        keep_results: also return the results (False for endless streams: only the summary is kept).

    Returns:
        ``(summary, results)``; each result is :meth:`OnlinePredictor.step_many`'s dict plus ``frame``
        (decoded index), ``wall`` (epoch seconds) and the full ``latency_ms`` split.

    Ctrl-C (SIGINT) and SIGTERM (run from the main thread) end the run cleanly: the summary says
    ``"interrupted"``.

    A captioner's last, partial window (:meth:`OnlinePredictor.flush` at the end) comes as one more result
    that is not a frame: ``{"wall", "time": the window's end, "final_window": true, "caption", "window":
    [start, end], "window_frames", ...}`` (no ``frame`` / ``index``).
    """
    if micro_batch < 1 or (queue_size is not None and queue_size < 1):
        raise ValueError(f"micro_batch and queue_size must be >= 1, got {micro_batch}, {queue_size}")

    def dropping() -> bool:  # a URL is known to be live only once open: decided per frame
        return source.live if drop is None else drop

    def limit() -> int:  # frames waiting at most when dropping
        return queue_size or max(2, micro_batch)

    q: queue.Queue = queue.Queue(maxsize=queue_size or max(8, micro_batch))
    summary = StreamSummary(source=source.source)
    counts = {"decoded": 0, "sampled": 0, "dropped": 0}
    failure: list[BaseException] = []

    def reader():
        keep = RateSampler(fps) if fps else None
        try:
            for sf in source:
                counts["decoded"] += 1
                if keep is not None and not keep(sf.time):
                    continue
                counts["sampled"] += 1
                while not source.stop.is_set():
                    try:
                        if dropping() and q.qsize() >= limit():  # (the queue holds more for a file)
                            wait = time.perf_counter() + 0.1  # as a blocking put would: 0.1 s for room
                            while q.qsize() >= limit() and time.perf_counter() < wait:
                                time.sleep(0.002)
                            if q.qsize() >= limit():
                                raise queue.Full
                        q.put((sf, time.perf_counter()), timeout=0.1)
                        break
                    except queue.Full:
                        if dropping():
                            try:
                                q.get_nowait()
                                counts["dropped"] += 1
                            except queue.Empty:
                                pass
        except BaseException as exc:  # surfaced in the main thread
            failure.append(exc)
        finally:
            while True:  # the end marker must get through even when the queue is full
                try:
                    q.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if source.stop.is_set():
                        try:
                            q.get_nowait()
                        except queue.Empty:
                            pass

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt  # a clean end with a summary, as Ctrl-C

    on_main = threading.current_thread() is threading.main_thread()  # only the main thread sets handlers
    old_term = signal.signal(signal.SIGTERM, on_sigterm) if on_main else None
    thread = threading.Thread(target=reader, name="seqvision-stream-decode", daemon=True)
    parts: dict[str, list[float]] = {k: [] for k in ("decode", "queue", "cnn", "rnn", "total")}
    labels: Counter = Counter()
    results: list[dict] = []
    start = time.perf_counter()
    thread.start()
    end_reason = None
    try:
        done = False
        while not done:
            item = q.get()
            if item is _END:
                break
            batch: list[tuple[SourceFrame, float]] = [item]
            while len(batch) < micro_batch:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _END:
                    done = True
                    break
                batch.append(nxt)
            picked = time.perf_counter()
            outs = predictor.step_many([sf.frame for sf, _ in batch], times=[round(sf.time, 6) for sf, _ in batch])
            finished = time.perf_counter()
            for (sf, queued), r in zip(batch, outs):
                lat = r["latency_ms"]
                lat["decode"] = sf.decode_ms
                lat["queue"] = (picked - queued) * 1e3
                lat["total"] = sf.decode_ms + (finished - queued) * 1e3
                for k in parts:
                    parts[k].append(lat[k])
                r = {"wall": round(sf.wall, 6), "frame": sf.index, **r,
                     "latency_ms": {k: round(v, 3) for k, v in lat.items()}}
                if r.get("label") is not None:
                    labels[r["label"]] += 1
                if r.get("caption") is not None:  # an empty caption is still a window's caption
                    summary.captions.append({"window": r["window"], "caption": r["caption"]})
                summary.final_label = r.get("label", summary.final_label)
                summary.processed += 1
                if on_result is not None:
                    on_result(r)
                if keep_results:
                    results.append(r)
                if max_frames and summary.processed >= max_frames:
                    end_reason, done = "max frames", True
                    break
    except KeyboardInterrupt:
        end_reason = "interrupted"
    finally:
        source.stop.set()
        if on_main:
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
        # Ctrl-C / SIGTERM: do not wait out a read that blocks for up to `timeout` s on a silent live source (the
        # decode thread is a daemon and sees `stop` at its next frame or timeout); otherwise let it finish
        thread.join(timeout=1.0 if end_reason == "interrupted" else source.timeout + 1.0)
    last = predictor.flush()
    if last is not None:
        summary.captions.append({"window": last["window"], "caption": last["caption"]})
        last = {"wall": round(time.time(), 6), "time": last["window"][1], "final_window": True, **last}
        if on_result is not None:
            on_result(last)
        if keep_results:
            results.append(last)
    if failure and end_reason is None:
        raise failure[0]
    summary.end_reason = end_reason or source.end_reason or "eof"
    error = None if end_reason else source.end_error  # interrupted / max frames: ended here, cleanly
    summary.error_type = type(error).__name__ if error is not None else None
    summary.decoded, summary.sampled, summary.dropped = counts["decoded"], counts["sampled"], counts["dropped"]
    summary.reconnects = source.reconnect_count
    summary.skipped_packets = getattr(source, "skipped_packets", 0)
    summary.discontinuities = getattr(source, "discontinuities", 0)
    summary.seconds = round(time.perf_counter() - start, 3)
    summary.fps = round(summary.processed / summary.seconds, 2) if summary.seconds > 0 else 0.0
    summary.latency_ms = {k: _stats(v) for k, v in parts.items()}
    summary.labels = dict(labels)
    return summary, results


def plot_timeline(results: list[dict], out: str | Path, *, title: str = "") -> Path:
    """A PNG of a run: the label over stream time as a coloured band and each label's probability as a line
    (frames / classify), or the captions at their windows (caption). Returns the path written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [r for r in results if r.get("time") is not None]
    captions = [r for r in rows if r.get("caption") is not None]
    fig = Figure(figsize=(10, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if captions:
        for i, r in enumerate(captions):
            t0, t1 = r["window"]
            ax.axvspan(t0, t1, color=f"C{i % 10}", alpha=0.25)
            ax.text((t0 + t1) / 2, 0.5 + 0.3 * ((i % 2) - 0.5), r["caption"], ha="center", va="center", fontsize=8,
                     wrap=True)
        ax.set_yticks([])
    elif rows:
        times = [r["time"] for r in rows]
        names = sorted({n for r in rows for n in r.get("probs", {})} | {r["label"] for r in rows if r.get("label")})
        order = {n: i for i, n in enumerate(names)}
        for n in names:
            ax.plot(times, [r.get("probs", {}).get(n, float("nan")) for r in rows], label=n,
                    color=f"C{order[n] % 10}", linewidth=1)
        span = [(t, r["label"]) for t, r in zip(times, rows)]
        for (t, lab), nxt in zip(span, times[1:] + [times[-1] + (times[-1] - times[0]) / max(1, len(times) - 1)]):
            ax.axvspan(t, nxt, ymin=0.0, ymax=0.06, color=f"C{order.get(lab, 0) % 10}", linewidth=0)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("probability")
        ax.legend(loc="upper right", fontsize=7, ncol=min(4, max(1, len(names))))
    ax.set_xlabel("stream time (s)")
    ax.set_title(title or "seqvision timeline (band: label)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out
