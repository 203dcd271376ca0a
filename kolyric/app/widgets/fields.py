"""One labelled form field with its own error line, shared by the decoding controls and the
training form: both validate the same way and mark a bad field the same way.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static


class FieldRow(Vertical):
    """A label, an Input (or a Select for fields with choices) and an error line."""

    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow > Horizontal { height: 1; }
    FieldRow Label.field-label { width: 21; color: $text-muted; }
    FieldRow Input, FieldRow Select { width: 1fr; }
    FieldRow .field-error { display: none; color: $error; padding-left: 2; height: auto; }
    FieldRow.-invalid .field-error { display: block; }
    FieldRow.-invalid Label.field-label { color: $error; text-style: bold; }
    FieldRow.-invalid Input { background: $error 20%; }
    """

    def __init__(self, name: str, label: str, value: Any, *, help: str = "",
                 placeholder: str = "", choices: tuple[str, ...] | None = None,
                 prefix: str = "field") -> None:
        super().__init__(id=f"{prefix}-row-{name}")
        self.field_name = name
        self.label_text = label
        self.help = help
        self.choices = choices
        if choices:
            self.control: Input | Select = Select([(c, c) for c in choices], value=value,
                                                  allow_blank=False, compact=True,
                                                  id=f"{prefix}-{name}")
        else:
            self.control = Input("" if value is None else str(value), placeholder=placeholder,
                                 compact=True, id=f"{prefix}-{name}", select_on_focus=False)
        self.control.tooltip = help or None
        self.error = Static("", classes="field-error", id=f"{prefix}-error-{name}")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.label_text, classes="field-label")
            yield self.control
        yield self.error

    @property
    def raw_value(self) -> Any:
        return self.control.value

    def set_value(self, value: Any) -> None:
        if isinstance(self.control, Select):
            self.control.value = value
        else:
            self.control.value = "" if value is None else str(value)

    def set_error(self, message: str | None) -> None:
        self.set_class(bool(message), "-invalid")
        self.error.update(f"⚠ {message}" if message else "")

    @property
    def invalid(self) -> bool:
        return self.has_class("-invalid")
