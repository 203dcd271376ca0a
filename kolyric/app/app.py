"""KolyricApp: settings, themes, the model host, and the screens.

The first frame needs only Textual and ``kolyric.engine.settings``; the engine (torch,
transformers) is imported inside the model-loading worker. Screens are modes: the
playground and training keep their state while the other is shown.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.reactive import var
from textual.screen import Screen

from kolyric.app.config import SETTINGS_FILE, AppConfig, config_dir, confine_caches, data_dir, load_config, save_config
from kolyric.app.drafts import DraftStore
from kolyric.app.file_safety import describe_os_error
from kolyric.app.guard import ErrorGuard, Guarded
from kolyric.app.messages import ModelLoaded, ModelLoadFailed, ModelLoadProgress
from kolyric.app.model_slot import ModelSlot
from kolyric.app.screens.playground import PlaygroundScreen
from kolyric.app.screens.training import TrainingScreen
from kolyric.app.themes import load_themes
from kolyric.app.widgets.fit import fold_long_words

TOAST_CELLS = 60  # Textual's Toast: width 60, max-width 50%
TOAST_EDGE_CELLS = 5  # its left edge, a cell of padding each side and two of slack (its rack takes one)


class KolyricApp(Guarded, App[None]):
    """The lyric playground. Keyword arguments override the settings file for this run.

    An unexpected error anywhere is reported (``kolyric.app.guard``), never the end of the app.
    """

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "kolyric"
    SUB_TITLE = "가사 놀이터"
    MODES = {"playground": PlaygroundScreen, "training": TrainingScreen}
    DEFAULT_MODE = "playground"
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="Every key, by where it works", show=False),
        Binding("f2", "switch_mode('playground')", "Playground"),
        Binding("f3", "switch_mode('training')", "Training"),
        Binding("f4", "pick_model", "Model"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    # What the status bars show. ``var``, not ``reactive``: a reactive on the App would
    # repaint the whole screen on each change (tokens/s changes several times a second).
    status_model: var[str] = var("no model loaded")
    status_activity: var[str] = var("")
    status_busy: var[bool] = var(False)
    status_draft: var[str] = var("draft: new")
    status_draft_ok: var[bool] = var(True)
    model_window: var[int | None] = var(None)  # the loaded model's context window, in tokens

    def __init__(
        self,
        *,
        model: str | None = None,
        precision: str | None = None,
        device: str | None = None,
        theme: str | None = None,
        preset: str | None = None,
        data_dir_override: str | Path | None = None,
        load_on_start: bool = True,
        train_command: list[str] | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        confine_caches()
        self.config_path = config_dir() / SETTINGS_FILE
        self.config, self.startup_notices = load_config(self.config_path)
        self.data_dir = data_dir(data_dir_override)
        self.drafts = DraftStore(self.data_dir)
        self.host = ModelSlot()
        self.model_spec = model if model is not None else self.config.model
        self.precision = precision or self.config.precision
        self.device = device or self.config.device
        self.preset_name = preset or self.config.preset
        self.theme_name = theme or self.config.theme
        self.load_on_start = load_on_start
        self.train_command = train_command or [sys.executable, "-m", "kolyric", "train"]
        self.cursor_blink = cursor_blink
        self.load_error: str | None = None
        self.draft_screen: object | None = None  # the playground, once mounted: saved before any error report
        self.errors = ErrorGuard(self.data_dir, self._notify_error, self._save_draft_for_report)
        self._guarding = False  # until mounted, an error is Textual's to handle (it exits)
        self._remember = False
        self._announce: str | None = None  # a path open_in_playground loads (see on_model_loaded)
        self._config_lock = threading.Lock()
        # Themes are set before the first style pass: setting one later restyles every widget.
        themes, theme_notices = load_themes()
        for theme_obj in themes:
            self.register_theme(theme_obj)
        if self.theme_name not in self.available_themes:
            theme_notices.append(f"Unknown theme {self.theme_name!r}; using {AppConfig.theme}.")
            self.theme_name = AppConfig.theme if AppConfig.theme in self.available_themes else "textual-dark"
        self.theme = self.theme_name
        self.startup_notices += theme_notices

    # -- start ---------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self._guarding = True
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        for notice in self.startup_notices:
            self.notify(notice, severity="warning", timeout=10)
        if self.load_on_start:
            self.load_model(self.model_spec or "")
        else:
            self.status_activity = "no model loaded: F4 chooses one"

    def on_unmount(self) -> None:
        self.errors.close()

    # -- errors ----------------------------------------------------------------------------------
    def _handle_exception(self, error: Exception) -> None:
        """Textual's hook for any unhandled error (it would exit): reported, and the app goes on."""
        if not self._guarding or self._exit:
            super()._handle_exception(error)
            return
        try:
            self.report_error(error)
        except Exception:  # noqa: BLE001 - if even the report fails, Textual's own exit is left
            super()._handle_exception(error)

    def report_error(self, error: BaseException, where: str = "", detail: str = "") -> None:
        self.errors.report(error, where, detail)

    def _notify_error(self, line: str) -> None:
        self.notify(line, title="Something went wrong", severity="error", timeout=20, markup=False)

    def _save_draft_for_report(self) -> str:
        screen = self.draft_screen
        if screen is None:
            return "no draft was open"
        return "the draft is saved" if screen.flush_draft() else "the draft could NOT be saved (it is still open)"  # type: ignore[attr-defined]

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        # A toast is Textual's: 60 cells, at most half the screen, less its edge and padding.
        room = min(TOAST_CELLS, self.size.width // 2) - TOAST_EDGE_CELLS
        message = fold_long_words(str(message), room, markup=markup)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def settle_cursors(self, node: object) -> None:
        """Stop the text cursors under ``node`` blinking when the app was started with
        ``cursor_blink=False`` (tests and snapshots: a picture must not depend on its moment)."""
        if not self.cursor_blink:
            for widget in node.query("Input, TextArea"):  # type: ignore[attr-defined]
                widget.cursor_blink = False

    def _theme_changed(self, theme: object) -> None:
        name = getattr(theme, "name", None)
        if name is None or name == self.theme_name:  # the theme we started with: not a choice
            return
        self.theme_name = self.config.theme = name
        self.save_config()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # no footer key for the screen already shown
        return not (action == "switch_mode" and parameters and parameters[0] == self.current_mode)

    # -- the model -----------------------------------------------------------------------------
    def load_model(self, spec: str, precision: str | None = None, *, remember: bool = False) -> None:
        """Load ``spec`` in a worker; the status bar shows progress; failures open the picker."""
        if precision:
            self.precision = precision
        self.status_busy = True
        self.status_activity = f"loading {spec or 'the default model'}…"  # the old model serves until then
        self._remember = remember
        self._announce = None  # only open_in_playground says that the start-up model changed
        self._load_worker(spec, self.device, self.precision)

    @work(thread=True, exclusive=True, group="model", exit_on_error=False)
    def _load_worker(self, spec: str, device: str, precision: str) -> None:
        def progress(phase: str) -> None:
            self.post_message(ModelLoadProgress(phase))

        try:
            used, notices, seconds = self.host.load(spec, device=device, precision=precision, progress=progress)
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
            message = str(exc) or type(exc).__name__
            self.post_message(ModelLoadFailed(spec, message))
            return
        self.post_message(ModelLoaded(used, self.host.description, notices, seconds))

    def on_model_load_progress(self, message: ModelLoadProgress) -> None:
        self.status_activity = message.phase + "…"

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.load_error = None
        self.status_busy = False
        self.status_model = message.description
        self.model_window = getattr(self.host.generator, "context_window", None)
        self.status_activity = f"ready ({message.elapsed_s:.1f} s)"
        for notice in message.notices:
            self.notify(notice, timeout=6)
        if self._remember:
            before = self.config.model
            self.config.remember_model(message.spec)
            self.config.precision = self.precision
            self.save_config()
            if self._announce is not None and message.spec != before:
                # said once it is true (a load that fails changes nothing), with the way back
                self.notify(
                    f"kolyric now starts with {message.spec} (saved in settings.toml). It started with "
                    f"{before or 'the default model'}: F4 picks that again from the recent models.",
                    title="Start-up model changed",
                    markup=False,
                    timeout=12,
                )
            self._announce = None

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.load_error = message.message
        self.status_busy = False
        self.status_model = self.host.description
        if self.host.ready:  # the model loaded before still serves
            self.status_activity = f"{message.spec or 'the default model'} not loaded; this one still serves"
        else:
            self.status_activity = "model not loaded: F4 chooses another"
        self.notify(message.message, title="Could not load the model", severity="error", timeout=12)
        self.action_pick_model()

    def action_help(self) -> None:
        from kolyric.app.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_pick_model(self) -> None:
        from kolyric.app.screens.model_picker import ModelPickerScreen

        if isinstance(self.screen, ModelPickerScreen):
            return
        current = self.host.spec or self.model_spec or ""
        picker = ModelPickerScreen(
            current, self.precision, self.config.recent_models, self.data_dir, error=self.load_error
        )
        self.push_screen(picker, self._model_picked)

    def _model_picked(self, choice: tuple[str, str] | None) -> None:
        if choice is not None:
            spec, precision = choice
            self.load_model(spec, precision, remember=True)

    def open_in_playground(self, path: str) -> None:
        """Load a training result and show the playground. Like a model picked with F4, it becomes
        the model kolyric starts with (the last model chosen is the one to go on with), and the
        app says so once it has loaded, naming the model it replaces."""
        self.switch_mode("playground")
        self.load_model(path, remember=True)
        self._announce = path

    # -- settings ------------------------------------------------------------------------------
    def save_config(self) -> None:
        self._save_config_worker()

    @work(thread=True, group="config", exit_on_error=False)
    def _save_config_worker(self) -> None:
        # One writer at a time, each writing the newest settings: saves never land out of order.
        with self._config_lock:
            config = AppConfig(**{**vars(self.config), "recent_models": list(self.config.recent_models)})
            try:
                save_config(self.config_path, config)
            except OSError as exc:
                self.call_from_thread(
                    self.notify, f"Could not save settings: {describe_os_error(exc)}", severity="warning"
                )

    def remember_preset(self, name: str) -> None:
        if name != self.config.preset:
            self.config.preset = name
            self.save_config()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Playground", "Write lyrics and generate lines (F2)", lambda: self.switch_mode("playground")
        )
        yield SystemCommand("Training", "Fine-tune or train a model (F3)", lambda: self.switch_mode("training"))
        yield SystemCommand(
            "Choose model", "Load a hub model, a directory or a checkpoint (F4)", self.action_pick_model
        )
        commands = getattr(screen, "palette_commands", None)
        if commands is not None:
            yield from commands()
