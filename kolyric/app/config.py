"""The app's settings file and where kolyric keeps its files.

``settings.toml`` lives in the platform's config directory (``KOLYRIC_CONFIG_DIR``
overrides it); drafts live in the data directory (``KOLYRIC_DATA_DIR`` or ``--data-dir``).
With ``KOLYRIC_CONFINED_DIR`` set (``kolyric serve --app`` sets it for browser sessions), the
app writes only inside that folder: both directories move into it when they lie outside, and
``outside_confinement`` refuses exports and training folders elsewhere.
Command-line flags override the file for one run without changing it; choices made in the
app (theme, preset, model, the training form's corpus) are written back. A file that cannot be parsed, or holds a value
of the wrong type, is renamed aside and the defaults are used; the notice says where it went.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kolyric.app.file_safety import quarantine
from kolyric.atomic_files import atomic_write_text, sweep_stale_temps
from kolyric.engine.loading import PRECISIONS

APP_NAME = "kolyric"
SETTINGS_FILE = "settings.toml"
CONFINED_ENV = "KOLYRIC_CONFINED_DIR"
DEFAULT_THEME = "kolyric-night"
RECENT_LIMIT = 8


def config_dir() -> Path:
    """Where settings.toml lives: ``$KOLYRIC_CONFIG_DIR`` or the platform's config dir."""
    env = os.environ.get("KOLYRIC_CONFIG_DIR", "").strip()
    if env:
        chosen = Path(env).expanduser()
    else:
        import platformdirs

        chosen = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    return _inside_confinement(chosen, "config")


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where drafts and training runs go: ``override``, ``$KOLYRIC_DATA_DIR`` or the platform's data dir."""
    env = os.environ.get("KOLYRIC_DATA_DIR", "").strip()
    if override:
        chosen = Path(override).expanduser()
    elif env:
        chosen = Path(env).expanduser()
    else:
        import platformdirs

        chosen = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return _inside_confinement(chosen, "data")


def export_dir() -> Path:
    """Where an export goes unless the user names another folder: the confined folder of a
    browser session, else ``kolyric/`` in the platform's documents folder (platformdirs;
    ``$XDG_DOCUMENTS_DIR`` on Linux). A writer's songs belong with their documents: the current
    folder is wherever the terminal happened to start, and the draft's own folder is kolyric's
    hidden data folder."""
    root = confined_dir()
    if root is not None:
        return root
    import platformdirs

    return Path(platformdirs.user_documents_dir()).expanduser() / APP_NAME


# -- confinement (browser sessions) -------------------------------------------------------------
def confined_dir() -> Path | None:
    """The one folder this session may write in (``$KOLYRIC_CONFINED_DIR``, resolved), or None."""
    raw = os.environ.get(CONFINED_ENV, "").strip()
    return Path(raw).expanduser().resolve() if raw else None


def user_path(raw: str | os.PathLike) -> Path:
    """A path the user typed, absolute: ``~`` expanded; relative to the confined folder when
    there is one (else to the current folder); symlinks and ``..`` resolved."""
    path = Path(raw).expanduser()
    root = confined_dir()
    if not path.is_absolute():
        path = (root if root is not None else Path.cwd()) / path
    return path.resolve()


def outside_confinement(path: str | os.PathLike) -> str | None:
    """A one-line refusal when this session may not write ``path``; None when it may."""
    root = confined_dir()
    if root is None:
        return None
    target = user_path(path)
    if target == root or root in target.parents:
        return None
    return f"this session may write only inside {root}; {target} is outside it"


def confine_caches() -> None:
    """Under confinement, the int8 graphs the engine caches go inside the folder too (unless
    ``KOLYRIC_ONNX_CACHE`` already says where). Hub downloads keep the hub's own cache: the
    models a server offers are there."""
    root = confined_dir()
    if root is not None:
        os.environ.setdefault("KOLYRIC_ONNX_CACHE", str(root / "cache" / "onnx"))


