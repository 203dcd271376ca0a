"""The decoding controls: one field per entry of ``kolyric.engine.settings.FIELDS``, plus
the presets, then the lyric constraints (syllables, rhyme, lines, strict … of
``kolyric.engine.constraints.LyricConstraints``). Every edit is validated with
``DecodingSettings.from_dict`` and ``LyricConstraints.from_dict``; a bad value marks its field
with the message and the valid range, and the panel reports the problems (the playground then
refuses to generate). Valid settings and constraints are posted as ``SettingsChanged``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Label, Select, Static

from kolyric.app.messages import PresetChosen, SettingsChanged
from kolyric.app.widgets.fields import FieldRow
from kolyric.engine.constraints import RANGES, ConstraintError, LyricConstraints
from kolyric.engine.settings import FIELDS, PRESETS, DecodingSettings, SettingsError, preset
from kolyric.korean import RhymeOptions

CUSTOM = "custom"
SWITCH = ("off", "on")


@dataclass(frozen=True)
class ConstraintField:
    """How one ``LyricConstraints`` field shows in the panel (its checks live in constraints.py)."""

    name: str
    label: str
    help: str
    placeholder: str = ""
    choices: tuple[str, ...] | None = None
    default: str = ""


CONSTRAINT_FIELDS = (
    ConstraintField("syllables", "syllables/line", "every generated line has exactly this many syllables "
                    f"({RANGES['syllables']}); Ctrl+T takes the cursor line's", "off · 1–40"),
    ConstraintField("rhyme", "rhyme with", "the generated line's last syllable(s) rhyme with this "
                    f"({RANGES['rhyme']}); Ctrl+T takes the cursor line's", "off · e.g. 랑"),
    ConstraintField("lines", "lines", f"how many lines to generate ({RANGES['lines']})", "1 · 1–16"),
    ConstraintField("strict", "strict rhyme", "also match the final consonant (받침)", choices=SWITCH,
                    default="off"),
    ConstraintField("rhyme_syllables", "rhyming syllables", "how many trailing syllables must rhyme "
                    f"({RANGES['rhyme_syllables']}); also what the gutter shows", "1 · 1–3", default="1"),
    ConstraintField("pattern", "syllable pattern", f"syllables per line instead of one count ({RANGES['pattern']})",
                    "off · e.g. 8-8-7-9"),
    ConstraintField("scheme", "rhyme scheme", f"rhyme letters per line ({RANGES['scheme']}); letters before "
                    "the new lines match the draft's last lines", "off · e.g. AABB"),
    ConstraintField("mode", "mode", "next: new lines after the prompt; continue: finish the prompt line",
                    choices=("next", "continue"), default="next"),
)


@lru_cache(maxsize=1)
def _preset_values() -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in preset(name).to_dict().items() if k not in ("seed", "n")}
            for name in PRESETS}


def matching_preset(settings: DecodingSettings) -> str | None:
    """The preset whose values equal ``settings`` (ignoring seed and n), if any."""
    mine = {k: v for k, v in settings.to_dict().items() if k not in ("seed", "n")}
    return next((name for name, theirs in _preset_values().items() if theirs == mine), None)


def problem_text(problem: Any) -> str:
    """A settings ``Problem`` or a ``ConstraintProblem`` as shown under its field."""
    spec = FIELDS.get(problem.field)
    valid = spec.describe_range() if spec is not None else getattr(problem, "valid", "")
    if not valid or "must be" in problem.message:
        return problem.message
    return f"{problem.message} (valid: {valid})"


class ControlsPanel(VerticalScroll):
    """Every decoding control; ``settings`` is the last valid set, ``problems`` the current ones."""

    DEFAULT_CSS = """
    ControlsPanel {
        width: 48;
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    ControlsPanel:focus-within { border: round $primary; border-title-color: $primary; }
    ControlsPanel #ctl-preset { margin-bottom: 1; }
    ControlsPanel #ctl-notes { color: $warning; height: auto; }
    ControlsPanel .ctl-heading { color: $primary; text-style: bold; margin-top: 1; }
    """

    def __init__(self, preset_name: str, *, constraints: dict[str, str] | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        known = {spec.name for spec in CONSTRAINT_FIELDS}
        # the constraint fields as the draft saved them (unknown names from other versions dropped)
        self.initial_constraints = {k: v for k, v in (constraints or {}).items() if k in known}
        self.border_title = "Controls"
        try:
            self.settings = preset(preset_name)
        except SettingsError:
            self.settings = preset("combined")
        self.problems: list[Any] = []  # settings Problems, then ConstraintProblems
        self.rows: dict[str, FieldRow] = {}
        self.constraint_rows: dict[str, FieldRow] = {}
        self.constraints: LyricConstraints | None = None  # None: nothing is asked for
        self.rhyme_options = RhymeOptions()
        self.ready = False  # True once the fields are mounted

    def compose(self) -> ComposeResult:
        current = matching_preset(self.settings) or CUSTOM
        yield Label("preset")
        yield Select([(name, name) for name in (*PRESETS, CUSTOM)], value=current,
                     allow_blank=False, compact=True, id="ctl-preset")

    def on_mount(self) -> None:
        # The fields are mounted just after the first frame: the playground paints sooner.
        self.call_after_refresh(self._mount_fields)

    def _mount_fields(self) -> None:
        values = self.settings.to_dict()
        for name, spec in FIELDS.items():
            self.rows[name] = FieldRow(name, name, values[name], help=spec.help, prefix="ctl",
                                       placeholder="random" if spec.optional else spec.describe_range(),
                                       choices=spec.choices)
        for spec in CONSTRAINT_FIELDS:
            value = self.initial_constraints.get(spec.name, spec.default)
            if spec.choices:
                value = value.strip().lower()
                value = value if value in spec.choices else spec.default
            self.constraint_rows[spec.name] = FieldRow(spec.name, spec.label, value, help=spec.help,
                                                       prefix="ctl", placeholder=spec.placeholder,
                                                       choices=spec.choices)
        self.mount_all([*self.rows.values(), Label("lyric constraints", classes="ctl-heading"),
                        *self.constraint_rows.values(), Static("", id="ctl-notes")])
        if not self.app.cursor_blink:  # type: ignore[attr-defined]
            for row in self.all_rows().values():
                if isinstance(row.control, Input):
                    row.control.cursor_blink = False
        self.ready = True
        if self.initial_constraints:  # restored from the draft: check them and make them current
            self.validate()

    # -- reading and checking ------------------------------------------------------------------
    def raw_values(self) -> dict[str, Any]:
        return {name: row.raw_value for name, row in self.rows.items()}

    def raw_constraints(self) -> dict[str, Any]:
        return {name: row.raw_value for name, row in self.constraint_rows.items()}

    def changed_constraints(self) -> dict[str, str]:
        """The constraint fields that differ from their defaults, as typed (what a draft saves)."""
        if not self.ready:
            return dict(self.initial_constraints)
        return {spec.name: str(value) for spec in CONSTRAINT_FIELDS
                if (value := self.constraint_rows[spec.name].raw_value) not in (spec.default, None)}

    def all_rows(self) -> dict[str, FieldRow]:
        return {**self.rows, **self.constraint_rows}

    def validate(self) -> bool:
        """Check every field; mark the bad ones; post SettingsChanged. True when valid."""
        if not self.ready:
            return True
        problems: list[Any] = []
        try:
            self.settings = DecodingSettings.from_dict(self.raw_values())
        except SettingsError as exc:
            problems += exc.problems
        try:
            made = LyricConstraints.from_dict(self.raw_constraints())
        except ConstraintError as exc:
            problems += exc.problems
        else:
            self.constraints = made if made.active else None
        self.rhyme_options = self._rhyme_options() or self.rhyme_options
        self.problems = problems
        bad = {p.field: problem_text(p) for p in reversed(self.problems)}
        for field_name, row in self.all_rows().items():
            row.set_error(bad.get(field_name))
        notes = self.query_one("#ctl-notes", Static)
        if self.problems:
            notes.update("")
        else:
            wanted = [f"constrained: {self.constraints.describe()}"] if self.constraints else []
            notes.update("\n".join([*self.settings.notes(), *wanted]))
        name = None if any(p.field in FIELDS for p in self.problems) else matching_preset(self.settings)
        select = self.query_one("#ctl-preset", Select)
        with self.prevent(Select.Changed):
            select.value = name or CUSTOM
        self.post_message(SettingsChanged(self.settings, list(self.problems), name))
        return not self.problems

    def _rhyme_options(self) -> RhymeOptions | None:
        """The rhyme options the gutter shows, from their two fields alone: a mistake in any
        other field must not freeze the gutter. None while one of the two is invalid."""
        try:
            made = LyricConstraints.from_dict({name: self.constraint_rows[name].raw_value
                                               for name in ("rhyme_syllables", "strict")})
        except ConstraintError:
            return None
        return made.rhyme_options

    @property
    def valid(self) -> bool:
        return not self.problems

    # -- changing ------------------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        """Set every field from the preset, keeping n and the seed where they still fit."""
        keep = {"seed": self.settings.seed}
        base = preset(name)
        try:
            base = base.replace(n=self.settings.n)
        except SettingsError:
            pass
        values = {**base.to_dict(), **keep}
        with self.prevent(Input.Changed, Select.Changed):
            for field_name, row in self.rows.items():
                row.set_value(values[field_name])
        self.validate()
        self.post_message(PresetChosen(name))

    def set_values(self, **values: Any) -> None:
        """Set some fields, decoding or constraint (as if typed), and validate once."""
        rows = self.all_rows()
        with self.prevent(Input.Changed, Select.Changed):
            for field_name, value in values.items():
                if isinstance(value, bool) and field_name in self.constraint_rows:
                    value = SWITCH[value]
                rows[field_name].set_value(value)
        self.validate()

    @on(Select.Changed, "#ctl-preset")
    def _preset_chosen(self, event: Select.Changed) -> None:
        event.stop()
        # The Select also reports its first value when mounted: only a different preset is a choice.
        if isinstance(event.value, str) and event.value in PRESETS and event.value != matching_preset(self.settings):
            self.apply_preset(event.value)

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.validate()

    @on(Select.Changed)
    def _chosen(self, event: Select.Changed) -> None:
        if event.select.id != "ctl-preset":
            event.stop()
            self.validate()
