"""Vocabulary: tokenisation, build rules, encode/decode, padded batches, round trips."""

import pytest
import torch

from seqvision.data.vocab import Vocabulary, tokenize
from seqvision.config import config_from_dict
from seqvision.errors import ArgumentError, ConfigError, DatasetError


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("A Dog, running!") == ["a", "dog", ",", "running", "!"]
    assert tokenize("Don't stop. It's the dog's ball") == ["don't", "stop", ".", "it's", "the", "dog's", "ball"]
    assert tokenize("  ") == []


def test_special_ids_and_build_order():
    v = Vocabulary.build(["b a a", "c a b", "z"], min_freq=1)
    assert v.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.itos[4:] == ["a", "b", "c", "z"]  # by frequency, ties alphabetical
    assert len(v) == 8


def test_min_freq_and_max_size():
    caps = ["a a a b b c"]
    assert Vocabulary.build(caps, min_freq=2).itos[4:] == ["a", "b"]
    assert Vocabulary.build(caps, max_size=5).itos[4:] == ["a"]
    # the config boundary names the key; the vocabulary below it names its own argument (issue #13)
    with pytest.raises(ConfigError, match="model.vocab_min_freq"):
        config_from_dict({"model": {"task": "caption", "vocab_min_freq": 0}})
    with pytest.raises(ArgumentError, match="^min_freq: "):
        Vocabulary.build(caps, min_freq=0)
    with pytest.raises(ConfigError, match="model.vocab_max_size"):
        config_from_dict({"model": {"task": "caption", "vocab_max_size": 4}})
    with pytest.raises(ArgumentError, match="^max_size: "):
        Vocabulary.build(caps, max_size=4)


def test_encode_decode_round_trip_and_unknown():
    v = Vocabulary.build(["a man is running ."])
    ids = v.encode("A man is running.")
    assert ids[0] == v.bos_id and ids[-1] == v.eos_id
    assert v.decode(ids) == "a man is running ."
    assert v.encode("a woman", add_bos_eos=False) == [v.stoi["a"], v.unk_id]
    # decode stops at <eos> and drops the other specials
    assert v.decode([v.bos_id, v.stoi["man"], v.pad_id, v.eos_id, v.stoi["a"]]) == "man"
    assert v.decode(torch.tensor(ids)) == "a man is running ."


def test_encode_batch_pads_and_caps():
    v = Vocabulary.build(["a b c d"])
    out = v.encode_batch(["a b", "a b c d"])
    assert out.dtype == torch.long and out.shape == (2, 6)
    assert out[0].tolist() == [1, v.stoi["a"], v.stoi["b"], 2, 0, 0]
    capped = v.encode_batch(["a b c d"], max_len=2)
    assert capped[0].tolist() == [1, v.stoi["a"], v.stoi["b"], 2]


def test_dict_and_json_round_trip(tmp_path):
    v = Vocabulary.build(["the cat sat on the mat", "don't!"])
    assert Vocabulary.from_dict(v.to_dict()) == v
    path = tmp_path / "vocab.json"
    v.save(path)
    w = Vocabulary.load(path)
    assert w == v and w.encode("the cat don't") == v.encode("the cat don't")


def test_bad_files_raise_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        Vocabulary.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json"):
        Vocabulary.load(bad)
    with pytest.raises(DatasetError, match="first entries"):
        Vocabulary.from_dict({"itos": ["a", "b"]})
