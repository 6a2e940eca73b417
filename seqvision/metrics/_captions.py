"""Captioning metrics with the numbers the field reports: pycocoevalcap's own scorers.

BLEU-1..4 (corpus-level, "closest" reference length), METEOR 1.5, ROUGE-L (beta 1.2) and CIDEr-D (pycocoevalcap's
``Cider``: sigma 6, clipped counts, x10), on captions tokenised as coco-caption does. Java runs the real PTB
tokenizer and METEOR; without Java we tokenise in Python (same tokens on plain English captions) and skip METEOR.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor import meteor as _coco_meteor
from pycocoevalcap.rouge.rouge import Rouge

from ..errors import SeqVisionError
from ._tokenize import java_ptb_tokenize, one_line, python_ptb_tokenize

__all__ = ["caption_scores", "java_available", "tokenize_captions"]

METEOR_DIR = Path(_coco_meteor.__file__).resolve().parent
METEOR_JAR = METEOR_DIR / _coco_meteor.METEOR_JAR
METEOR_PARAPHRASE = METEOR_DIR / "data" / "paraphrase-en.gz"

_java_checked: dict[str, bool] = {}
_noted: set[str] = set()


def _note_once(key: str, message: str) -> None:
    if key not in _noted:
        _noted.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def java_available() -> bool:
    """True if a working ``java`` is on PATH (checked once per process with ``java -version``)."""
    java = shutil.which("java")
    if java is None:
        return False
    if java not in _java_checked:
        try:
            ok = subprocess.run([java, "-version"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        _java_checked[java] = ok
    return _java_checked[java]


def tokenize_captions(captions: list[str], *, use_java: bool | None = None, timeout: float = 60.0) -> list[str]:
    """Tokenise captions like coco-caption (PTB, lower-case, punctuation dropped); one string per caption.

    Args:
        captions: raw captions.
        use_java: ``True`` runs Stanford's PTBTokenizer (falls back to Python with a warning if it fails),
            ``False`` the Python re-implementation, ``None`` Java when available.
        timeout: seconds allowed for the Java tokenizer.
    """
    if use_java is None:
        use_java = java_available()
    if use_java:
        try:
            return java_ptb_tokenize(captions, java=shutil.which("java") or "java", timeout=timeout)
        except SeqVisionError as e:
            warnings.warn(f"{e}; tokenising in Python instead", RuntimeWarning, stacklevel=2)
    return python_ptb_tokenize(captions)


class _MeteorProcess:
    """pycocoevalcap's METEOR protocol over a ``-stdio`` Java process, with a deadline and a guaranteed exit.

    pycocoevalcap's ``Meteor`` blocks forever if Java stalls, never drains stderr and only stops Java in
    ``__del__``; this speaks the same protocol (same command line, same lines) so the numbers are identical.
    """

    def __init__(self, java: str, timeout: float):
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile()
        cmd = [java, "-jar", "-Xmx2G", str(METEOR_JAR), "-", "-", "-stdio", "-l", "en", "-norm"]
        self.proc = subprocess.Popen(cmd, cwd=str(METEOR_DIR), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _readline(self) -> str:
        try:
            line = self._lines.get(timeout=max(0.0, self.deadline - time.monotonic()))
        except queue.Empty:
            raise SeqVisionError(f"METEOR (Java) did not answer within {self.timeout:g} s") from None
        if line is None:
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace").strip()[-500:]
            raise SeqVisionError(f"METEOR (Java) exited early with status {self.proc.poll()}: {err}")
        return line.decode("utf-8").strip()

    def _send(self, lines: list[str]) -> None:
        # Runs in a helper thread: if Java dies or we close the pipe, the reader side reports the failure.
        try:
            self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def score(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
        ids = list(gts)
        # SCORE ||| reference 1 ||| ... ||| hypothesis, exactly as pycocoevalcap's Meteor._stat builds it.
        score_lines = []
        for i in ids:
            hyp = res[i][0].replace("|||", "").replace("  ", " ")
            refs = [r.replace("|||", "") for r in gts[i]]
            score_lines.append(" ||| ".join(("SCORE", " ||| ".join(refs), hyp)))
        # Writing from this thread while the reader thread drains stdout cannot deadlock; but a large batch could
        # fill the stdin pipe before Java answers, so write in a helper thread.
        writer = threading.Thread(target=self._send, args=(score_lines,), daemon=True)
        writer.start()
        stats = [self._readline() for _ in ids]
        writer.join(timeout=max(0.0, self.deadline - time.monotonic()))
        eval_line = "EVAL" + "".join(f" ||| {s}" for s in stats)
        writer = threading.Thread(target=self._send, args=([eval_line],), daemon=True)
        writer.start()
        for _ in ids:  # per-caption scores, then the corpus score
            self._readline()
        return float(self._readline())

    def close(self, *, kill: bool = False) -> None:
        """Stop Java: close its input (it exits by itself) or, after a failure, kill it. Always reaps it."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            if kill:
                self.proc.kill()
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)  # Java is gone, so its stdout hits EOF and the reader ends
        self.proc.stdout.close()
        self._stderr.close()


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]], timeout: float) -> float:
    for f in (METEOR_JAR, METEOR_PARAPHRASE):
        if not f.is_file():
            raise SeqVisionError(f"METEOR needs {f}, which is missing from the pycocoevalcap install")
    m = _MeteorProcess(shutil.which("java") or "java", timeout)
    try:
        score = m.score(gts, res)
    except BaseException:
        m.close(kill=True)
        raise
    m.close()
    return score


