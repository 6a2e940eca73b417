"""seqvision.io.sample_indices: range, order, length, short-video policy, reproducibility."""

from __future__ import annotations

import pytest

from seqvision.config import DataConfig
from seqvision.data import VideoDataset
from seqvision.errors import ArgumentError, ConfigError
from seqvision.io import SAMPLERS, SampledIndices, sample_indices

LENGTHS = [1, 5, 16, 17, 100, 1001]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("policy", ["repeat", "truncate"])
def test_common_properties(sampler, n, policy):
    for seed in (None, 0, 7):
        s = sample_indices(n, sampler=sampler, num_frames=16, stride=3, fps=5.0, video_fps=25.0,
                           short_policy=policy, seed=seed)
        assert isinstance(s, SampledIndices)
        assert all(0 <= i < n for i in s.indices)
        assert s.indices == sorted(s.indices)
        assert 1 <= s.length <= 16
        if policy == "repeat":
            assert len(s.indices) == 16
            assert all(i == s.indices[s.length - 1] for i in s.indices[s.length:])  # padding repeats the last
        else:
            assert len(s.indices) == s.length
        assert len(set(s.indices[: s.length])) == s.length  # real frames are distinct
        again = sample_indices(n, sampler=sampler, num_frames=16, stride=3, fps=5.0, video_fps=25.0,
                               short_policy=policy, seed=seed)
        assert again == s  # a pure function of its inputs


def test_uniform_takes_segment_centres():
    assert sample_indices(100, num_frames=4).indices == [12, 37, 62, 87]
    assert sample_indices(16, num_frames=16).indices == list(range(16))
    s = sample_indices(5, num_frames=8)
    assert s.indices == [0, 1, 2, 3, 4, 4, 4, 4] and s.length == 5
    s = sample_indices(5, num_frames=8, short_policy="truncate")
    assert s.indices == [0, 1, 2, 3, 4] and s.length == 5


def test_random_segment_one_per_segment_and_seeded():
    n, t = 100, 10
    draws = [sample_indices(n, sampler="random_segment", num_frames=t, seed=s).indices for s in range(20)]
    for d in draws:
        assert [i * t // n for i in d] == list(range(t))  # exactly one frame from each segment
    assert len({tuple(d) for d in draws}) > 10  # different seeds, different clips
    assert sample_indices(n, sampler="random_segment", num_frames=t).indices == \
        sample_indices(n, sampler="uniform", num_frames=t).indices  # unseeded = centres


def test_dense_stride_window():
    s = sample_indices(100, sampler="dense", num_frames=8, stride=2)
    assert s.indices == list(range(s.indices[0], s.indices[0] + 16, 2))
    assert s.indices[0] == (100 - 15) // 2  # centred
    starts = {sample_indices(100, sampler="dense", num_frames=8, stride=2, seed=k).indices[0] for k in range(30)}
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= 100 - 15
    short = sample_indices(10, sampler="dense", num_frames=8, stride=3)
    assert short.indices[: short.length] == [0, 3, 6, 9] and len(short.indices) == 8


def test_fps_and_all():
    s = sample_indices(250, sampler="fps", fps=2.0, video_fps=25.0, num_frames=16, max_frames=100)
    assert s.indices[:4] == [0, 12, 25, 37] and s.length == 20  # 10 s at 2 per second
    capped = sample_indices(250, sampler="fps", fps=2.0, video_fps=25.0, num_frames=8, short_policy="truncate")
    assert capped.length == 8 and capped.indices == s.indices[6:14]  # centred window of the samples
    a = sample_indices(50, sampler="all", num_frames=16, max_frames=64, short_policy="truncate")
    assert a.indices == list(range(50))
    a = sample_indices(50, sampler="all", num_frames=16)
    assert a.indices == list(range(16))
    b = sample_indices(50, sampler="all", num_frames=16, seed=3)
    assert b.indices == list(range(b.indices[0], b.indices[0] + 16))


@pytest.mark.parametrize("kwargs,argument", [
    (dict(sampler="nope"), "sampler"),
    (dict(num_frames=0), "num_frames"),
    (dict(stride=0, sampler="dense"), "stride"),
    (dict(sampler="fps", fps=0.0, video_fps=25.0), "fps"),
    (dict(sampler="fps", fps=2.0), "video_fps"),
    (dict(short_policy="loop"), "short_policy"),
    (dict(max_frames=-1), "max_frames"),
])
def test_bad_options_name_the_argument(kwargs, argument):
    """io names its own argument (issue #13: no config keys below the config layer) ..."""
    with pytest.raises(ArgumentError) as err:
        sample_indices(100, **kwargs)
    assert err.value.argument == argument and str(err.value).startswith(f"{argument}: ")
    assert not isinstance(err.value, ConfigError)


@pytest.mark.parametrize("fields,key", [
    (dict(sampler="nope"), "data.sampler"),
    (dict(num_frames=0), "data.num_frames"),
    (dict(stride=0, sampler="dense"), "data.stride"),
    (dict(sampler="fps", fps=0.0), "data.fps"),
    (dict(short_policy="loop"), "data.short_policy"),
    (dict(max_frames=-1), "data.max_frames"),
    (dict(train_sampler="nope"), "data.train_sampler"),
])
def test_bad_options_through_the_config_name_the_key(fields, key):
    """... and the same bad value through the config boundary (VideoDataset.from_config) names the data.* key."""
    with pytest.raises(ConfigError) as err:
        VideoDataset.from_config(DataConfig(**fields), [], train=True)
    assert err.value.key == key


def test_empty_video_is_rejected():
    with pytest.raises(ValueError, match="num_video_frames"):
        sample_indices(0)
