"""Dataset-format readers, each fed small annotation files written in the real layout (CRLF, wrong case, ...).

The layouts come from tests/layouts.py (shared with tests/test_configs_e2e.py, which runs the shipped configs on
them with real videos). The readers only list files (no decoding), so the videos here are placeholder files;
decoding of listed records is covered in tests/test_dataset.py and tests/test_configs_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import layouts
from layouts import crlf, placeholder
from seqvision.config import DataConfig
from seqvision.data import load_index
from seqvision.errors import DatasetError


def touch(path: Path) -> Path:
    return placeholder(path)


def by_id(index):
    return {r.id: r for r in index.records}


# ------------------------------------------------------------------------------------------------------ UCF101


@pytest.fixture
def ucf(tmp_path):
    # ApplyEyeMakeup g08 (train) / g01 (test); HandstandPushups the same, listed as "HandStand"; YoYo g01 (test),
    # its g08 (train) is missing; classInd order YoYo, ApplyEyeMakeup, HandstandPushups is not the sorted order:
    # labels must follow classInd. Fold 2: train v_YoYo_g01_c01, test v_ApplyEyeMakeup_g08_c01.
    return layouts.write_ucf101(tmp_path / "UCF101", video=placeholder).root


def test_ucf101_labels_splits_case_and_missing(ucf):
    index = load_index(DataConfig(format="ucf101", root=str(ucf), fold=1))
    assert index.label_names == ["YoYo", "ApplyEyeMakeup", "HandstandPushups"]
    recs = by_id(index)
    assert sorted(r.id for r in index.split("train")) == ["v_ApplyEyeMakeup_g08_c01", "v_HandStandPushups_g08_c01"]
    assert sorted(r.id for r in index.split("test")) == ["v_ApplyEyeMakeup_g01_c01", "v_HandStandPushups_g01_c01",
                                                         "v_YoYo_g01_c01"]
    assert recs["v_ApplyEyeMakeup_g08_c01"].label == 1
    assert recs["v_HandStandPushups_g08_c01"].label == 2
    assert recs["v_YoYo_g01_c01"].label == 0 and recs["v_HandStandPushups_g01_c01"].label == 2
    # the wrong-case name resolves to the file on disk
    assert Path(recs["v_HandStandPushups_g08_c01"].path).name == "v_HandstandPushups_g08_c01.avi"
    assert Path(recs["v_HandStandPushups_g08_c01"].path).is_file()
    assert len(index.missing) == 1 and index.missing[0][0].endswith("YoYo/v_YoYo_g08_c01.avi")
    assert index.split("val") == []


def test_ucf101_fold_and_annotations_override(ucf, tmp_path):
    index = load_index(DataConfig(format="ucf101", root=str(ucf), fold=2))
    assert [(r.id, r.split) for r in index.records] == [("v_YoYo_g01_c01", "train"),
                                                       ("v_ApplyEyeMakeup_g08_c01", "test")]
    moved = tmp_path / "lists"
    (ucf / "ucfTrainTestlist").rename(moved)
    with pytest.raises(DatasetError, match=r"classInd\.txt.*UCF101 layout"):
        load_index(DataConfig(format="ucf101", root=str(ucf)))
    index = load_index(DataConfig(format="ucf101", root=str(ucf / "UCF-101"), annotations=str(moved)))
    assert len(index.records) == 5


def test_ucf101_bad_lines_name_file_and_line(ucf):
    ann = ucf / "ucfTrainTestlist"
    crlf(ann / "trainlist01.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2",
                                   "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 9"])
    with pytest.raises(DatasetError, match=r"trainlist01\.txt:2: .*class number in 1\.\.3"):
        load_index(DataConfig(format="ucf101", root=str(ucf)))
    crlf(ann / "classInd.txt", ["1 YoYo", "two ApplyEyeMakeup"])
    with pytest.raises(DatasetError, match=r"classInd\.txt:2: .*'<number> <ClassName>'"):
        load_index(DataConfig(format="ucf101", root=str(ucf)))


# ------------------------------------------------------------------------------------------------------ HMDB51


def test_hmdb51_tags_and_missing(tmp_path):
    # brush_hair: a (fold 1 train, fold 2 test), b (test), c (unused); cartwheel: d (test / train), e (train,
    # not on disk); lines '<video>.avi <tag> ' with the real files' trailing space
    root = layouts.write_hmdb51(tmp_path / "hmdb", video=placeholder).root
    splits = root / "testTrainMulti_7030_splits"
    index = load_index(DataConfig(format="hmdb51", root=str(root)))
    assert index.label_names == ["brush_hair", "cartwheel"]
    assert [(r.id, r.split, r.label) for r in index.records] == [("a", "train", 0), ("b", "test", 0),
                                                                ("d", "test", 1)]
    assert [Path(p).name for p, _ in index.missing] == ["e.avi"]
    index2 = load_index(DataConfig(format="hmdb51", root=str(root), fold=2))
    assert [(r.id, r.split) for r in index2.records] == [("a", "test"), ("d", "train")]

    crlf(splits / "cartwheel_test_split1.txt", ["d.avi 2", "e.avi 3"])
    with pytest.raises(DatasetError, match=r"cartwheel_test_split1\.txt:2: .*tag 0 \(unused\), 1 \(train\)"):
        load_index(DataConfig(format="hmdb51", root=str(root)))
    with pytest.raises(DatasetError, match=r"_test_split3\.txt"):
        load_index(DataConfig(format="hmdb51", root=str(root), fold=3))


# ------------------------------------------------------------------------------------------------------ folder


def test_folder_per_class_seeded_stratified_split(tmp_path):
    root = layouts.write_folder(tmp_path / "clips", classes=("jump", "walk"), per_class=10, video=placeholder).root
    assert (root / "jump" / "notes.txt").is_file() and (root / "jump" / "j0.AVI").is_file()
    cfg = DataConfig(format="folder", root=str(root), val_fraction=0.2, test_fraction=0.3)
    index = load_index(cfg, seed=1)
    assert index.label_names == ["jump", "walk"]
    assert len(index.records) == 20 and all(Path(r.path).suffix.lower() in (".mp4", ".avi") for r in index.records)
    for label in (0, 1):
        counts = {s: sum(1 for r in index.records if r.label == label and r.split == s) for s in ("train", "val", "test")}
        assert counts == {"train": 5, "val": 2, "test": 3}
    again = load_index(cfg, seed=1)
    assert [(r.id, r.split) for r in again.records] == [(r.id, r.split) for r in index.records]
    other = load_index(cfg, seed=2)
    assert [r.split for r in other.records] != [r.split for r in index.records]


def test_folder_with_split_folders(tmp_path):
    root = tmp_path / "clips"
    touch(root / "train" / "b" / "1.mp4")
    touch(root / "train" / "a" / "2.mkv")
    touch(root / "val" / "a" / "3.webm")
    touch(root / "test" / "b" / "4.mov")
    touch(root / "test" / "a" / "5.ts")  # MPEG-TS, as cameras and HLS segments write
    index = load_index(DataConfig(format="folder", root=str(root)))
    assert index.label_names == ["a", "b"]
    assert sorted((r.id, r.split, r.label) for r in index.records) == [
        ("test/a/5", "test", 0), ("test/b/4", "test", 1), ("train/a/2", "train", 0), ("train/b/1", "train", 1),
        ("val/a/3", "val", 0)]
    with pytest.raises(DatasetError, match="no class folders"):
        load_index(DataConfig(format="folder", root=str(tmp_path / "clips" / "train" / "a")))


# ------------------------------------------------------------------------------------------------------ Kinetics


def test_kinetics_csv(tmp_path):
    # train/abseiling/aaa_000010_000020.mp4, validate/air drumming/bbb_000000_000010.mp4, ccc_000005_000015.mkv
    # at the root; annotations/train.csv also lists zzz (never downloaded); validate.csv quotes its label
    root = layouts.write_kinetics(tmp_path / "k400", video=placeholder).root
    ann = root / "annotations"
    assert '"air drumming",bbb,0,10,validate,0' in (ann / "validate.csv").read_text()
    index = load_index(DataConfig(format="kinetics", root=str(root)))
    assert index.label_names == ["abseiling", "air drumming"]
    assert sorted((r.id, r.split, r.label) for r in index.records) == [
        ("aaa_000010_000020", "train", 0), ("bbb_000000_000010", "val", 1), ("ccc_000005_000015", "train", 1)]
    assert [Path(p).name for p, _ in index.missing] == ["zzz_000000_000010.mp4"]

    crlf(ann / "validate.csv", ["label,youtube_id,time_start,time_end,split", "air drumming,bbb,zero,10,validate"])
    with pytest.raises(DatasetError, match=r"validate\.csv:2: time_start/time_end must be numbers"):
        load_index(DataConfig(format="kinetics", root=str(root)))
    crlf(ann / "validate.csv", ["label,id,start,end,split"])
    with pytest.raises(DatasetError, match=r"validate\.csv:1: .*lacks column"):
        load_index(DataConfig(format="kinetics", root=str(root)))


# ------------------------------------------------------------------------------------------------------ MSR-VTT


def test_msrvtt_json(tmp_path):
    # video0 (train, category 9, two captions), video1 (validate, 16), video2 (train, not on disk) in
    # train_val_videodatainfo.json; video10 (test) in test_videodatainfo.json
    root = layouts.write_msrvtt(tmp_path / "msrvtt", video=placeholder).root
    index = load_index(DataConfig(format="msrvtt", root=str(root)))
    recs = by_id(index)
    assert [r.id for r in index.records] == ["video0", "video1", "video10"]
    assert recs["video0"].split == "train" and recs["video1"].split == "val" and recs["video10"].split == "test"
    assert index.label_names[recs["video0"].label] == "vehicles/autos"
    assert index.label_names[recs["video1"].label] == "food/drink"
    assert recs["video0"].captions == ["a car drives down the road", "a man is driving"]
    assert recs["video0"].start is None  # the files are already cut
    assert [Path(p).name for p, _ in index.missing] == ["video2.mp4"]

    (root / "test_videodatainfo.json").write_text('{"videos": [\n{"video_id": "video10",}\n]}')
    with pytest.raises(DatasetError, match=r"test_videodatainfo\.json:2: not valid JSON"):
        load_index(DataConfig(format="msrvtt", root=str(root)))
    with pytest.raises(DatasetError, match=r"train_val_videodatainfo\.json: annotation file not found"):
        load_index(DataConfig(format="msrvtt", root=str(tmp_path)))


# ------------------------------------------------------------------------------------------------------ MSVD


def test_msvd_corpus_and_mapping(tmp_path):
    # three clips (mapping vid1 train, vid1250 val, vid1500 test) and one not downloaded (vid2); a German row,
    # a quoted description with a comma
    root = layouts.write_msvd(tmp_path / "msvd", video=placeholder).root
    header = layouts.MSVD_HEADER
    assert ",German,Ein Vogel badet." in (root / "video_corpus.csv").read_text()
    index = load_index(DataConfig(format="msvd", root=str(root)))
    assert [(r.id, r.split) for r in index.records] == [("mv89psg6zh4_33_46", "train"), ("-4wsuPCjDBc_5_15", "val"),
                                                       ("zv2RIbUsnSw_159_165", "test")]
    assert index.records[0].captions == ["A bird is bathing in a sink.", "A bird splashes around, under a faucet."]
    assert index.records[0].label is None and index.label_names == []
    assert [Path(p).name for p, _ in index.missing] == ["nofile0000_1_2.avi"]

    (root / "youtube_mapping.txt").unlink()
    cfg = DataConfig(format="msvd", root=str(root), val_fraction=0.0, test_fraction=0.4)
    seeded = load_index(cfg, seed=3)
    assert len(seeded.records) == 3 and {r.split for r in seeded.records} <= {"train", "test"}
    assert sum(r.split == "test" for r in seeded.records) in (1, 2)  # 2 of the 4 annotated clips; one is missing
    assert [r.split for r in load_index(cfg, seed=3).records] == [r.split for r in seeded.records]
    crlf(root / "video_corpus.csv", [header, "abc,one,2,1,clean,9,English,Text."])
    with pytest.raises(DatasetError, match=r"video_corpus\.csv:2: .*integer Start/End"):
        load_index(DataConfig(format="msvd", root=str(root)))


# ------------------------------------------------------------------------------------------------------ manifest


def test_manifest_jsonl_and_labels_json(tmp_path):
    root = tmp_path / "mine"
    touch(root / "v" / "a.mp4")
    touch(root / "v" / "b.mp4")
    rows = [{"id": "a", "path": "v/a.mp4", "split": "train", "label": "run", "frame_labels": ["x", "y", "y"],
             "captions": ["someone runs"]},
            {"id": "b", "path": "v/b.mp4", "split": "test", "label": "sit", "start": 1.5, "end": 3.0},
            {"id": "c", "path": "v/c.mp4", "split": "train", "label": "run"}]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    index = load_index(DataConfig(format="manifest", root=str(root)))
    assert index.label_names == ["run", "sit"] and index.frame_label_names == ["x", "y"]
    a, b = index.records
    assert (a.label, a.frame_labels, a.captions, a.split) == (0, [0, 1, 1], ["someone runs"], "train")
    assert (b.label, b.start, b.end, b.frame_labels) == (1, 1.5, 3.0, None)
    assert Path(a.path) == root / "v" / "a.mp4"
    assert [Path(p).name for p, _ in index.missing] == ["c.mp4"]

    (root / "labels.json").write_text(json.dumps({"labels": ["sit", "run", "jump"], "frame_labels": ["y", "x"]}))
    index = load_index(DataConfig(format="manifest", root=str(root)))
    assert index.label_names == ["sit", "run", "jump"] and index.records[0].label == 1
    assert index.records[0].frame_labels == [1, 0, 0]

    rows[1]["label"] = "fly"
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DatasetError, match=r"manifest\.jsonl:2: unknown label 'fly'"):
        load_index(DataConfig(format="manifest", root=str(root)))
    (root / "manifest.jsonl").write_text('{"path": "v/a.mp4"}\n{"path": \n')
    with pytest.raises(DatasetError, match=r"manifest\.jsonl:2: not valid JSON"):
        load_index(DataConfig(format="manifest", root=str(root)))
    with pytest.raises(DatasetError, match=r"manifest\.jsonl: manifest not found"):
        load_index(DataConfig(format="manifest", root=str(tmp_path / "nowhere")))


def test_manifest_csv_with_seeded_split(tmp_path):
    root = tmp_path / "mine"
    lines = ["path,label,captions,frame_labels"]
    for i in range(10):
        touch(root / f"{i}.mp4")
        lines.append(f"{i}.mp4,{'ab'[i % 2]},a thing happens|it happens,0 1 1")
    crlf(root / "manifest.csv", lines)
    cfg = DataConfig(format="manifest", annotations=str(root / "manifest.csv"), val_fraction=0.2, test_fraction=0.2)
    index = load_index(cfg, seed=0)
    assert len(index.records) == 10 and index.label_names == ["a", "b"]
    assert index.records[0].captions == ["a thing happens", "it happens"]
    assert index.records[0].frame_labels == [0, 1, 1] and index.frame_label_names == ["0", "1"]
    assert sorted(index.splits.items()) == [("test", 2), ("train", 6), ("val", 2)]


def test_unknown_format_is_rejected():
    cfg = DataConfig()
    cfg.format = "youtube8m"  # bypasses config validation on purpose
    with pytest.raises(DatasetError, match="data.format.*allowed"):
        load_index(cfg)


def test_split_aliases():
    from seqvision.data import DatasetIndex, VideoRecord

    index = DatasetIndex([VideoRecord(id="a", path="a.mp4", split="val"), VideoRecord(id="b", path="b.mp4")])
    assert [r.id for r in index.split("validate")] == ["a"] == [r.id for r in index.split("val")]
    assert [r.id for r in index.split("train")] == ["b"] and index.split("test") == []
