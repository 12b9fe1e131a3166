"""Config loading: every error path gives one clear message naming the key, file/line or flag."""

import pytest
import yaml

from wrn.config import (
    BUILTIN_DATA,
    CONFIG_DIR,
    DEFAULT_CONFIG,
    ConfigError,
    TrainConfig,
    config_keys,
    dump_config,
    load_config,
    parse_override,
    split_modelzoo_args,
)

MODELZOO_KEYS = {"data_path": None, "ckpt_path": None, "checkpoint_name": None,
                 "summary_base_dir": None, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
                 "epoch_size": 20}


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_wrn50_2_config_keeps_modelzoo_keys_and_values():
    raw = yaml.safe_load((CONFIG_DIR / "wrn50-2_config.yaml").read_text())
    for key, value in MODELZOO_KEYS.items():
        assert key in raw
        if value is not None:
            assert raw[key] == value
    cfg = load_config(CONFIG_DIR / "wrn50-2_config.yaml")
    assert (cfg.model, cfg.num_classes, cfg.image_size) == ("wrn50_2", 2388, 224)
    assert cfg.warmup_epochs > 0
    assert cfg.lr_schedule == "cosine"
    assert cfg.label_smoothing > 0


def test_default_config_is_small_cpu_builtin():
    cfg = load_config()
    assert cfg.data_path == BUILTIN_DATA
    assert cfg.model.startswith("wrn")
    assert cfg.image_size <= 64
    assert load_config(DEFAULT_CONFIG) == cfg


def test_every_key_in_both_configs_is_known():
    for path in CONFIG_DIR.glob("*.yaml"):
        assert set(yaml.safe_load(path.read_text())) <= set(config_keys()), path


def test_overrides_set_and_modelzoo_style():
    zoo, rest = split_modelzoo_args(["--data_path=/d", "--lr", "0.5", "--config", "x.yaml",
                                     "--output-dir", "o", "--not_a_key=1"])
    assert zoo == ["--data_path=/d", "--lr=0.5"]
    assert rest == ["--config", "x.yaml", "--output-dir", "o", "--not_a_key=1"]
    cfg = load_config(None, zoo + ["nesterov=true", "lr_decay_epochs=[3, 6]", "batch-size=8"])
    assert cfg.data_path == "/d"
    assert cfg.lr == 0.5
    assert cfg.nesterov is True
    assert cfg.lr_decay_epochs == [3, 6]
    assert cfg.batch_size == 8


def test_int_accepted_for_float_and_number_for_string():
    cfg = load_config(None, ["lr=1", "checkpoint_name=2024"])
    assert cfg.lr == 1.0
    assert isinstance(cfg.lr, float)
    assert cfg.checkpoint_name == "2024"


@pytest.mark.parametrize("item, words", [
    ("bach_size=3", ["unknown key 'bach_size'", "did you mean 'batch_size'"]),
    ("batch_size=0", ["'batch_size' must be greater than 0"]),
    ("batch_size=1.5", ["'batch_size' must be an integer", "1.5"]),
    ("batch_size=true", ["'batch_size' must be an integer"]),
    ("lr=fast", ["'lr' must be a number", "'fast'"]),
    ("lr=-1", ["'lr' must be 0 or more"]),
    ("nesterov=maybe", ["'nesterov' must be true or false"]),
    ("mode=grpah", ["one of graph, pynative", "did you mean 'graph'"]),
    ("lr_schedule=cosin", ["did you mean 'cosine'"]),
    ("device_target=NPU", ["'device_target' must be one of"]),
    ("label_smoothing=1.0", ["'label_smoothing' must be in [0, 1)"]),
    ("dropout=-0.1", ["'dropout' must be in [0, 1)"]),
    ("lr_decay_epochs=[0, 3]", ["'lr_decay_epochs' must be a list of positive"]),
    ("lr_decay_epochs=5", ["'lr_decay_epochs' must be a list"]),
    ("lr_decay_factor=2", ["'lr_decay_factor' must be in (0, 1]"]),
    ("image_size=4", ["'image_size' must be at least 8"]),
    ("crop_min_scale=0", ["'crop_min_scale' must be in (0, 1]"]),
    ("sink_size=-1", ["'sink_size' must be 0 or more"]),
    ("sink_size=all", ["'sink_size' must be an integer"]),
    ("novalue", ["expected key=value"]),
])
def test_set_errors_name_flag_and_key(item, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    message = str(err.value)
    assert f"--set {item!r}" in message
    for word in words:
        assert word in message
    assert "\n" not in message


def test_modelzoo_flag_error_quotes_it_as_typed():
    with pytest.raises(ConfigError, match=r"'--lr=abc': 'lr' must be a number"):
        load_config(None, ["--lr=abc"])


def test_unknown_key_in_file_names_file_and_line(tmp_path):
    path = write(tmp_path, "lr: 0.1\nbatch_size: 8\n\nmomentm: 0.9\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path} line 4: unknown key 'momentm' (did you mean 'momentum'?)" in str(err.value)


def test_wrong_type_in_file_names_file_and_line(tmp_path):
    path = write(tmp_path, "lr: 0.1\nepoch_size: ten\n")
    with pytest.raises(ConfigError, match=r"line 2: 'epoch_size' must be an integer, got 'ten'"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope.yaml does not exist.*--config"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "lr: 0.1\nbatch_size: [1, 2\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_config(path)


def test_non_mapping_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_undecodable_file(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"cannot be read"):
        load_config(path)


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == TrainConfig()


def test_unicode_paths_round_trip(tmp_path):
    cfg = load_config(None, ["data_path=/数据/rp2k（全部）", "checkpoint_name=宽网络"])
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out)
    assert load_config(out) == cfg
    assert "数据" in out.read_text(encoding="utf-8")


def test_parse_override_types():
    assert parse_override("keep_checkpoint_max=3") == ("keep_checkpoint_max", 3)
    assert parse_override("data_path=") == ("data_path", "")
    assert parse_override("warmup_epochs=0.5") == ("warmup_epochs", 0.5)


def test_dataclass_validates_itself():
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=-1)
    with pytest.raises(ConfigError, match="mode"):
        TrainConfig().replace(mode="eager")
