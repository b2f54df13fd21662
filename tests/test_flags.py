"""Flags generated from a dataclass: names, types, switches, choices and help come from the
fields, and only the flags given come back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from lft_helpers.flags import add_dataclass_flags, flag_of, values_from_args


def opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class Example:
    learning_rate: float = opt(2e-3, "learning rate", flag="--lr")
    epochs: int = opt(3, "epochs")
    precision: str = opt("auto", "precision", choices=("auto", "fp32", "bf16"))
    data: str | None = opt(None, "data directory")
    models: tuple[str, ...] = opt(("a",), "model, repeatable", flag="--model")
    targets: tuple[str, ...] | None = opt(None, "comma-separated targets", type=str)
    resume: bool = opt(False, "continue from the last checkpoint")
    memory: bool = opt(True, "skip the memory probe")
    internal: str = opt("x", "not on the command line", flag=None)


def parser_for(cls=Example, **kwargs):
    parser = argparse.ArgumentParser()
    added = add_dataclass_flags(parser, cls, **kwargs)
    return parser, added


def test_nothing_given_returns_nothing_so_defaults_stay_in_the_dataclass():
    parser, added = parser_for()
    assert "internal" not in added and len(added) == 8
    assert values_from_args(Example, parser.parse_args([])) == {}
    assert Example(**values_from_args(Example, parser.parse_args([]))) == Example()


def test_flags_are_typed_named_and_switched_from_the_fields():
    parser, _ = parser_for()
    args = parser.parse_args(
        [
            *("--lr", "0.5", "--epochs", "2", "--precision", "bf16", "--data", "d"),
            *("--model", "m1", "--model", "m2", "--targets", "q,v", "--resume", "--no-memory"),
        ]
    )
    assert values_from_args(Example, args) == {
        "learning_rate": 0.5,
        "epochs": 2,
        "precision": "bf16",
        "data": "d",
        "models": ("m1", "m2"),
        "targets": "q,v",  # metadata "type" wins: the dataclass parses the text itself
        "resume": True,
        "memory": False,
    }


def test_bad_values_are_refused_by_argparse():
    parser, _ = parser_for()
    for bad in (["--epochs", "two"], ["--precision", "fp64"], ["--learning-rate", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_help_shows_the_default_unless_told_not_to():
    fields = {f.name: f for f in Example.__dataclass_fields__.values()}
    assert flag_of(fields["memory"]) == "--no-memory" and flag_of(fields["resume"]) == "--resume"
    shown = parser_for()[0].format_help()
    assert "learning rate (default: 0.002)" in shown and "--lr LR" in shown
    assert "(default: a)" in shown and "data directory\n" in shown
    hidden = parser_for(show_defaults=False)[0].format_help()
    assert "default" not in hidden


def test_skip_leaves_a_field_to_the_caller():
    parser, added = parser_for(skip=("epochs",))
    assert "epochs" not in added
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "2"])


def test_a_field_without_help_is_a_programming_error():
    @dataclass
    class NoHelp:
        size: int = 1

    with pytest.raises(TypeError, match="NoHelp.size has no help"):
        parser_for(NoHelp)
