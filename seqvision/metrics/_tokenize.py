"""Caption tokenisation as coco-caption does it: Stanford PTBTokenizer, lower-cased, punctuation dropped.

Two paths give the same tokens on plain English captions:

- ``java_ptb_tokenize``: runs the Stanford CoreNLP 3.4.1 jar that ships inside ``pycocoevalcap`` with the exact
  flags its ``PTBTokenizer`` wrapper uses (``-preserveLines -lowerCase``), but with a timeout, a private temp
  folder (the wrapper writes into site-packages) and UTF-8 set explicitly.
- ``python_ptb_tokenize``: a regex re-implementation of the PTB rules that matter for captions (clitics such as
  ``n't``/``'s``, ``cannot`` -> ``can not``, punctuation split off, brackets -> ``-lrb-`` ...). It was checked
  token-for-token against the jar; exotic input (emoji, ``AT&T``-style capitals, ``rock'n'roll``) may differ.

Both then drop the tokens in coco-caption's ``PUNCTUATIONS`` list. Note that ``-lowerCase`` also lower-cases
``-LRB-``, so coco-caption keeps ``-lrb-``/``-rrb-`` tokens (its list only has the upper-case forms); so do we.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from pycocoevalcap.tokenizer import ptbtokenizer as _coco_ptb

from ..errors import SeqVisionError

PUNCTUATIONS: frozenset[str] = frozenset(_coco_ptb.PUNCTUATIONS)
CORENLP_JAR = Path(_coco_ptb.__file__).resolve().parent / _coco_ptb.STANFORD_CORENLP_3_4_1_JAR

# Every character Python's str.splitlines() (and so a line-based Java reader) would treat as a line break.
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """Put a caption on one line (PTBTokenizer runs with ``-preserveLines``: one caption per line)."""
    return _LINE_BREAKS.sub(" ", text)


# ----------------------------------------------------------------------------------------------------------------
# Python re-implementation
# ----------------------------------------------------------------------------------------------------------------
_AL = r"[^\W_]"  # a letter or digit (unicode-aware), not underscore
_LETTER = r"[^\W\d_]"
_TITLES = (
    "mr|mrs|ms|dr|prof|st|jr|sr|vs|etc|gen|sen|rep|gov|mt|ft|capt|col|lt|sgt|rev|"
    "inc|co|corp|ltd|jan|feb|aug|sept|oct|nov|dec"
)
# A word character that does not start a final "n't" (don't -> do n't, can't -> ca n't).
_WCH = rf"(?:(?!n't(?!{_LETTER})){_AL})"
_TOKEN = re.compile(
    "|".join(
        [
            r"(?P<url>(?:https?|ftp)://\S+)",
            r"(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
            r"(?P<handle>@\w+)",
            rf"(?P<abbrev>(?:{_LETTER}{{1,2}}\.){{2,}}(?!{_AL})|{_LETTER}\.(?!{_AL}))",  # u.s. e.g. ph.d. b.
            rf"(?P<title>(?:{_TITLES})\.(?!{_AL})|no\.(?=\s*\d))",  # mr. etc. no. 5
            # 3.5 1,000 10:30 1/2 .5 -2.5 -5 1.5-liter
            rf"(?P<number>-?(?:\d+(?:[.,:/]\d+)+|\.\d+)(?:-{_AL}+)*|-\d+(?:-{_AL}+)*(?!{_AL}))",
            # words the PTB lexer keeps whole despite an apostrophe: o'clock, o'neill, ma'am, ol', 'tis -> 't is
            rf"(?P<apoword>(?:[a-hj-xz]'{_LETTER}{{2,}}|{_LETTER}+[aeiouy]'[aeiou]{_LETTER}*)(?!{_AL})"
            rf"|ol'(?!{_AL})|'t(?=is|was)|y'(?={_LETTER})|'n'|'(?:em|cause|til)(?!{_AL})|'\d0s)",
            rf"(?P<clitic>(?:'(?:s|re|ve|m|ll|d)|n't)(?!{_LETTER}))",
            rf"(?P<word>{_WCH}+(?:[-./_]{_WCH}+)*(?:\.(?=[,;:]))?)",  # "word.," keeps its period
            r"(?P<dashes>-{2,})",
            r"(?P<dots>\.+)",
            r"(?P<marks>[?!]+)",
            r"(?P<quote>``|''|[\"'`])",
            r"(?P<unders>_+)",
            r"(?P<bracket>[()\[\]{}])",
            r"(?P<other>\S)",
        ]
    )
)
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_SPLIT_WORDS = {
    "cannot": ["can", "not"],
    "gonna": ["gon", "na"],
    "gotta": ["got", "ta"],
    "wanna": ["wan", "na"],
    "gimme": ["gim", "me"],
    "lemme": ["lem", "me"],
}
_UNICODE_PUNCT = str.maketrans(
    {
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'",
        "\u2013": " -- ", "\u2014": " -- ", "\u2026": "...", "\u00a0": " ",
    }
)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # emoji etc.: the 3.4.1 lexer drops them


def ptb_tokens(text: str) -> list[str]:
    """PTB tokens of one caption, lower-cased, *before* coco-caption drops punctuation."""
    text = _ASTRAL.sub("", one_line(text).translate(_UNICODE_PUNCT)).lower()
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        kind, tok = m.lastgroup, m.group()
        if kind == "word":
            out.extend(_SPLIT_WORDS.get(tok, (tok,)))
        elif kind == "dashes":
            out.append("--")
        elif kind == "dots":
            out.append("..." if len(tok) >= 3 else ".")
        elif kind == "bracket":
            out.append(_BRACKETS[tok])
        elif kind == "quote":
            out.append("''" if tok in ('"', "''") else "`" if tok == "`" else tok)
        else:
            out.append(tok)
    return out


def python_ptb_tokenize(captions: list[str]) -> list[str]:
    """Tokenise captions like coco-caption's PTBTokenizer, in pure Python; returns space-joined token strings."""
    return [" ".join(t for t in ptb_tokens(c) if t not in PUNCTUATIONS) for c in captions]


