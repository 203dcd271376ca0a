"""Every decoding control added for samplers, stop strings, bans and phrase bias goes through each
way in and out unchanged: CLI flags, the app's controls panel (as typed, and as a draft saves
and restores it), an export record, and the server's request body; bad values are refused
with the field and its range everywhere."""

from __future__ import annotations

import json

import pytest

from kolyric.cli import build_parser
from kolyric.cli.generate import build_request
from kolyric.engine.settings import DecodingSettings, preset, text_form
from kolyric.engine.settings_fields import FIELDS
from kolyric.serve.problems import RequestError
from kolyric.serve.schema import parse_generation

NEW_FIELDS = (
    "min_p",
    "typical_p",
    "epsilon",
    "eta",
    "top_n_sigma",
    "xtc_probability",
    "xtc_threshold",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_breakers",
    "dynatemp_range",
    "dynatemp_exponent",
    "mirostat_tau",
    "mirostat_eta",
    "stop",
    "keep_stop",
    "ban",
    "bias",
    "alternatives",
)

CHANGED = {
    "min_p": 0.07,
    "typical_p": 0.9,
    "epsilon": 0.0003,
    "eta": 0.0009,
    "top_n_sigma": 1.5,
    "xtc_probability": 0.4,
    "xtc_threshold": 0.15,
    "dry_multiplier": 0.8,
    "dry_base": 2.5,
    "dry_allowed_length": 3,
    "dry_breakers": ("\n", "|", "。"),
    "dynatemp_range": 0.4,
    "dynatemp_exponent": 1.5,
    "mirostat_tau": 4.5,
    "mirostat_eta": 0.2,
    "stop": ("\n\n", "끝|"),
    "keep_stop": True,
    "ban": ("눈물", "a=b"),
    "bias": (("사랑", -2.0), ("그대", 1.25)),
    "alternatives": 9,
}


@pytest.fixture(scope="module")
def wanted() -> DecodingSettings:
    return preset("combined", seed=7, **CHANGED)


def test_every_new_field_is_changed_here(wanted):
    assert set(NEW_FIELDS) <= set(FIELDS) and set(CHANGED) == set(NEW_FIELDS)
    defaults = DecodingSettings()
    assert all(getattr(wanted, name) != getattr(defaults, name) for name in NEW_FIELDS)


def cli_args(settings: DecodingSettings) -> list[str]:
    args = ["generate", "사랑해", "--preset", "combined", "--seed", str(settings.seed)]
    for name in NEW_FIELDS:
        flag = "--" + name.replace("_", "-")
        value = getattr(settings, name)
        if isinstance(value, bool):
            args += [flag, "on" if value else "off"]
        elif name == "bias":
            for phrase, number in value:
                args += [flag, f"{phrase}={number}"]
        elif isinstance(value, tuple):
            for item in value:
                args += [flag, item.replace("\\", "\\\\").replace("\n", "\\n")]
        else:
            args += [flag, str(value)]
    return args


def test_cli_flags(wanted):
    args = build_parser("generate").parse_args(cli_args(wanted))
    assert build_request(args).settings == wanted


def test_bad_cli_values_name_the_range():
    from kolyric.cli import CLIError

    args = build_parser("generate").parse_args(
        ["generate", "x", "--min-p", "2", "--bias", "사랑=lots", "--dry-allowed-length", "0"]
    )
    with pytest.raises(CLIError) as info:
        build_request(args)
    message = str(info.value)
    lines = {line.strip().split(":", 1)[0]: line.strip() for line in message.splitlines()[1:]}
    for name in ("min_p", "bias", "dry_allowed_length"):
        assert f"must be {FIELDS[name].describe_range()}" in lines[name]
    assert lines["bias"].startswith("bias: the bias of '사랑' is 'lots'; must be")  # what is wrong, first


def test_app_text_fields_and_draft_values(wanted):
    from kolyric.app.widgets.control_values import restore_settings

    typed = {name: text_form(name, value) for name, value in wanted.to_dict().items()}
    assert DecodingSettings.from_dict(typed) == wanted  # what the panel's fields read back
    saved = json.loads(json.dumps(wanted.to_dict(), ensure_ascii=False))  # a draft file's JSON
    assert restore_settings(preset("greedy"), saved) == wanted
    assert restore_settings(preset("greedy"), {**saved, "from_preset": "combined"}) == wanted  # not a control
    # a bad field in a saved draft is left at the preset's value; the others are restored
    saved["min_p"], saved["from_a_later_version"] = 7, 1
    restored = restore_settings(preset("combined"), saved)
    assert restored.min_p == 0.0 and restored.bias == wanted.bias and restored.stop == wanted.stop


