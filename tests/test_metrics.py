"""Tests for seqvision.metrics: hand-computed cases and agreement with pycocoevalcap called directly."""

from __future__ import annotations

import json
import os
import stat
import warnings

import numpy as np
import pytest
import torch

from seqvision.errors import SeqVisionError
from seqvision.metrics import (
    caption_scores,
    classification_metrics,
    confusion_matrix,
    edit_score,
    frame_metrics,
    java_available,
    segments,
    tokenize_captions,
)
from seqvision.metrics import _captions
from seqvision.metrics._tokenize import java_ptb_tokenize, python_ptb_tokenize

HAS_JAVA = java_available()
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="java is not installed")

# ---------------------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------------------


def test_classification_hand_computed():
    scores = torch.tensor(
        [
            [0.9, 0.05, 0.03, 0.02],  # true 0, pred 0
            [0.1, 0.6, 0.2, 0.1],  # true 1, pred 1
            [0.5, 0.3, 0.15, 0.05],  # true 1, pred 0 (rank 2)
            [0.1, 0.2, 0.3, 0.4],  # true 2, pred 3 (rank 2)
            [0.4, 0.3, 0.2, 0.1],  # true 3, pred 0 (rank 4)
        ]
    )
    labels = torch.tensor([0, 1, 1, 2, 3])
    m = classification_metrics(scores, labels, label_names=["a", "b", "c", "d"], topk=(1, 2, 5))
    assert m["top1"] == pytest.approx(2 / 5)
    assert m["top2"] == pytest.approx(4 / 5)
    assert m["top5"] == 1.0  # k clipped to K=4
    # recall per class: a 1, b 1/2, c 0, d 0
    assert m["mean_class_accuracy"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert m["confusion_matrix"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]
    a = m["per_class"]["a"]  # predicted 3 times, 1 right; support 1
    assert a["precision"] == pytest.approx(1 / 3) and a["recall"] == 1.0 and a["support"] == 1
    assert a["f1"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    json.dumps(m)  # JSON-safe
    # numpy input gives the same
    assert classification_metrics(scores.numpy(), labels.numpy(), topk=(1, 2, 5))["top2"] == m["top2"]


def test_classification_errors():
    with pytest.raises(SeqVisionError, match="label_names has 2 names"):
        classification_metrics(np.zeros((3, 4)), [0, 1, 2], label_names=["x", "y"])
    with pytest.raises(SeqVisionError, match=r"outside the allowed range \[0, 4\)"):
        classification_metrics(np.zeros((2, 4)), [0, 7])
    with pytest.raises(SeqVisionError, match=r"labels must have shape \(2,\)"):
        classification_metrics(np.zeros((2, 4)), [0, 1, 2])


def test_confusion_matrix():
    cm = confusion_matrix(torch.tensor([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(SeqVisionError, match="preds holds class id 3"):
        confusion_matrix([3], [0], 3)


# ---------------------------------------------------------------------------------------------------------------
# frame labelling
# ---------------------------------------------------------------------------------------------------------------


def test_segments_and_edit():
    assert segments([0, 0, 1, 1, 1, 0]) == [(0, 0, 2), (1, 2, 5), (0, 5, 6)]
    assert segments([0, 0, 1, 0], ignore=[0]) == [(1, 2, 3)]
    # P = [0 1 2 0 2], Y = [0 1 2]: two insertions -> 1 - 2/5
    target = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    pred = [0, 0, 1, 1, 1, 1, 2, 2, 0, 2]
    assert edit_score(pred, target) == pytest.approx(0.6)
    m = frame_metrics(torch.tensor([pred]), torch.tensor([target]))
    assert m["frame_accuracy"] == pytest.approx(8 / 10)
    assert m["edit"] == pytest.approx(0.6)
    # TP: (0,0,2) IoU 2/3, (1,2,6) 3/4, (2,6,8) 1/2; FP: (0,8,9) IoU 0, (2,9,10) true segment already hit
    for k in ("F1@10", "F1@25", "F1@50"):
        assert m[k] == pytest.approx(2 * 0.6 * 1.0 / 1.6)


def test_frame_metrics_thresholds_padding_and_logits():
    target = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, -100, -100], [2, 2, 2, -100, -100, -100, -100, -100, -100, -100]])
    pred = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 2, 2], [2, 2, 2, 0, 0, 0, 0, 0, 0, 0]])
    m = frame_metrics(pred, target)
    # clip 0: (0,0,1) IoU 1/4 (TP at 10/25, FP at 50), (1,1,8) IoU 4/7; clip 1: exact
    assert m["frame_accuracy"] == pytest.approx((5 + 3) / 11)
    assert m["edit"] == pytest.approx(1.0)
    assert m["F1@25"] == pytest.approx(1.0)
    assert m["F1@50"] == pytest.approx(2 / 3)  # TP 2, FP 1, FN 1
    assert m["num_frames"] == 11 and m["num_clips"] == 2
    # lengths do the same as -100; (N, T, K) scores are arg-maxed
    t2 = target.clone()
    t2[t2 == -100] = 0
    logits = torch.nn.functional.one_hot(pred, 3).float()
    assert frame_metrics(logits, t2, lengths=torch.tensor([8, 3])) == m
    with pytest.raises(SeqVisionError, match="no valid frames"):
        frame_metrics(pred, torch.full_like(target, -100))
    with pytest.raises(SeqVisionError, match="pred and target must both be"):
        frame_metrics(pred[:, :4], target)


