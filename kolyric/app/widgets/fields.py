"""One labelled form field, shared by the decoding controls and the training form: both
validate the same way and mark a bad field the same way.

A bad field's row turns red and keeps its height; the message itself goes to the form's
``ProblemsBox``, which sits below the fields. A form whose rows grew an error line each would
move every row below under the pointer as the user types, and the next click would land on
the wrong field.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static

from kolyric.app.guard import Guarded

MESSAGE_CHARS = 160  # a message quoting what was typed stays one or two lines however long that was


class FieldRow(Guarded, Vertical):
    """A label and an Input (or a Select for fields with choices); ``message`` when invalid."""

    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow > Horizontal { height: 1; }
    FieldRow Label.field-label { width: 21; color: $text-muted; }
    FieldRow Input, FieldRow Select { width: 1fr; }
    FieldRow.-invalid Label.field-label { color: $error; text-style: bold; }
    FieldRow.-invalid Input { background: $error 20%; }
    """

    def __init__(
        self,
        name: str,
        label: str,
        value: Any,
        *,
        help: str = "",
        placeholder: str = "",
        choices: tuple[str, ...] | None = None,
        prefix: str = "field",
    ) -> None:
        super().__init__(id=f"{prefix}-row-{name}")
        self.field_name = name
        self.label_text = label
        self.help = help
        self.choices = choices
        self.message: str | None = None
        if choices:
            self.control: Input | Select = Select(
                [(c, c) for c in choices], value=value, allow_blank=False, compact=True, id=f"{prefix}-{name}"
            )
        else:
            self.control = Input(
                "" if value is None else str(value),
                placeholder=placeholder,
                compact=True,
                id=f"{prefix}-{name}",
                select_on_focus=False,
            )
        self.control.tooltip = help or None
        self.label = Label(label, classes="field-label")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield self.label
            yield self.control

    @property
    def raw_value(self) -> Any:
        return self.control.value

    def set_value(self, value: Any) -> None:
        if isinstance(self.control, Select):
            self.control.value = value
        else:
            self.control.value = "" if value is None else str(value)

    def set_error(self, message: str | None) -> None:
        self.message = shorten(message) if message else None
        self.set_class(bool(message), "-invalid")
        self.control.tooltip = f"⚠ {self.message}" if self.message else (self.help or None)

    @property
    def invalid(self) -> bool:
        return self.has_class("-invalid")


def shorten(message: str, limit: int = MESSAGE_CHARS) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


class ProblemsBox(Guarded, Static):
    """The messages of a form's bad fields, one line each, below the fields (docked: rows above
    never move when it changes)."""

    DEFAULT_CSS = """
    ProblemsBox { dock: bottom; height: auto; max-height: 4; color: $error; display: none; }
    ProblemsBox.-shown { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.lines: list[str] = []

    def show_rows(self, rows: list[FieldRow]) -> None:
        lines = [f"⚠ {row.label_text}: {row.message}" for row in rows if row.message]
        if lines == self.lines:
            return
        self.lines = lines
        self.update(Text("\n".join(lines)))
        self.set_class(bool(lines), "-shown")
        # Docked over the form's foot, the box would cover the field being typed in, the very one
        # it speaks of: once it is laid out, the form scrolls that field back into view.
        focused = self.screen.focused if self.is_attached else None
        if focused is not None and self.parent is not None and self.parent in focused.ancestors:
            self.call_after_refresh(focused.scroll_visible, animate=False)


class CalmFocus:
    """For a Screen: keyboard focus scrolls a form only as far as it must to show the field.
    Textual centres the focused widget, so moving through a form jumps it about under the
    pointer."""

    def set_focus(self, widget: Widget | None, scroll_visible: bool = True, from_app_focus: bool = False) -> None:
        super().set_focus(widget, scroll_visible=False, from_app_focus=from_app_focus)  # type: ignore[misc]
        if scroll_visible and widget is not None:

            def reveal() -> None:
                if self.focused is widget:  # type: ignore[attr-defined]
                    widget.scroll_visible(animate=False)

            self.call_later(reveal)  # type: ignore[attr-defined]
