import pytest

from scalelab.config import RunConfig, load_config, parse_value
from scalelab.errors import UserError


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.lr=3e-4", "model.recipe=modern", "train.betas=[0.8, 0.9]", "name=x"])
    assert cfg.train.lr == 3e-4 and cfg.model.recipe == "modern" and cfg.train.betas == (0.8, 0.9)
    assert cfg.name == "x"


def test_parse_value_types():
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value("abc") == "abc"
    assert parse_value("'s'") == "s" and parse_value("[1, 2]") == [1, 2]


def test_unknown_key_names_it_and_valid_keys():
    with pytest.raises(UserError) as e:
        load_config(None, ["train.learning_rate=1"])
    msg = str(e.value)
    assert "train.learning_rate" in msg and "lr" in msg and "warmup_iters" in msg


def test_unknown_section():
    with pytest.raises(UserError, match="unknown key 'optim'"):
        load_config(None, ["optim.lr=1"])


def test_wrong_type_says_expected():
    with pytest.raises(UserError) as e:
        load_config(None, ["train.iters=lots"])
    assert "train.iters" in str(e.value) and "integer" in str(e.value)


def test_bad_literal():
    with pytest.raises(UserError, match="model.recipe"):
        load_config(None, ["model.recipe=llama"])


def test_toml_file_roundtrip(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "t"\n[model]\nn_layer = 2\n[train]\niters = 5\n')
    cfg = load_config(p)
    assert cfg.model.n_layer == 2 and cfg.train.iters == 5
    assert RunConfig.model_validate(cfg.to_dict()) == cfg


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(bad)


def test_config_hash_ignores_name_but_not_lr():
    a = load_config(None, ["name=a"])
    b = load_config(None, ["name=b"])
    c = load_config(None, ["train.lr=0.5"])
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_repeat_mixer_version_in_hash(monkeypatch):
    """Runs trained by an older repetition mixer are not reused for the same config; plain runs keep their hash."""
    from scalelab import config as config_module
    from scalelab.config import load_config

    repeated = load_config(None, ["data.repeat_fraction=0.5", "data.repeat_epochs=4"])
    plain = load_config(None, [])
    before = repeated.config_hash(), plain.config_hash()
    monkeypatch.setattr(config_module, "REPEAT_MIXER_VERSION", config_module.REPEAT_MIXER_VERSION + 1)
    assert repeated.config_hash() != before[0] and plain.config_hash() == before[1]