# ---------------------------------------------------------------------------------------------------------------
# captioning
# ---------------------------------------------------------------------------------------------------------------

REFS = {
    "v1": ["A man is playing a guitar.", "A guy plays the guitar on stage!", "Someone's strumming an acoustic guitar"],
    "v2": ["A dog runs in the park.", "the dog is running (fast) across the grass",
           "A brown dog chases a ball, then stops."],
    "v3": ["Two women are talking about a movie.", "women talk", "Two ladies discuss a film they've seen"],
    "v4": ["A chef slices tomatoes & onions in a kitchen.", "a cook is cutting vegetables",
           "Someone is slicing 1,000 onions very fast"],
    "v5": ["A cartoon character -- SpongeBob -- dances.", "an animated sponge is dancing",
           "It's a cartoon; a sponge dances."],
    "v6": ["A car drives at 100mph on the highway", "a red car is racing down a road", "The car isn't slowing down"],
}
CANDS = {
    "v1": "A man plays a guitar.",
    "v2": "a cat runs in a park",
    "v3": "Two women are talking.",
    "v4": "a man is cutting onions in the kitchen",
    "v5": "a cartoon sponge is dancing",
    "v6": "a car is driving on the road",
}
# pycocoevalcap 1.2 run directly on REFS/CANDS (PTBTokenizer, then Meteor().compute_score). Recorded because
# every METEOR run loads a 60 MB paraphrase table (10-30 s); the other metrics are compared live below.
REFERENCE_METEOR = 0.30873768467683177

# Plain English captions in the style of MSR-VTT / MSVD / ActivityNet, with the punctuation, clitics, numbers and
# brackets that the tokenizers must agree on.
VARIED_CAPTIONS = [
    "A man is playing a guitar.", "Two dogs don't like the cat's toy!", "A woman (in red) walks down the street...",
    '"Hello," she said; then she left: quickly.', "The kids aren't playing; they're sleeping and I'm here.",
    "We'll go, you'd see, I've done it.", "A black-and-white photo of a 3.5 inch disk costing $5.99, 50% off.",
    "The man cannot do it and/or won't -- he is gonna wanna.", "Mr. Smith went to Washington D.C. in the U.S.",
    "A person's hand holds a cup of coffee at 10:30 a.m.", "It's a dog's life? Yes! 'Quoted' words here.",
    "a cat on a [mat] with {braces} & ampersand", "Someone is slicing 1,000 onions very very fast",
    "Players' jerseys are blue; the boys' team wins.", "The dog is running -- fast - and jumping over the log",
    "Can't stop, shouldn't go, wouldn't do, couldn't be, isn't it, wasn't he", "A MAN IS RIDING A HORSE",
    "there are 2 men, 3 women and 10 children on the e-mail list.", "It's 5 o'clock somewhere...",
    "a man in his 20s and 30's", "It is -5 degrees and a 1.5-liter bottle", "the score is 3-2!",
    "an older man (maybe 60) talks", "man: hello! woman: hi!", "I think it's a cat, isn't it?",
    "a girl's hair is blue/green", "A car drives 100mph on the highway", "Someone's cooking pasta w/ sauce",
    "a person is holding a #2 pencil", "so do I.", "plan b. then", "a tv show's host interviews a guest",
    "Dr. Who and Mrs. Brown met at St. Paul's", "a chef's knife, a cook's apron; the end",
    "  leading and trailing spaces  ", "", "multi\nline caption", "café naïve résumé", "It’s a “smart” quote",
]


@needs_java
def test_python_tokenizer_matches_java_ptbtokenizer():
    java = java_ptb_tokenize(VARIED_CAPTIONS)
    python = python_ptb_tokenize(VARIED_CAPTIONS)
    mismatches = [(c, j, p) for c, j, p in zip(VARIED_CAPTIONS, java, python) if j != p]
    assert mismatches == []
    assert java[1] == "two dogs do n't like the cat 's toy"  # clitics split, "!" dropped
    assert java[2] == "a woman -lrb- in red -rrb- walks down the street"  # -lrb- survives coco's filter


def test_python_tokenizer_known_outputs():
    assert python_ptb_tokenize(["Two dogs don't like the cat's toy!", "He CANNOT (really) go, i.e. won't."]) == [
        "two dogs do n't like the cat 's toy",
        "he can not -lrb- really -rrb- go i.e. wo n't",
    ]


