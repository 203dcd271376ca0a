"""Training settings come from one place: TrainConfig's fields give `kolyric train` its flags and
the app's training form its fields, with the same defaults, ranges and messages."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from kolyric.app.training_form import DEFAULTS, TRAIN_FIELDS, parse_form
from kolyric.cli.train import add_arguments, config_from_args
from kolyric.engine.window import context_window
from kolyric.training.config import FINETUNE_LR, SETTINGS, TrainConfig, check_setting


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kolyric train")
    add_arguments(p)
    return p


def test_no_flags_give_train_configs_defaults():
    assert config_from_args(parser().parse_args([])) == TrainConfig()


def test_every_setting_with_a_flag_has_one_and_takes_its_kind():
    dests = {action.dest for action in parser()._actions}
    for f in fields(TrainConfig):
        assert (f.name in dests) == SETTINGS[f.name].flag, f.name
    args = parser().parse_args(
        [
            "--max-seq-length",
            "64",
            "--lr",
            "2e-4",
            "--no-group-by-length",
            "--corpus",
            "a.txt",
            "--corpus",
            "b.txt,repeat=3",
            "--resume",
        ]
    )
    config = config_from_args(args)
    assert (config.max_seq_length, config.lr, config.group_by_length) == (64, 2e-4, False)
    assert config.corpus == ["a.txt", "b.txt,repeat=3"] and config.resume == "last"


@pytest.mark.parametrize("name", sorted(TRAIN_FIELDS))
def test_the_form_and_the_cli_refuse_the_same_values_with_the_same_range(name, tmp_path):
    spec = SETTINGS[name]
    assert TRAIN_FIELDS[name] is spec
    assert DEFAULTS[name] == (FINETUNE_LR if name == "lr" else getattr(TrainConfig(), name))
    base = {"corpus": "nsmc", "model": "any", **{k: "" if v is None else str(v) for k, v in DEFAULTS.items()}}
    outside = [spec.low - 1 if spec.kind is int else spec.low, spec.high + 1 if spec.kind is int else spec.high * 2]
    for value in outside:
        _, problems = parse_form({**base, name: str(value)}, data_dir=tmp_path)
        assert [p.field for p in problems] == [name]
        assert spec.describe_range() in problems[0].message
        cli = check_setting(name, value)
        assert cli is not None and cli.startswith(f"--{name.replace('_', '-')}: must be {spec.describe_range()}")
        assert cli in TrainConfig(**{name: value}).problems()
    for value in (spec.low if not spec.low_open else spec.high, spec.high):
        _, problems = parse_form({**base, name: str(value)}, data_dir=tmp_path)
        assert problems == [] and check_setting(name, value) is None


def test_max_seq_length_has_one_range(tmp_path):
    assert check_setting("max_seq_length", 1) == "--max-seq-length: must be an integer in [2, 8192], got 1"
    _, problems = parse_form(
        {
            "corpus": "nsmc",
            "model": "any",
            **{k: "" if v is None else str(v) for k, v in DEFAULTS.items()},
            "max_seq_length": "9000",
        },
        data_dir=tmp_path,
    )
    assert [str(p) for p in problems] == ["max_seq_length: must be an integer in [2, 8192], got '9000'"]
    assert check_setting("max_seq_length", True) is not None  # a bool is no integer here


@pytest.mark.parametrize(
    "config, window",
    [
        ({"n_positions": 64}, 64),
        ({"max_position_embeddings": 2048}, 2048),
        ({"n_ctx": 512}, 512),
        ({"n_positions": None, "max_position_embeddings": 256}, 256),
        ({}, 1024),
        ({"n_positions": 0}, 1024),
    ],
)
def test_a_models_window_is_read_one_way(config, window):
    assert context_window(argparse.Namespace(**config)) == window
    assert context_window(None, default=7) == 7
