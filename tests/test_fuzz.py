"""Mutation fuzzing of real videos (h264 mp4/mov/mkv, MPEG-4 AVI with B-frames, VP9 WebM, MJPEG AVI, HEVC MKV)
through ``VideoReader`` (pyav and decord backends) and through ``VideoDataset`` in a 2-worker DataLoader.

Every mutated file must give valid frames of the promised shape or a ``VideoDecodeError``; never another
exception, a crash (the worker process dying) or a hang (each file is bounded in time). The larger run is
``python benchmarks/fuzz.py --count 1000 --seed 0``; mutation helpers live in ``tests/fuzzing.py``.
"""

from __future__ import annotations

import hashlib
import re
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

import fuzzing
from seqvision.data import ErrorReport, VideoDataset, VideoRecord, collate, worker_context

COUNT = 55  # mutated files in the normal suite (5 per mutation kind)
SEED = 0
PER_FILE_TIMEOUT = 60.0  # seconds before a file counts as a hang; a healthy check of these tiny files takes
# < 0.1 s, so a loaded machine never reaches it (speed is measured in benchmarks/, never asserted here)
NUM_FRAMES = 8
SIZE = 32

# The reason VideoDataset writes for an exception that is not a SeqVisionError ends with "(at func, file.py:N)".
UNEXPECTED_REASON = re.compile(r"\(at [^,]+, [^:]+:\d+\)$")


@pytest.fixture(scope="module")
def mutants(tmp_path_factory) -> list[fuzzing.Mutant]:
    root = tmp_path_factory.mktemp("fuzz")
    seeds = fuzzing.make_seed_files(root / "seeds")
    assert {"h264_faststart", "mpeg4_bframes", "vp9", "mjpeg"} <= set(seeds)  # the codecs the issue names
    return fuzzing.make_mutants(seeds, root / "mutants", COUNT, seed=SEED)


def test_mutants_are_seeded_and_cover_every_kind(mutants, tmp_path):
    assert {m.mutation for m in mutants} == set(fuzzing.MUTATIONS)
    # the same seed files and seed give the same mutants (the encoders need not be bit-reproducible run to run)
    seeds = fuzzing.make_seed_files(tmp_path / "seeds")
    once = fuzzing.make_mutants(seeds, tmp_path / "once", 22, seed=SEED)
    again = fuzzing.make_mutants(seeds, tmp_path / "again", 22, seed=SEED)
    for a, b in zip(once, again):
        assert (a.mutation, a.seed_name, a.detail, a.path.suffix) == (b.mutation, b.seed_name, b.detail, b.path.suffix)
        assert a.path.read_bytes() == b.path.read_bytes()
    for a, b in zip(mutants[:22], once):
        assert (a.mutation, a.seed_name, a.path.suffix) == (b.mutation, b.seed_name, b.path.suffix)
    by_kind = {m.mutation: m for m in mutants}
    assert by_kind["empty"].path.stat().st_size == 0
    swapped = by_kind["swap_ext"]
    seed_suffix = next(p.suffix for n, p in seeds.items() if n == swapped.seed_name)
    assert swapped.path.suffix != seed_suffix


def test_reader_fuzz_valid_frames_or_decode_error(mutants):
    results = fuzzing.run_checks(mutants, backends=fuzzing.BACKENDS, workers=2, timeout=PER_FILE_TIMEOUT,
                                 num_frames=NUM_FRAMES)
    assert len(results) == len(mutants) * len(fuzzing.BACKENDS)
    bad = [r.describe() for r in results if r.outcome not in fuzzing.GOOD_OUTCOMES]
    assert not bad, "decoder contract broken:\n" + "\n".join(bad) + "\n" + fuzzing.format_table(results)
    # the checker itself: unmutated seeds decode with both backends, 0-byte files never do
    for r in results:
        if r.mutation == "control":
            assert r.outcome == "valid", r.describe()
            assert r.frames == 24 and r.shape[0] == NUM_FRAMES and r.shape[1] == 3, r.describe()
        if r.mutation == "empty":
            assert r.outcome == "decode_error" and "empty" in r.detail, r.describe()
        if r.outcome == "valid":
            assert r.shape is not None and r.shape[0] == NUM_FRAMES
    outcomes = {r.outcome for r in results if r.mutation not in ("control", "empty", "non_video")}
    assert outcomes == {"valid", "decode_error"}  # the mutations really damage files, and not all fatally


@pytest.mark.parametrize("backend", fuzzing.BACKENDS)
def test_dataset_fuzz_two_workers(mutants, backend):
    """Every mutated file through VideoDataset + DataLoader(num_workers=2): each file comes back exactly once,
    as a clip of the promised shape or as an error whose reason came from a VideoDecodeError; the outcome and
    the decoded bytes agree with VideoReader's own (checked in an isolated process)."""
    reference = {r.path: r for r in fuzzing.run_checks(mutants, backends=(backend,), workers=2,
                                                        timeout=PER_FILE_TIMEOUT, size=SIZE,
                                                        num_frames=NUM_FRAMES, last_frame=False)}
    assert all(r.outcome in fuzzing.GOOD_OUTCOMES for r in reference.values()), \
        [r.describe() for r in reference.values() if r.outcome not in fuzzing.GOOD_OUTCOMES]

    records = [VideoRecord(id=m.path.stem, path=str(m.path), label=i % 3) for i, m in enumerate(mutants)]
    ds = VideoDataset(records, num_frames=NUM_FRAMES, size=SIZE, backend=backend, on_error="skip", seed=None)
    # decord is not fork-safe: once this process has used it (test_conformance does, earlier in the suite), a
    # forked worker can die with SIGSEGV; worker_context() spawns them then, as the product's loaders do
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate, timeout=120,
                        multiprocessing_context=worker_context(ds, 2))
    report = ErrorReport()
    seen: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in loader:
            report.add(batch)
            for path, reason in batch["errors"]:
                assert not UNEXPECTED_REASON.search(reason), f"{path}: not a VideoDecodeError: {reason}"
                seen[path] = "decode_error"
            if batch["empty"]:
                assert batch["video"].shape == (0, 0, 0, 0, 0)
                continue
            video = batch["video"]
            assert video.dtype == torch.uint8 and video.shape[1:] == (NUM_FRAMES, 3, SIZE, SIZE)
            for i, path in enumerate(batch["path"]):
                assert path not in seen
                seen[path] = "valid"
                ref = reference[path]
                assert ref.outcome == "valid", f"dataset decoded {path}, the reader said {ref.describe()}"
                # same frames as the reader's uniform sample (repeat padding included), where the reader's own
                # two decodes agree (fuzzing.check_reader: damaged MJPEG frames keep stale buffer rows)
                if ref.sha1 is not None:
                    assert hashlib.sha1(video[i].numpy().tobytes()).hexdigest() == ref.sha1, path
    assert set(seen) == {str(m.path) for m in mutants}
    assert {p: o for p, o in seen.items()} == {p: r.outcome for p, r in reference.items()}
    assert sorted(p for p, _ in report.items) == sorted(p for p, o in seen.items() if o == "decode_error")
