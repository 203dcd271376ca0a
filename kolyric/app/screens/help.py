"""F1: the keys of the screen behind, of a candidate card and of the draft, read from their own
bindings (so the list cannot drift from what the keys do), in a dialog that scrolls at 80x24."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from kolyric.app.guard import Guarded

MOVING = (
    ("Tab, Shift+Tab", "the next / previous field, card or panel"),
    ("← → on a card", "select a token: the inspector shows its alternatives"),
    ("Enter (inspector)", "rewrite the candidate from that token with the alternative"),
)


def bindings_of(cls: type) -> list[Binding]:
    """The bindings ``cls`` and its kolyric bases declare (Textual's own widgets' keys are
    Textual's: the palette lists them), the subclass's first, one per key."""
    seen: set[str] = set()
    out = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("kolyric"):
            continue
        for binding in klass.__dict__.get("BINDINGS", ()):
            if isinstance(binding, Binding) and binding.key not in seen and binding.description:
                seen.add(binding.key)
                out.append(binding)
    return out


class HelpScreen(Guarded, ModalScreen[None]):
    """The keys, by where they work."""

    BINDINGS = [Binding("escape,f1", "dismiss(None)", "Close")]
    DEFAULT_CSS = """
    HelpScreen VerticalScroll { height: auto; max-height: 60vh; }
    """

    def __init__(self, behind: Screen) -> None:
        super().__init__()
        self.behind = behind

    def compose(self) -> ComposeResult:
        from kolyric.app.widgets.candidates import CandidateCard, CandidateStrip
        from kolyric.app.widgets.editor import DraftArea

        sections = [("Everywhere", bindings_of(type(self.app)))]
        screen = [b for b in bindings_of(type(self.behind)) if b.action != "dismiss(None)"]
        if screen:
            sections.append(("This screen", screen))
        if self.behind.query(CandidateStrip):
            sections.append(("On a candidate card", bindings_of(CandidateCard)))
        if self.behind.query(DraftArea):
            sections.append(("In the draft", bindings_of(DraftArea)))
        with Vertical(classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(self._text(sections), id="help-keys")
            yield Static("Esc or F1: close", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()  # ↑/↓ and PgUp/PgDn scroll the list

    def _text(self, sections: list[tuple[str, list[Binding]]]) -> Text:
        rows: list[tuple[str, list[tuple[str, str]]]] = []
        for title, bindings in sections:
            alternatives = [b for b in bindings if b.action.startswith("alternative(")]
            listed = [
                (" / ".join(key_name(key) for key in b.key.split(",")), b.tooltip or b.description)
                for b in bindings
                if b not in alternatives
            ]
            if alternatives:
                listed.append(("1-9, 0", f"take alternative 1-{len(alternatives)} of the selected token"))
            rows.append((title, listed))
        rows.append(("Moving", list(MOVING)))
        width = max(len(keys) for _, listed in rows for keys, _ in listed)
        out = Text()
        for title, listed in rows:
            out.append(f"{title}\n", style="bold")
            for keys, what in listed:
                out.append(f"  {keys:<{width}}", style="bold")
                out.append(f"  {what}\n")
            out.append("\n")
        out.rstrip()
        return out


_NAMES = {"escape": "Esc", "left": "←", "right": "→", "up": "↑", "down": "↓", "pageup": "PgUp", "pagedown": "PgDn"}


def key_name(key: str) -> str:
    """A binding's key as a person writes it: "ctrl+g" is Ctrl+G, "f5" F5, "escape" Esc."""
    parts = key.split("+")
    return "+".join(
        _NAMES.get(p, p.upper() if len(p) == 1 or (p[:1] == "f" and p[1:].isdigit()) else p.title()) for p in parts
    )