def _check_inputs(references: Mapping, candidates: Mapping) -> tuple[list[str], list[str], list[list[str]]]:
    if not isinstance(references, Mapping) or not isinstance(candidates, Mapping):
        raise SeqVisionError(
            "caption_scores expects dicts: references {id: [caption, ...]} and candidates {id: caption}; got "
            f"{type(references).__name__} and {type(candidates).__name__}"
        )
    ref_ids, cand_ids = set(references), set(candidates)
    if ref_ids != cand_ids:
        only_r = sorted(map(str, ref_ids - cand_ids))
        only_c = sorted(map(str, cand_ids - ref_ids))
        parts = []
        if only_r:
            parts.append(f"ids with references but no candidate: {_short(only_r)}")
        if only_c:
            parts.append(f"ids with a candidate but no references: {_short(only_c)}")
        raise SeqVisionError("references and candidates must have the same ids; " + "; ".join(parts))
    if not ref_ids:
        raise SeqVisionError("caption_scores needs at least one id; references and candidates are empty")
    ids = list(references)
    cands, refs = [], []
    for i in ids:
        c, r = candidates[i], references[i]
        if not isinstance(c, str):
            raise SeqVisionError(f"candidate for id {i!r} must be one caption string, got {type(c).__name__}")
        if isinstance(r, str) or not r or not all(isinstance(x, str) for x in r):
            raise SeqVisionError(f"references for id {i!r} must be a non-empty list of caption strings, got {r!r}")
        cands.append(c)
        refs.append(list(r))
    return ids, cands, refs


def _short(ids: list[str], n: int = 10) -> str:
    more = f" ... ({len(ids) - n} more)" if len(ids) > n else ""
    return ", ".join(repr(i) for i in ids[:n]) + more


def caption_scores(
    references: Mapping[str, list[str]],
    candidates: Mapping[str, str],
    *,
    use_java: bool | None = None,
    meteor: bool = True,
    java_timeout: float | None = None,
) -> dict[str, float]:
    """Corpus-level caption metrics as reported in papers (pycocoevalcap's scorers).

    Args:
        references: ``{id: [reference caption, ...]}`` (raw text; tokenised here).
        candidates: ``{id: generated caption}``; the ids must match ``references``.
        use_java: ``None``: use Java if it works, else Python tokenisation and no METEOR (one warning).
            ``True``: require Java (error if missing). ``False``: never start Java.
        meteor: compute METEOR (Java only; loading its paraphrase table takes a few seconds).
        java_timeout: seconds allowed for each Java step (default 120 s + 10 ms per caption); on failure or
            timeout the tokenizer falls back to Python and METEOR is left out, each with a warning.

    Returns:
        ``{"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR" (with Java), "ROUGE-L", "CIDEr"}``; 0-1 scale except
        CIDEr-D (0-10). CIDEr's IDF comes from the references, so it needs a corpus: it is 0 for a single clip.

    Example:
        >>> caption_scores({"v1": ["a man is playing a guitar"]}, {"v1": "a man plays guitar"}, use_java=False)
    """
    ids, cands, refs = _check_inputs(references, candidates)
    if use_java is None:
        use_java = java_available()
        if not use_java:
            _note_once("nojava", "Java not found: METEOR is skipped and captions are tokenised in Python "
                                 "(same tokens as coco-caption's PTBTokenizer on plain English captions)")
    elif use_java and not java_available():
        raise SeqVisionError("use_java=True but no working 'java' on PATH; install a JRE or pass use_java=None")

    flat = [one_line(c) for c in cands] + [one_line(r) for rs in refs for r in rs]
    if java_timeout is None:
        java_timeout = 120.0 + 0.01 * len(flat)
    toks = tokenize_captions(flat, use_java=use_java, timeout=java_timeout)
    res = {i: [toks[k]] for k, i in enumerate(ids)}
    gts, pos = {}, len(ids)
    for i, rs in zip(ids, refs):
        gts[i] = toks[pos : pos + len(rs)]
        pos += len(rs)

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
    if use_java and meteor:
        try:
            out["METEOR"] = _meteor(gts, res, java_timeout)
        except (SeqVisionError, OSError) as e:
            warnings.warn(f"METEOR skipped: {e}", RuntimeWarning, stacklevel=2)
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return out