def test_draft_file(wanted, tmp_path):
    from kolyric.app.drafts import Draft
    from kolyric.app.widgets.control_values import restore_settings

    text = Draft("가사", settings=tuple(wanted.to_dict().items())).to_json()
    draft, set_aside = Draft.read(text)
    assert set_aside == [] and restore_settings(preset("greedy"), dict(draft.settings)) == wanted
    # a number too long to read is set aside by name; the lyrics and the other controls stay
    poisoned = text.replace('"min_p": 0.07', '"min_p": ' + "9" * 5000)
    draft, set_aside = Draft.read(poisoned)
    assert draft.text == "가사" and [line.split(":")[0] for line in set_aside] == ["settings.min_p"]
    restored = restore_settings(preset("combined"), dict(draft.settings))
    assert restored.min_p == 0.0 and restored.bias == wanted.bias


def test_export_record(wanted):
    from kolyric.app.session import HistoryEntry

    entry = HistoryEntry("text", "사랑해", None, "sample · seed 7", settings=wanted.to_dict())
    record = json.loads(json.dumps(entry.to_dict(), ensure_ascii=False))  # as an export writes it
    assert DecodingSettings.from_dict(record["settings"]) == wanted


def test_server_body(wanted):
    nested = parse_generation({"prompt": "사랑해", "settings": wanted.to_dict()}).request.settings
    assert nested == wanted
    top = parse_generation({"prompt": "사랑해", **json.loads(json.dumps(wanted.to_dict()))}).request.settings
    assert top == wanted
    with pytest.raises(RequestError) as info:
        parse_generation({"prompt": "x", "typical_p": 0, "stop": [""], "bias": {"사랑": 500}, "keep_stop": "maybe"})
    assert info.value.status == 422
    problems = {p.field: p.to_dict() for p in info.value.problems}
    for name in ("typical_p", "stop", "bias", "keep_stop"):
        assert problems[name]["valid"] == FIELDS[name].describe_range()
        assert FIELDS[name].describe_range() in problems[name]["message"]


def test_server_schema_lists_every_new_field():
    from kolyric.serve.describe import settings_schema

    schema = settings_schema()["settings"]
    assert schema["bias"]["type"] == "object of phrase: number" and schema["stop"]["max_items"] == 16
    assert schema["min_p"]["valid"] == FIELDS["min_p"].describe_range()
    json.dumps(schema, allow_nan=False)


@pytest.mark.anyio
async def test_controls_panel_shows_and_reads_back_every_field(wanted):
    """The panel itself: restored from a draft's values, its fields hold the text forms, and
    reading them validates back to the same settings."""
    from textual.app import App
    from textual.reactive import var

    from kolyric.app.widgets.controls import ControlsPanel

    class Harness(App):
        model_window: var[int | None] = var(None)

        def compose(self):
            yield ControlsPanel("combined", settings={**wanted.to_dict(), "from_preset": "combined"}, id="controls")

        def settle_cursors(self, node: object) -> None:
            pass

    app = Harness()
    async with app.run_test(size=(100, 60)) as pilot:
        panel = app.query_one(ControlsPanel)
        await pilot.pause()
        await pilot.pause()
        assert panel.ready
        assert panel.rows["bias"].raw_value == "사랑=-2|그대=1.25"
        assert panel.rows["keep_stop"].raw_value == "on"
        assert panel.validate()
        assert panel.settings == wanted
        assert panel.settings_values() == {**wanted.to_dict(), "from_preset": "combined"}
        # saved under another preset than the one starting now (a --preset flag): not restored
        assert ControlsPanel("greedy", settings=panel.settings_values()).settings == preset("greedy")
        panel.apply_preset("beam-3")
        assert panel.settings_values()["from_preset"] == "beam-3"
        panel.set_values(bias="사랑=-2|그대=x")
        assert not panel.valid and any(p.field == "bias" for p in panel.problems)
