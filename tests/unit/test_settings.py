"""Decoding settings: ranges, coercion, every problem reported, presets."""

import math

import pytest

from kolyric.engine.settings import DEFAULT_PRESET, PRESETS, DecodingSettings, SettingsError, preset
from kolyric.engine.settings_fields import FIELDS


def problems_of(values, base=None):
    with pytest.raises(SettingsError) as info:
        DecodingSettings.from_dict(values, base=base)
    return {p.field: p for p in info.value.problems}


@pytest.mark.parametrize(
    "field,bad",
    [
        ("top_p", 0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("temperature", 0),
        ("temperature", -2),
        ("repetition_penalty", 0.5),
        ("no_repeat_ngram_size", 11),
        ("min_length", -1),
        ("max_length", 0),
        ("max_length", 5000),
        ("num_beams", 1),
        ("seed", -1),
        ("seed", 2**40),
        ("n", 0),
        ("n", 99),
        ("strategy", "nucleus"),
        ("temperature", math.nan),
        ("top_p", math.inf),
        ("top_k", 2.5),
        ("n", True),
        ("top_k", "many"),
    ],
)
def test_each_bad_value_names_field_value_and_range(field, bad):
    found = problems_of({field: bad})
    assert field in found
    problem = found[field]
    info = problem.to_dict()
    assert info["field"] == field
    assert info["valid"] == FIELDS[field].describe_range()
    assert FIELDS[field].describe_range() in problem.message
    assert "got" in problem.message


def test_every_problem_is_reported_at_once():
    found = problems_of({"top_p": 3, "temperature": "hot", "n": 0, "bogus": 1})
    assert set(found) == {"top_p", "temperature", "n", "bogus"}
    assert "unknown setting" in found["bogus"].message


def test_cross_field_rules():
    assert "min_length" in problems_of({"min_length": 50, "max_length": 10})
    assert "n" in problems_of({"strategy": "greedy", "n": 2})
    assert "n" in problems_of({"strategy": "beam", "num_beams": 2, "n": 3})


def test_strings_from_cli_and_forms_are_coerced():
    s = DecodingSettings.from_dict({"top_p": "0.9", "top_k": "40", "seed": "", "max_length": "12.0"})
    assert (s.top_p, s.top_k, s.seed, s.max_length) == (0.9, 40, None, 12)


def test_construction_validates():
    with pytest.raises(SettingsError):
        DecodingSettings(top_p=2.0)


def test_replace_keeps_other_fields():
    s = preset("combined").replace(temperature="1.2")
    assert s.temperature == 1.2 and s.repetition_penalty == 1.5


def test_presets_cover_the_tutorial_runs():
    for name in [
        "greedy",
        "beam-3",
        "no-repeat-3",
        "repetition-1.1",
        "repetition-1.2",
        "repetition-1.5",
        "top-k-50",
        "temperature-0.01",
        "temperature-1.5",
        "top-p-0.92",
        "top-p-0.8",
        "combined",
    ]:
        assert name in PRESETS
        preset(name)  # each is valid
    combined = preset("combined")
    assert (
        combined.repetition_penalty,
        combined.no_repeat_ngram_size,
        combined.temperature,
        combined.top_k,
        combined.top_p,
        combined.strategy,
    ) == (1.5, 3, 0.9, 50, 0.92, "sample")
    assert preset("beam-3").num_beams == 3 and preset("beam-3").strategy == "beam"
    assert DEFAULT_PRESET in PRESETS


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SettingsError) as info:
        preset("wild")
    assert "combined" in str(info.value)


def test_notes_say_which_controls_do_nothing():
    assert any("temperature" in n for n in preset("greedy", temperature=0.5).notes())
    assert preset("combined").notes() == []


def test_the_settings_summary_names_every_control_the_strategy_reads():
    """The tree's preview line: the strategy's own knobs, then whatever was set away from its
    default (min-p, DRY, bans, bias …), read from a stored (JSON) settings mapping."""
    import json

    from kolyric.engine.settings import summary

    made = preset("combined", min_p=0.1, dry_multiplier=0.8, ban=("밤",), bias={"사랑": -2.0}, seed=7)
    line = summary(json.loads(json.dumps(made.to_dict())))
    assert line.startswith("strategy sample, top_k 50")
    for part in ("min_p 0.1", "dry_multiplier 0.8", "ban 밤", "bias 사랑=-2", "temperature 0.9"):
        assert part in line, (part, line)
    assert "num_beams" not in line and "seed" not in line
    greedy = summary(preset("greedy", min_p=0.2, repetition_penalty=1.3).to_dict())
    assert greedy == "strategy greedy, repetition_penalty 1.3"  # min-p does nothing under greedy
    assert summary(preset("beam-3").to_dict()) == "strategy beam, num_beams 3"
    assert summary({"strategy": "sample", "temperature": 1.2}) == "strategy sample, temperature 1.2"  # an older file