def _inside_confinement(chosen: Path, name: str) -> Path:
    root = confined_dir()
    if root is None or outside_confinement(chosen) is None:
        return chosen
    return root / name


@dataclass
class AppConfig:
    """Everything settings.toml may hold; each field has a safe default."""

    model: str = ""
    """The model loaded at start (hub id, directory or checkpoint); empty: the engine's default."""
    preset: str = "combined"
    """The decoding preset the controls start from (see ``kolyric.engine.settings.PRESETS``)."""
    precision: str = "auto"
    """Weights precision: auto (int8 on a CPU for models of 50M parameters or more, else fp32),
    fp32, fp16, bf16 or int8."""
    device: str = "auto"
    """auto, cpu or cuda."""
    theme: str = DEFAULT_THEME
    """The Textual theme, by name (the app's own or a built-in one)."""
    recent_models: list[str] = field(default_factory=list)
    """Models loaded before, newest first; offered by the model picker."""
    train_corpus: str = "nsmc"
    """The training form's corpus at its last start: nsmc or file."""
    train_corpus_file: str = ""
    """The training form's corpus file at its last start (empty: none yet)."""

    def remember_model(self, spec: str) -> None:
        self.model = spec
        self.recent_models = [spec] + [m for m in self.recent_models if m != spec]
        del self.recent_models[RECENT_LIMIT:]


_TYPES: dict[str, type] = {
    "model": str,
    "preset": str,
    "precision": str,
    "device": str,
    "theme": str,
    "recent_models": list,
    "train_corpus": str,
    "train_corpus_file": str,
}
TRAIN_CORPORA = ("nsmc", "file")  # what the training form's corpus choice holds


def check_values(values: dict[str, object]) -> list[str]:
    """Problems with known keys (wrong type or unknown choice); unknown keys are not problems."""
    from kolyric.engine.settings import PRESETS

    problems = []
    for key, kind in _TYPES.items():
        if key in values and not isinstance(values[key], kind):
            problems.append(f"{key}: expected {kind.__name__}, got {values[key]!r}")
    if not problems:
        if "preset" in values and values["preset"] not in PRESETS:
            problems.append(f"preset: unknown preset {values['preset']!r}")
        if "precision" in values and values["precision"] not in PRECISIONS:
            problems.append(f"precision: must be {', '.join(PRECISIONS)}, got {values['precision']!r}")
        if "train_corpus" in values and values["train_corpus"] not in TRAIN_CORPORA:
            problems.append(f"train_corpus: must be {' or '.join(TRAIN_CORPORA)}, got {values['train_corpus']!r}")
        if any(not isinstance(m, str) for m in values.get("recent_models", [])):
            problems.append("recent_models: must be a list of strings")
    return problems


def load_config(path: Path) -> tuple[AppConfig, list[str]]:
    """The config in ``path`` (defaults when absent), and notices for the user."""
    sweep_stale_temps(path.parent, path.name)  # left by a save that was killed mid-write
    if not path.exists():
        return AppConfig(), []
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
        problems = check_values(values)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: TOML errors, and int()'s digit limit
        problems = [str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__]
    if problems:
        moved = quarantine(path)
        where = f"moved to {moved.name}" if moved else "left in place"
        return AppConfig(), [
            f"Settings file {path} was unreadable ({problems[0]}); using defaults, the bad file was {where}."
        ]
    notices = []
    unknown = sorted(set(values) - set(_TYPES))
    if unknown:
        notices.append(f"Settings file: ignored unknown keys {', '.join(unknown)}")
    known = {k: v for k, v in values.items() if k in _TYPES}
    return AppConfig(**known), notices


def save_config(path: Path, config: AppConfig) -> None:
    """Write ``config`` atomically as TOML; raises OSError when the file cannot be written."""
    import tomli_w

    atomic_write_text(path, tomli_w.dumps(dataclasses.asdict(config)))
