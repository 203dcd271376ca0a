"""Choose a model: a hub id, a local model directory, a .ckpt checkpoint or a folder of them.

Shown at start when loading failed (with the reason), and on F4. Suggestions: models used
before, the engine's defaults, and what training runs in the data directory produced.
Dismisses with ``(spec, precision)``; loading happens in the app's worker afterwards.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from kolyric.app.guard import Guarded
from kolyric.engine.loading import DEFAULT_MODEL, PRECISIONS, looks_like_path  # no torch until a model loads


def check_spec(spec: str) -> str | None:
    """A message when ``spec`` is certainly wrong (a path that does not exist); else None."""
    if looks_like_path(spec) and not Path(spec).expanduser().exists():
        return f"{spec}: no such file or directory"
    return None


def training_outputs(data_dir: Path, limit: int = 6) -> list[str]:
    """Model directories and checkpoints written by training runs, newest first."""
    runs = data_dir / "runs"
    if not runs.is_dir():
        return []
    found: list[Path] = []
    for config in runs.glob("*/**/config.json"):
        found.append(config.parent)
    for ckpt in runs.glob("*/**/*.ckpt"):
        found.append(ckpt)
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [str(p) for p in found[:limit]]


def suggestions(recent: list[str], data_dir: Path) -> list[tuple[str, str]]:
    """(spec, why) pairs, without duplicates."""
    out: dict[str, str] = {}
    for spec in recent:
        out.setdefault(spec, "used before")
    for spec in training_outputs(data_dir):
        out.setdefault(spec, "trained here")
    out.setdefault(DEFAULT_MODEL, "hub default (needs the cache or the network)")
    mini = Path(__file__).resolve().parents[2] / "models" / "kolyric-mini" / "config.json"
    if mini.is_file():
        out.setdefault("mini", "kolyric-mini, shipped with kolyric")
    return list(out.items())


class ModelPickerScreen(Guarded, ModalScreen[tuple[str, str] | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    ModelPickerScreen #model-row { height: 1; margin-bottom: 1; }
    ModelPickerScreen #model-spec { width: 1fr; }
    ModelPickerScreen #model-precision { width: 12; margin-left: 1; }
    ModelPickerScreen OptionList { height: auto; max-height: 10; border: none; margin-bottom: 1; }
    """

    def __init__(
        self, current: str, precision: str, recent: list[str], data_dir: Path, *, error: str | None = None
    ) -> None:
        super().__init__()
        self.current = current
        self.precision = precision if precision in PRECISIONS else "auto"
        self.recent = recent
        self.data_dir = data_dir
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Choose a model", classes="dialog-title")
            yield Static(
                f"Loading failed: {self.error}" if self.error else "", classes="dialog-error", id="picker-error"
            )
            with Horizontal(id="model-row"):
                yield Input(self.current, placeholder="hub id, model directory or .ckpt", compact=True, id="model-spec")
                yield Select(
                    [(p, p) for p in PRECISIONS],
                    value=self.precision,
                    allow_blank=False,
                    compact=True,
                    id="model-precision",
                )
            options = OptionList(id="model-suggestions")
            for spec, why in suggestions(self.recent, self.data_dir):
                options.add_option(Option(Text.assemble(spec, "  ", (why, "dim")), id=spec))
            yield options
            yield Static(
                "Enter loads the model typed above, or the suggestion under the cursor.", classes="dialog-help"
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="picker-cancel")
                yield Button("Load", id="picker-load", variant="primary")

    def on_mount(self) -> None:
        self.app.settle_cursors(self)
        self.query_one("#picker-error").display = bool(self.error)
        self.query_one("#model-spec", Input).focus()

    def _submit(self, spec: str) -> None:
        spec = spec.strip()
        problem = check_spec(spec) if spec else "Type a hub id, a model directory or a checkpoint path."
        if problem:
            error = self.query_one("#picker-error", Static)
            error.update(problem)
            error.display = True
            return
        precision = self.query_one("#model-precision", Select).value
        self.dismiss((spec, precision if isinstance(precision, str) else "auto"))

    @on(Input.Submitted, "#model-spec")
    @on(Button.Pressed, "#picker-load")
    def _load(self) -> None:
        self._submit(self.query_one("#model-spec", Input).value)

    @on(OptionList.OptionSelected, "#model-suggestions")
    def _suggested(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#model-spec", Input).value = event.option.id or ""
        self._submit(event.option.id or "")

    @on(Button.Pressed, "#picker-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