def _reference_scores():
    """pycocoevalcap used exactly as its COCOEvalCap does (its own PTBTokenizer), minus METEOR/SPICE."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in REFS.items()})
    res = tok.tokenize({k: [{"caption": CANDS[k]}] for k in REFS})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{i + 1}": b for i, b in enumerate(bleu)}
    out["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    return out


@needs_java
def test_caption_scores_match_pycocoevalcap_and_python_path():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the Java path must really run here: no silent fallback
        java = caption_scores(REFS, CANDS, use_java=True, meteor=False)
    ref = _reference_scores()
    assert set(java) == set(ref)
    for k, v in ref.items():
        assert java[k] == pytest.approx(v, abs=1e-6), k
        assert isinstance(java[k], float)
    # the Python tokenizer gives the same numbers on plain English captions
    assert caption_scores(REFS, CANDS, use_java=False) == pytest.approx(java, abs=1e-12)


@pytest.mark.slow  # METEOR loads a 60 MB paraphrase table: 10 s of CPU
@needs_java
def test_meteor_matches_pycocoevalcap():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = caption_scores(REFS, CANDS, use_java=True)
    assert s["METEOR"] == pytest.approx(REFERENCE_METEOR, abs=1e-6)
    assert s["CIDEr"] == pytest.approx(_reference_scores()["CIDEr"], abs=1e-6)
    assert _pids_running("meteor-1.5.jar") == []  # the JVM was shut down


def test_caption_scores_hand_computed():
    refs = {"a": ["a man is playing a guitar on a big stage"], "b": ["the cat sat on the mat"],
            "c": ["a b c d e f g h"], "d": ["a c d e f"]}
    cands = {"a": "A man is playing a guitar on a big stage.", "b": "the cat the cat on mat",
             "c": "a b c d", "d": "a b c d"}
    one = lambda k: caption_scores({k: refs[k]}, {k: cands[k]}, use_java=False)  # noqa: E731
    perfect = one("a")
    for n in range(1, 5):
        assert perfect[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["ROUGE-L"] == pytest.approx(1.0)
    assert perfect["CIDEr"] == 0.0  # a one-clip corpus: every n-gram has IDF log(1/1) = 0
    # clipped unigram precision: the x2 (ref has 2), cat x2 (ref has 1), on, mat -> 5/6, same length so BP = 1
    assert one("b")["BLEU-1"] == pytest.approx(5 / 6, abs=1e-6)
    # all 4 unigrams match but the candidate is half as long: BP = exp(1 - 8/4)
    assert one("c")["BLEU-1"] == pytest.approx(np.exp(-1.0), abs=1e-6)
    # LCS("a b c d", "a c d e f") = 3: P = 3/4, R = 3/5, beta = 1.2
    p, r, b2 = 0.75, 0.6, 1.44
    assert one("d")["ROUGE-L"] == pytest.approx((1 + b2) * p * r / (r + b2 * p))


def test_caption_scores_input_errors():
    with pytest.raises(SeqVisionError, match=r"no candidate: 'v2'.*no references: 'zz'"):
        caption_scores({"v1": ["a"], "v2": ["b"]}, {"v1": "a", "zz": "c"}, use_java=False)
    with pytest.raises(SeqVisionError, match="non-empty list"):
        caption_scores({"v1": []}, {"v1": "a"}, use_java=False)
    with pytest.raises(SeqVisionError, match="one caption string"):
        caption_scores({"v1": ["a"]}, {"v1": ["a"]}, use_java=False)


def test_without_java_skips_meteor_with_one_note(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    monkeypatch.setattr(_captions, "_noted", set())
    with pytest.warns(RuntimeWarning, match="Java not found: METEOR is skipped"):
        s = caption_scores(REFS, CANDS)
    assert "METEOR" not in s and s["BLEU-4"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caption_scores(REFS, CANDS)  # the note is given once
    with pytest.raises(SeqVisionError, match="use_java=True but no working 'java'"):
        caption_scores(REFS, CANDS, use_java=True)


def _pids_running(marker: str) -> list[int]:
    """Our own child processes whose command line contains ``marker`` (other users' Java is none of our business)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if marker.encode() in cmd and ppid == os.getpid():
                pids.append(int(d))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to look for leftover processes")
def test_hanging_java_is_bounded_and_cleaned_up(monkeypatch, tmp_path):
    # A stand-in `java` that answers -version but then hangs, as a wedged JVM would.
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\nif [ "$1" = "-version" ]; then exit 0; fi\nexec sleep 31.4159\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    with pytest.warns(RuntimeWarning) as rec:
        s = caption_scores(REFS, CANDS, use_java=True, java_timeout=1.0)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "timed out" in msgs and "tokenising in Python instead" in msgs
    assert "METEOR skipped" in msgs and "METEOR" not in s
    assert s == caption_scores(REFS, CANDS, use_java=False)
    assert _pids_running("31.4159") == []


def test_tokenize_captions_python():
    assert tokenize_captions(["A dog's ball."], use_java=False) == ["a dog 's ball"]
