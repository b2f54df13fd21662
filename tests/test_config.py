import dataclasses

import pytest

from lft_helpers.config import PRESETS, Config, make_config
from lft_helpers.errors import LFTError


def test_defaults_are_the_hub_ids(monkeypatch):
    monkeypatch.delenv("LFT_MODEL", raising=False)
    monkeypatch.delenv("LFT_DATA", raising=False)
    config = make_config("cpu")
    assert config.model == "distilbert-base-uncased"
    assert config.data == "stanfordnlp/imdb"


def test_preset_sizes_apply_and_overrides_win(monkeypatch):
    monkeypatch.delenv("LFT_PRESET", raising=False)
    config = make_config("smoke", eval_size=10)
    assert config.train_size == PRESETS["smoke"]["train_size"]
    assert config.eval_size == 10


def test_environment_points_at_local_sources(monkeypatch):
    monkeypatch.setenv("LFT_MODEL", "some/model-dir")
    monkeypatch.setenv("LFT_DATA", "some/data-dir")
    monkeypatch.setenv("LFT_PRESET", "smoke")
    config = make_config()
    assert (config.model, config.data, config.preset) == (
        "some/model-dir",
        "some/data-dir",
        "smoke",
    )
    assert make_config(model="explicit").model == "explicit"


@pytest.mark.parametrize(("cuda", "preset"), [(True, "full"), (False, "cpu")])
def test_without_preset_hardware_decides(monkeypatch, cuda, preset):
    import torch

    monkeypatch.delenv("LFT_PRESET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert make_config().preset == preset


def test_cpu_preset_is_the_defaults_and_every_field_is_documented(monkeypatch):
    for name in ("LFT_MODEL", "LFT_DATA"):
        monkeypatch.delenv(name, raising=False)
    assert make_config("cpu") == Config(preset="cpu")
    for item in dataclasses.fields(Config):
        assert item.metadata.get("help"), f"Config.{item.name} has no help text"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("train_size", 0),
        ("eval_size", -5),
        ("lora_r", 0),
        ("learning_rate", 0.0),
        ("lora_dropout", 1.5),
        ("precision", "fp8"),
        ("preset", "huge"),
        ("max_length", 2.5),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(LFTError, match=f"`{field}`"):
        Config(**{field: value})


def test_unknown_field_is_refused():
    with pytest.raises(LFTError, match="lora_rank"):
        make_config("smoke", lora_rank=4)


def test_target_modules_accept_comma_string():
    assert Config(target_modules="query, value").target_modules == ("query", "value")
    assert Config(target_modules="query,value").to_dict()["target_modules"] == ["query", "value"]


def test_every_config_field_is_a_run_flag_with_its_help_and_preset_defaults():
    from lft_helpers.cli import build_parser
    from lft_helpers.flags import flag_of

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    actions = {a.dest: a for a in run._actions}
    for item in dataclasses.fields(Config):
        action = actions[item.name]
        assert flag_of(item) in action.option_strings
        assert action.help.startswith(item.metadata["help"]), item.name
    assert "smoke 32, cpu 2000, full 24000" in actions["train_size"].help
    assert actions["lora_r"].help.endswith("(default: 8)")
    args = build_parser().parse_args(["run", "--lr", "0.01", "--target-modules", "query,key"])
    assert vars(args)["learning_rate"] == 0.01 and vars(args)["target_modules"] == "query,key"
