"""Tiny fake datasets written in the real on-disk layouts, with real small videos.

Each ``write_*`` function writes one dataset under ``root`` and returns a :class:`Layout`: the folder, the
``--set`` overrides that point a shipped config at it, the class names the reader must report (in the order the
annotation files give), and the file names the annotations list but the disk lacks (``missing``).

The videos are real (``assets.make_color_video``: a moving square on a gradient, 32x32, 10 frames, a few KB):
MPEG-4 part 2 in ``.avi`` (as UCF101 / HMDB51 / MSVD ship), H.264 in ``.mp4``. Pass ``video=placeholder`` to
write 16-byte stand-ins instead (enough for the readers, which only list files).

- :func:`write_ucf101`: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` + ``ucfTrainTestlist/{classInd,trainlist0N,
  testlist0N}.txt`` (CRLF; classInd order is not sorted; one class spelt in another case in the lists, as
  ``HandStandPushups`` is in the real ones; one listed training file missing).
- :func:`write_hmdb51`: ``<class>/<video>.avi`` + ``testTrainMulti_7030_splits/<class>_test_split{1,2}.txt``
  (lines ``<video>.avi <0|1|2> `` with the real files' trailing space, CRLF; one listed file missing).
- :func:`write_kinetics`: ``annotations/{train,validate}.csv`` (``label,youtube_id,time_start,time_end,split,
  is_cc``) + ``<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (one clip at the root as ``.mkv``; one
  row's clip never downloaded).
- :func:`write_msvd`: ``YouTubeClips/<VideoID>_<Start>_<End>.avi`` + ``video_corpus.csv`` (a German row, a quoted
  description with a comma, one clip not downloaded) + ``youtube_mapping.txt`` (``<clip> vidN``).
- :func:`write_msrvtt`: ``TrainValVideo/videoN.mp4``, ``TestVideo/videoN.mp4`` + ``train_val_videodatainfo.json``
  / ``test_videodatainfo.json`` (one listed video missing).
- :func:`write_folder`: ``<class>/<video>.mp4|.AVI`` (folder per class), optionally under ``train/ val/ test/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from assets import make_color_video

__all__ = ["Layout", "real_video", "placeholder", "crlf", "write_ucf101", "write_hmdb51", "write_kinetics",
           "write_msvd", "write_msrvtt", "write_folder", "UCF_CLASSES"]

VideoWriter = Callable[[Path, int], Path]


@dataclass
class Layout:
    root: Path
    overrides: list[str]  # --set strings pointing a config at this dataset (data.root, data.annotations)
    label_names: list[str] = field(default_factory=list)  # what the reader must report, in order
    missing: list[str] = field(default_factory=list)  # file names listed by the annotations but not on disk
    counts: dict[str, int] = field(default_factory=dict)  # videos on disk per split (where the files say)


def real_video(path: Path, seed: int = 0) -> Path:
    """A real 32x32, 10-frame video: MPEG-4 part 2 for .avi, H.264 otherwise (mkv/mp4/...)."""
    codec = "mpeg4" if path.suffix.lower() == ".avi" else "h264"
    return make_color_video(path, num_frames=10, size=(32, 32), codec=codec, fps=25, gop=5, bframes=0,
                            seed=seed)


def placeholder(path: Path, seed: int = 0) -> Path:
    """A 16-byte stand-in (the readers only list files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" * 16)
    return path


def crlf(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` with Windows line ends (as the UCF101 / HMDB51 / Kinetics files have)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


# ------------------------------------------------------------------------------------------------------ UCF101

# classInd order (not sorted). HandstandPushups is spelt HandStandPushups in the split lists, as in UCF101.
UCF_CLASSES = ["YoYo", "ApplyEyeMakeup", "HandstandPushups"]
_UCF_LISTED = {"HandstandPushups": "HandStandPushups"}


def write_ucf101(root, *, train_groups=(8,), test_groups=(1,), video: VideoWriter = real_video) -> Layout:
    """UCF101 with the classes :data:`UCF_CLASSES`; clip ``c01`` of each group in ``train_groups`` (fold 1
    train list, with class numbers) and ``test_groups`` (fold 1 test list, paths only).

    The first YoYo training file is listed but not on disk. Fold 2 swaps two files: train ``v_YoYo_g01_c01``,
    test ``v_ApplyEyeMakeup_g08_c01`` (the defaults; other groups leave fold 2 as that).
    """
    root = Path(root)
    vids = root / "UCF-101"
    seed = 0
    train_lines, test_lines, missing = [], [], []
    counts = {"train": 0, "test": 0}
    for number, cls in enumerate(UCF_CLASSES, start=1):
        listed = _UCF_LISTED.get(cls, cls)
        for split, groups in (("train", train_groups), ("test", test_groups)):
            for k, g in enumerate(groups):
                disk = f"v_{cls}_g{g:02d}_c01.avi"
                rel = f"{cls}/v_{listed}_g{g:02d}_c01.avi"
                if split == "train":
                    train_lines.append(f"{rel} {number}")
                else:
                    test_lines.append(rel)
                if cls == "YoYo" and split == "train" and k == 0:
                    missing.append(disk)
                    continue
                seed += 1
                video(vids / cls / disk, seed)
                counts[split] += 1
    ann = root / "ucfTrainTestlist"
    crlf(ann / "classInd.txt", [f"{i} {c}" for i, c in enumerate(UCF_CLASSES, start=1)])
    crlf(ann / "trainlist01.txt", train_lines)
    crlf(ann / "testlist01.txt", test_lines)
    crlf(ann / "trainlist02.txt", ["YoYo/v_YoYo_g01_c01.avi 1"])
    crlf(ann / "testlist02.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"])
    return Layout(root, [f"data.root={root}"], list(UCF_CLASSES), missing, counts)


# ------------------------------------------------------------------------------------------------------ HMDB51

# class -> [(video stem, {fold: tag})]; tag 1 = train, 2 = test, 0 = unused. "e" is listed but not on disk.
HMDB_SMALL = {
    "brush_hair": [("a", {1: 1, 2: 2}), ("b", {1: 2}), ("c", {1: 0})],
    "cartwheel": [("d", {1: 2, 2: 1}), ("e", {1: 1})],
}
HMDB_SMALL_MISSING = ("e",)


def hmdb51_spec(classes=("brush_hair", "cartwheel", "pullup"), *, train=3, test=2, unused=1):
    """A spec for :func:`write_hmdb51` with real-looking names, e.g. ``April_09_brush_hair_u_nm_np1_ba_goo_0``."""
    spec = {}
    for cls in classes:
        rows = []
        for i in range(train + test + unused):
            tag = 1 if i < train else 2 if i < train + test else 0
            rows.append((f"Clip{i}_{cls}_f_nm_np1_fr_med_{i}", {1: tag, 2: (1 if tag == 2 else 2 if tag == 1 else 0)}))
        spec[cls] = rows
    return spec


def write_hmdb51(root, *, spec=None, missing=None, video: VideoWriter = real_video) -> Layout:
    """HMDB51: ``<root>/<class>/<stem>.avi`` and ``<root>/testTrainMulti_7030_splits/<class>_test_split{N}.txt``
    (the folder the reader and configs/hmdb51_lrcn.yaml default to). ``spec`` defaults to :data:`HMDB_SMALL`;
    stems in ``missing`` are listed but not written (default: ``HMDB_SMALL_MISSING``, or the first training
    clip of the last class for a custom spec)."""
    root = Path(root)
    if spec is None:
        spec, missing = HMDB_SMALL, HMDB_SMALL_MISSING if missing is None else missing
    elif missing is None:
        last = list(spec)[-1]
        missing = [next(stem for stem, tags in spec[last] if tags.get(1) == 1)]
    splits = root / "testTrainMulti_7030_splits"
    counts = {"train": 0, "test": 0}
    seed = 0
    for cls, rows in spec.items():
        folds = sorted({f for _, tags in rows for f in tags})
        for fold in folds:
            crlf(splits / f"{cls}_test_split{fold}.txt",
                 [f"{stem}.avi {tags[fold]} " for stem, tags in rows if fold in tags])
        for stem, tags in rows:
            if stem in missing:
                continue
            seed += 1
            video(root / cls / f"{stem}.avi", seed)
            if tags.get(1) in (1, 2):
                counts["train" if tags[1] == 1 else "test"] += 1
    return Layout(root, [f"data.root={root}"], sorted(spec), [f"{m}.avi" for m in missing], counts)


# ------------------------------------------------------------------------------------------------------ Kinetics

# (label, youtube_id, start, end, split, where): where "" = <root>, "split" = <root>/<split>/<label>/, None = not
# downloaded.
KINETICS_SMALL = [
    ("abseiling", "aaa", 10, 20, "train", "split"),
    ("air drumming", "ccc", 5, 15, "train", "root-mkv"),
    ("abseiling", "zzz", 0, 10, "train", None),
    ("air drumming", "bbb", 0, 10, "validate", "split"),
]


def kinetics_rows(labels=("abseiling", "air drumming", "zumba"), *, train=3, val=2):
    """Rows for :func:`write_kinetics`: ``train`` + ``val`` clips per label, the first training clip of the
    first label at the root as .mkv, and one extra training row whose clip was never downloaded."""
    rows = []
    for li, label in enumerate(labels):
        for i in range(train + val):
            split = "train" if i < train else "validate"
            where = "root-mkv" if (li, i) == (0, 0) else "split"
            rows.append((label, f"yt{li}x{i}-_Ab", 10 * i, 10 * i + 10, split, where))
    rows.append((labels[0], "neverDL0000", 30, 40, "train", None))
    return rows


def write_kinetics(root, *, rows=None, video: VideoWriter = real_video) -> Layout:
    """Kinetics: ``<root>/annotations/<split>.csv`` and clips ``<youtube_id>_<start:06d>_<end:06d>.mp4``."""
    root = Path(root)
    rows = KINETICS_SMALL if rows is None else rows
    header = "label,youtube_id,time_start,time_end,split,is_cc"
    by_file: dict[str, list[str]] = {}
    missing, counts = [], {}
    for k, (label, yid, start, end, split, where) in enumerate(rows):
        shown = f'"{label}"' if " " in label and split == "validate" else label  # the real CSVs quote some
        by_file.setdefault(split, [header]).append(f"{shown},{yid},{start},{end},{split},0")
        stem = f"{yid}_{start:06d}_{end:06d}"
        if where is None:
            missing.append(f"{stem}.mp4")
            continue
        path = root / f"{stem}.mkv" if where == "root-mkv" else root / split / label / f"{stem}.mp4"
        video(path, k + 1)
        name = {"validate": "val"}.get(split, split)
        counts[name] = counts.get(name, 0) + 1
    for split, lines in by_file.items():
        crlf(root / "annotations" / f"{split}.csv", lines)
    names = sorted({r[0] for r in rows})
    return Layout(root, [f"data.root={root}"], names, missing, counts)


# ------------------------------------------------------------------------------------------------------ MSVD

MSVD_HEADER = "VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description"


def write_msvd(root, *, clips=None, video: VideoWriter = real_video) -> Layout:
    """MSVD. ``clips``: ``[(VideoID, Start, End, vidN, [English captions], on_disk)]``; vid1-1200 are train,
    1201-1300 val, 1301-1970 test. The default is three clips (one per split) and one not downloaded. The
    first clip gets an extra German row (left out) and its second caption is quoted with a comma inside."""
    root = Path(root)
    if clips is None:
        clips = [("mv89psg6zh4", 33, 46, 1, ["A bird is bathing in a sink.",
                                            "A bird splashes around, under a faucet."], True),
                 ("-4wsuPCjDBc", 5, 15, 1250, ["A woman slices a tomato."], True),
                 ("zv2RIbUsnSw", 159, 165, 1500, ["A man plays a guitar."], True),
                 ("nofile0000", 1, 2, 2, ["This clip is not downloaded."], False)]
    lines, mapping, missing, counts = [MSVD_HEADER], [], [], {}
    for k, (vid, start, end, number, captions, on_disk) in enumerate(clips):
        for w, cap in enumerate(captions, start=1):
            text = f'"{cap}"' if "," in cap else cap
            lines.append(f"{vid},{start},{end},{w},clean,{9 + w},English,{text}")
            if k == 0 and w == 2:
                lines.append(f"{vid},{start},{end},{w + 1},clean,10,German,Ein Vogel badet.")
        clip = f"{vid}_{start}_{end}"
        mapping.append(f"{clip} vid{number}")
        if not on_disk:
            missing.append(f"{clip}.avi")
            continue
        video(root / "YouTubeClips" / f"{clip}.avi", k + 1)
        split = "train" if number <= 1200 else "val" if number <= 1300 else "test"
        counts[split] = counts.get(split, 0) + 1
    crlf(root / "video_corpus.csv", lines)
    # mapping order is not the vid order
    crlf(root / "youtube_mapping.txt", mapping[1:2] + mapping[:1] + mapping[2:])
    return Layout(root, [f"data.root={root}"], [], missing, counts)


_SUBJECTS = ["a man", "a woman", "a dog", "a cat", "a child"]
_ACTIONS = ["is playing a guitar", "is slicing a tomato", "is running on a road", "is swimming in a pool"]


def msvd_clips(*, train=6, val=2, test=3, captions=3):
    """Clips for :func:`write_msvd` (English captions from a small word list, so words repeat), plus one clip
    that is not downloaded."""
    clips, k = [], 0
    for split, n, first in (("train", train, 1), ("val", val, 1201), ("test", test, 1301)):
        for i in range(n):
            caps = [f"{_SUBJECTS[(k + j) % len(_SUBJECTS)]} {_ACTIONS[(k + 2 * j) % len(_ACTIONS)]}"
                    for j in range(captions)]
            clips.append((f"yt{k:03d}-Xy_z", 10 + k, 20 + k, first + i, caps, True))
            k += 1
    clips.append(("gone0000000", 1, 5, train + 1, ["a clip that is not downloaded"], False))
    return clips


# ------------------------------------------------------------------------------------------------------ MSR-VTT

# (video_id, split, category, captions, on_disk)
MSRVTT_SMALL = [
    ("video0", "train", 9, ["a car drives down the road", "a man is driving"], True),
    ("video1", "validate", 16, ["someone cooks food"], True),
    ("video2", "train", 0, [], False),
    ("video10", "test", 3, ["a game is played"], True),
]


def msrvtt_videos(*, train=6, val=2, test=3, captions=3):
    """Videos for :func:`write_msrvtt`: ids video0.. in split order, categories cycling, and one missing
    training video."""
    out, k = [], 0
    for split, n in (("train", train), ("validate", val), ("test", test)):
        for _ in range(n):
            caps = [f"{_SUBJECTS[(k + j) % len(_SUBJECTS)]} {_ACTIONS[(k + 2 * j) % len(_ACTIONS)]}"
                    for j in range(captions)]
            out.append((f"video{k}", split, k % 20, caps, True))
            k += 1
    out.append((f"video{k}", "train", 0, ["a video that is missing"], False))
    return out


def write_msrvtt(root, *, videos=None, video: VideoWriter = real_video) -> Layout:
    """MSR-VTT as unzipped: ``TrainValVideo/videoN.mp4``, ``TestVideo/videoN.mp4``,
    ``train_val_videodatainfo.json`` and ``test_videodatainfo.json`` (``videos`` + ``sentences``)."""
    root = Path(root)
    videos = MSRVTT_SMALL if videos is None else videos
    files = {"train_val_videodatainfo.json": {"info": {"year": "2016"}, "videos": [], "sentences": []},
             "test_videodatainfo.json": {"info": {"year": "2016"}, "videos": [], "sentences": []}}
    missing, counts, sen = [], {}, 0
    for k, (vid, split, cat, caps, on_disk) in enumerate(videos):
        data = files["test_videodatainfo.json" if split == "test" else "train_val_videodatainfo.json"]
        data["videos"].append({"category": cat, "url": f"https://www.youtube.com/watch?v=x{k}", "video_id": vid,
                               "start time": 1.5 + k, "end time": 11.5 + k, "split": split, "id": k})
        for c in caps:
            data["sentences"].append({"caption": c, "video_id": vid, "sen_id": sen})
            sen += 1
        if not on_disk:
            missing.append(f"{vid}.mp4")
            continue
        video(root / ("TestVideo" if split == "test" else "TrainValVideo") / f"{vid}.mp4", k + 1)
        name = {"validate": "val"}.get(split, split)
        counts[name] = counts.get(name, 0) + 1
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(data))
    from seqvision.data.formats._msrvtt import CATEGORIES

    return Layout(root, [f"data.root={root}"], list(CATEGORIES), missing, counts)


# ------------------------------------------------------------------------------------------------------ folder


def write_folder(root, *, classes=("jump", "walk"), per_class=10, split_folders=False,
                 video: VideoWriter = real_video) -> Layout:
    """Folder per class: ``<root>/<class>/<class[0]><i>.mp4`` (every other class in upper-case ``.AVI``) plus a
    stray ``notes.txt``; with ``split_folders`` each class goes under ``train/`` (and ``val/``, ``test/`` get
    one video per class)."""
    root = Path(root)
    seed, counts = 0, {}
    for ci, cls in enumerate(sorted(classes)):
        ext = ".AVI" if ci % 2 == 0 else ".mp4"
        where = [("train", per_class), ("val", 1), ("test", 1)] if split_folders else [("", per_class)]
        for split, n in where:
            folder = (root / split / cls) if split else (root / cls)
            for i in range(n):
                seed += 1
                video(folder / f"{cls[0]}{i}{ext}", seed)
            counts[split or "all"] = counts.get(split or "all", 0) + n
    if not split_folders:
        (root / sorted(classes)[0] / "notes.txt").write_text("not a video\n")
    return Layout(root, [f"data.root={root}"], sorted(classes), [], counts)