# ----------------------------------------------------------------------------------------------------------------
# The real (Java) PTBTokenizer
# ----------------------------------------------------------------------------------------------------------------
def java_ptb_tokenize(captions: list[str], *, java: str = "java", timeout: float = 60.0) -> list[str]:
    """Tokenise captions with the Stanford PTBTokenizer jar shipped in pycocoevalcap.

    Raises:
        SeqVisionError: Java failed, timed out, or returned a different number of lines.
    """
    if not captions:
        return []
    if not CORENLP_JAR.is_file():
        raise SeqVisionError(f"PTBTokenizer jar not found at {CORENLP_JAR}; reinstall pycocoevalcap")
    with tempfile.TemporaryDirectory(prefix="seqvision-ptb-") as tmp:
        src = os.path.join(tmp, "captions.txt")
        with open(src, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(one_line(c) for c in captions))
        cmd = [java, "-Dfile.encoding=UTF-8", "-cp", str(CORENLP_JAR), "edu.stanford.nlp.process.PTBTokenizer",
               "-encoding", "utf-8", "-preserveLines", "-lowerCase", src]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:  # subprocess.run kills the child before raising
            raise SeqVisionError(f"Java PTBTokenizer timed out after {timeout:g} s") from e
        except OSError as e:
            raise SeqVisionError(f"could not start Java PTBTokenizer ({java}): {e}") from e
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise SeqVisionError(f"Java PTBTokenizer exited with status {proc.returncode}: {err}")
    lines = proc.stdout.decode("utf-8").split("\n")
    if lines and lines[-1] == "" and len(lines) == len(captions) + 1:
        lines = lines[:-1]
    if len(lines) != len(captions):
        raise SeqVisionError(
            f"Java PTBTokenizer returned {len(lines)} lines for {len(captions)} captions; cannot align them"
        )
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in lines]
