import pytest

from seqvision.config import Config, config_to_dict, load_config
from seqvision.errors import ConfigError


def test_defaults_round_trip(tmp_path):
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert config_to_dict(load_config(path)) == config_to_dict(cfg)


def test_overrides_are_typed():
    cfg = load_config(None, overrides=["train.epochs=3", "model.cell=gru", "model.bidirectional=true",
                                       "train.lr=0.01", "model.hidden_sizes=[16, 8]", "seed=7"])
    assert cfg.train.epochs == 3 and cfg.model.cell == "gru" and cfg.model.bidirectional is True
    assert cfg.train.lr == 0.01 and cfg.model.hidden_sizes == [16, 8] and cfg.seed == 7


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("model.cel=gru", "model.cel", "did you mean 'model.cell'"),
        ("model.cell=transformer", "model.cell", "allowed: 'rnn', 'lstm', 'gru'"),
        ("train.epochs=many", "train.epochs", "expected int"),
        ("train.epochs=0", "train.epochs", ">= 1"),
        ("model.bidirectional=3", "model.bidirectional", "expected bool"),
        ("bogus=1", "bogus", "unknown key"),
        ("data.fold=4", "data.fold", "allowed"),
    ],
)
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides=[override])
    assert info.value.key == key
    assert words in str(info.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("model:\n  layers: 2\n  hiden: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'model.hidden'"):
        load_config(wrong)


@pytest.mark.parametrize("override, words", [("=3", "no key before '='"), ("train.=3", "'train.' has an empty part"),
                                             ("a..b=1", "'a..b' has an empty part")])
def test_an_empty_key_in_an_override_says_so(override, words):
    """`--set =3` once printed "unknown key Known keys here: ..." about a key named ''."""
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides=[override])
    assert words in str(info.value) and "key=value" in str(info.value)
