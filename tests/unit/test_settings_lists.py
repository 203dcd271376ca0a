"""The text-holding decoding controls: stop strings, keep_stop, banned phrases, phrase bias and the
inspector's alternatives. Every form they arrive in (code, JSON, CLI flags, one line of text) gives
the same settings, and every bad value is one message naming the field and what is valid."""

import argparse
import json

import pytest

from kolyric.cli.options import add_decoding_arguments, decoding_overrides
from kolyric.engine.settings import DecodingSettings, SettingsError, preset, text_form
from kolyric.engine.settings_fields import FIELDS
from kolyric.engine.settings_lists import split_text, to_text

TEXTUAL = ("stop", "keep_stop", "ban", "bias", "alternatives")


def test_defaults_are_off():
    s = DecodingSettings()
    assert (s.stop, s.keep_stop, s.ban, s.bias, s.alternatives) == ((), False, (), (), 5)


def test_code_json_and_text_forms_agree():
    from_code = DecodingSettings(
        stop=["\n\n", "끝"], keep_stop=True, ban=["눈물"], bias={"사랑": -2, "그대": 1.5}, alternatives=8
    )
    from_text = DecodingSettings.from_dict(
        {"stop": "\\n\\n|끝", "keep_stop": "on", "ban": "눈물", "bias": "사랑=-2|그대=1.5", "alternatives": "8"}
    )
    assert from_code == from_text
    assert from_code.bias == (("사랑", -2.0), ("그대", 1.5)) and from_code.bias_map == {"사랑": -2.0, "그대": 1.5}
    data = json.loads(json.dumps(from_code.to_dict(), ensure_ascii=False))
    assert data["stop"] == ["\n\n", "끝"] and data["bias"] == {"사랑": -2.0, "그대": 1.5}
    assert DecodingSettings.from_dict(data) == from_code
    texts = {name: text_form(name, getattr(from_code, name)) for name in TEXTUAL}
    assert texts["stop"] == "\\n\\n|끝" and texts["keep_stop"] == "on"
    assert DecodingSettings.from_dict(texts) == from_code
    hash(from_code)  # an instance stays hashable


def test_text_form_escapes_round_trip():
    items = ("a|b", "back\\slash", "줄\n바꿈", "\t")
    assert split_text(to_text(items)) == list(items)
    assert split_text("") == [] and split_text("a||b") == ["a", "", "b"]


def test_cli_flags_repeat_and_unescape():
    parser = argparse.ArgumentParser()
    add_decoding_arguments(parser)
    args = parser.parse_args(
        [
            "--stop",
            "\\n",
            "--stop",
            "끝",
            "--ban",
            "눈물",
            "--bias",
            "사랑=-2",
            "--bias",
            "a=b=1",
            "--keep-stop",
            "--alternatives",
            "3",
        ]
    )
    s = preset("combined", **decoding_overrides(args))
    assert s.stop == ("\n", "끝") and s.ban == ("눈물",) and s.keep_stop is True and s.alternatives == 3
    assert s.bias == (("사랑", -2.0), ("a=b", 1.0))  # the last '=' divides
    off = preset("combined", **decoding_overrides(parser.parse_args(["--keep-stop", "off"])))
    assert off.keep_stop is False


@pytest.mark.parametrize(
    "field,bad,why",
    [
        ("stop", [""], "item 1 is an empty string"),
        ("stop", ["x"] * 17, "got 17 items"),
        ("stop", ["x" * 65], "item 1 has 65 characters"),
        ("stop", 3, "got int"),
        ("ban", ["ok", 7], "item 2 is int"),
        ("ban", ["\ud800"], "unpaired surrogate"),
        ("bias", "사랑", "has no '='"),
        ("bias", "사랑=x", "is 'x'"),
        ("bias", {"사랑": 101}, "is 101"),
        ("bias", {"사랑": float("nan")}, "the bias of '사랑'"),
        ("bias", {"": 1}, "empty string"),
        ("keep_stop", "maybe", "got 'maybe'"),
        ("alternatives", 0, "got 0"),
        ("alternatives", 21, "got 21"),
    ],
)
def test_bad_values_name_field_and_range(field, bad, why):
    with pytest.raises(SettingsError) as info:
        DecodingSettings.from_dict({field: bad})
    [problem] = info.value.problems
    assert problem.field == field
    assert FIELDS[field].describe_range() in problem.message and why in problem.message
    json.dumps(problem.to_dict(), allow_nan=False)


def test_duplicates_collapse_and_last_bias_wins():
    s = DecodingSettings.from_dict({"stop": ["끝", "끝"], "bias": "사랑=1|사랑=-3"})
    assert s.stop == ("끝",) and s.bias == (("사랑", -3.0),)
