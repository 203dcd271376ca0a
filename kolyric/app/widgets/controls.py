"""The decoding controls: one field per entry of ``kolyric.engine.settings.FIELDS``, plus
the presets, then the lyric constraints (syllables, rhyme, lines, strict … of
``kolyric.engine.constraints.LyricConstraints``). Every edit is validated with
``DecodingSettings.from_dict`` and ``LyricConstraints.from_dict``; a bad value marks its field
with the message and the valid range, and the panel reports the problems (the playground then
refuses to generate). Valid settings and constraints are posted as ``SettingsChanged``.
The fields' definitions and the checks on values before conversion are ``control_values``'s.

With a model loaded, a ``max_length`` beyond its window is noted: the window, not
``max_length``, then ends a long candidate.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Label, Select, Static

from kolyric.app.guard import Guarded
from kolyric.app.messages import PresetChosen, SettingsChanged
from kolyric.app.widgets.control_values import (
    CONSTRAINT_FIELDS,
    CUSTOM,
    SAVED_PRESET,
    SWITCH,
    FieldProblem,
    field_choices,
    field_placeholder,
    matching_preset,
    oversized,
    problem_text,
    restore_settings,
    shown_value,
)
from kolyric.app.widgets.fields import FieldRow, ProblemsBox
from kolyric.engine.lyric.spec import ConstraintError, ConstraintProblem, LyricConstraints
from kolyric.engine.settings import PRESETS, DecodingSettings, Problem, SettingsError, preset
from kolyric.engine.settings_fields import FIELDS
from kolyric.korean import RhymeOptions


class ControlsPanel(Guarded, VerticalScroll):
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

    def __init__(
        self,
        preset_name: str,
        *,
        constraints: dict[str, str] | None = None,
        settings: dict[str, object] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        known = {spec.name for spec in CONSTRAINT_FIELDS}
        # the constraint fields as the draft saved them (unknown names from other versions dropped)
        self.initial_constraints = {k: v for k, v in (constraints or {}).items() if k in known}
        self.border_title = "Controls"
        try:
            self.settings = preset(preset_name)
            self.preset_name = preset_name
        except SettingsError:
            self.settings = preset("combined")
            self.preset_name = "combined"
        # the decoding controls a draft saved (settings_values), when they were made from the
        # preset starting now: a preset chosen for this session (a flag) starts from the preset
        if settings and settings.get(SAVED_PRESET) == self.preset_name:
            self.settings = restore_settings(self.settings, settings)
        self.problems: list[FieldProblem] = []  # settings Problems, then ConstraintProblems
        self.rows: dict[str, FieldRow] = {}
        self.constraint_rows: dict[str, FieldRow] = {}
        self.constraints: LyricConstraints | None = None  # None: nothing is asked for
        self.rhyme_options = RhymeOptions()
        self.ready = False  # True once the fields are mounted
        self.window: int | None = None  # the loaded model's context window, in tokens

    def compose(self) -> ComposeResult:
        current = matching_preset(self.settings) or CUSTOM
        yield Label("preset")
        yield Select(
            [(name, name) for name in (*PRESETS, CUSTOM)],
            value=current,
            allow_blank=False,
            compact=True,
            id="ctl-preset",
        )
        yield ProblemsBox(id="ctl-problems")

    def on_mount(self) -> None:
        # The fields are mounted just after the first frame: the playground paints sooner.
        self.call_after_refresh(self._mount_fields)
        self.watch(self.app, "model_window", self.set_window)

    def _mount_fields(self) -> None:
        values = self.settings.to_dict()
        for name, spec in FIELDS.items():
            self.rows[name] = FieldRow(
                name,
                name,
                shown_value(name, values[name]),
                help=spec.help,
                prefix="ctl",
                placeholder=field_placeholder(spec),
                choices=field_choices(spec),
            )
        for spec in CONSTRAINT_FIELDS:
            value = self.initial_constraints.get(spec.name, spec.default)
            if spec.choices:
                value = value.strip().lower()
                value = value if value in spec.choices else spec.default
            self.constraint_rows[spec.name] = FieldRow(
                spec.name,
                spec.label,
                value,
                help=spec.help,
                prefix="ctl",
                placeholder=spec.placeholder,
                choices=spec.choices,
            )
        self.mount_all(
            [
                *self.rows.values(),
                Label("lyric constraints", classes="ctl-heading"),
                *self.constraint_rows.values(),
                Static("", id="ctl-notes"),
            ]
        )
        self.app.settle_cursors(self)  # type: ignore[attr-defined]
        self.ready = True
        if self.initial_constraints:  # restored from the draft: check them and make them current
            self.validate()

    # -- reading and checking ------------------------------------------------------------------
    def raw_values(self) -> dict[str, object]:
        return {name: row.raw_value for name, row in self.rows.items()}

    def raw_constraints(self) -> dict[str, object]:
        return {name: row.raw_value for name, row in self.constraint_rows.items()}

    def settings_values(self) -> dict[str, object]:
        """The decoding controls in their JSON form (``DecodingSettings.to_dict``) and the preset
        they were made from: what a draft saves and ``ControlsPanel(settings=…)`` restores."""
        return {**self.settings.to_dict(), SAVED_PRESET: self.preset_name}

    def changed_constraints(self) -> dict[str, str]:
        """The constraint fields that differ from their defaults, as typed (what a draft saves)."""
        if not self.ready:
            return dict(self.initial_constraints)
        changed = {}
        for spec in CONSTRAINT_FIELDS:
            value = self.constraint_rows[spec.name].raw_value
            # a Select holds no string while it is (un)mounted: nothing to save then
            if isinstance(value, str) and value != spec.default and (not spec.choices or value in spec.choices):
                changed[spec.name] = value
        return changed

    def all_rows(self) -> dict[str, FieldRow]:
        return {**self.rows, **self.constraint_rows}

    def validate(self) -> bool:
        """Check every field; mark the bad ones; post SettingsChanged. True when valid."""
        if not self.ready:
            return True
        values, constraints = self.raw_values(), self.raw_constraints()
        problems: list[FieldProblem] = oversized(values, constraints)
        skip = {p.field for p in problems}  # never converted
        values = {k: v for k, v in values.items() if k not in skip}
        constraints = {k: v for k, v in constraints.items() if k not in skip}
        try:
            self.settings = DecodingSettings.from_dict(values)
        except SettingsError as exc:
            problems += exc.problems
        except (ValueError, OverflowError) as exc:  # a value the checks above did not foresee
            problems.append(Problem("max_length" if not values else next(iter(values)), None, str(exc)[:120]))
        try:
            made = LyricConstraints.from_dict(constraints)
        except ConstraintError as exc:
            problems += exc.problems
        except (ValueError, OverflowError) as exc:
            problems.append(ConstraintProblem(next(iter(constraints), "syllables"), None, str(exc)[:120]))
        else:
            self.constraints = made if made.active else None
        self.rhyme_options = self._rhyme_options(constraints) or self.rhyme_options
        self.problems = problems
        bad = {p.field: problem_text(p) for p in reversed(self.problems)}
        for field_name, row in self.all_rows().items():
            row.set_error(bad.get(field_name))
        self.query_one("#ctl-problems", ProblemsBox).show_rows(list(self.all_rows().values()))
        self._show_notes()
        name = None if any(p.field in FIELDS for p in self.problems) else matching_preset(self.settings)
        select = self.query_one("#ctl-preset", Select)
        with self.prevent(Select.Changed):
            select.value = name or CUSTOM
        self.post_message(SettingsChanged(self.settings, list(self.problems), name))
        return not self.problems

    def _show_notes(self) -> None:
        notes = self.query_one("#ctl-notes", Static)
        if self.problems:
            notes.update("")
            return
        wanted = [f"constrained: {self.constraints.describe()}"] if self.constraints else []
        window = self.window
        if window is not None and self.settings.max_length >= window:
            wanted.append(
                f"max_length {self.settings.max_length} is beyond the model's window of {window} "
                f"tokens: the prompt and the new tokens share it, so the window ends a long "
                f"candidate (and a long prompt is cut from its start to make room)"
            )
        notes.update("\n".join([*self.settings.notes(), *wanted]))

    def set_window(self, window: int | None) -> None:
        """The loaded model's context window (None: no model): its limit is noted in the panel."""
        self.window = window
        if self.ready:
            self._show_notes()

    def _rhyme_options(self, constraints: dict[str, object]) -> RhymeOptions | None:
        """The rhyme options the gutter shows, from their own fields alone: a mistake in any
        other field must not freeze the gutter. None while one of them is invalid (or was too
        long to check, and so is not in ``constraints``)."""
        names = ("rhyme_syllables", "strict", "families")
        if any(name not in constraints for name in names):
            return None
        try:
            made = LyricConstraints.from_dict({name: constraints[name] for name in names})
        except (ValueError, OverflowError):  # ConstraintError, or a value the checks did not foresee
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
        self.preset_name = name
        with self.prevent(Input.Changed, Select.Changed):
            for field_name, row in self.rows.items():
                row.set_value(shown_value(field_name, values[field_name]))
        self.validate()
        self.post_message(PresetChosen(name))

    def set_values(self, **values: object) -> None:
        """Set some fields, decoding or constraint (as if typed), and validate once."""
        rows = self.all_rows()
        with self.prevent(Input.Changed, Select.Changed):
            for field_name, value in values.items():
                if isinstance(value, bool) and field_name in self.constraint_rows:
                    value = SWITCH[value]
                elif field_name in self.rows:
                    value = shown_value(field_name, value)
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
