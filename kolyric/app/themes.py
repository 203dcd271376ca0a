"""The app's own themes: small TOML files describing ``textual.theme.Theme`` fields.

Where they are looked for, first match by name wins:

1. ``kolyric/themes/`` inside the installed package (a wheel carries them there);
2. ``themes/`` at the top of the source tree (a checkout or an editable install);
3. ``themes/`` in the user's config directory, for the user's own themes.

The canonical files are the repo's ``themes/*.toml``; packaging copies them into the wheel
(see the README). A file that does not parse or names unknown fields is skipped with a
notice; it never stops the app from starting.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from kolyric.app.config import config_dir

PACKAGE_THEMES = Path(__file__).resolve().parent.parent / "themes"
REPO_THEMES = Path(__file__).resolve().parent.parent.parent / "themes"


def theme_dirs() -> list[Path]:
    return [PACKAGE_THEMES, REPO_THEMES, config_dir() / "themes"]


def parse_theme(raw: dict[str, Any], source: str) -> Any:
    """A ``textual.theme.Theme`` from a parsed TOML table; ValueError naming the problem."""
    from textual.theme import Theme

    known = {f.name for f in dataclasses.fields(Theme)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{source}: unknown theme fields {', '.join(unknown)}")
    if not isinstance(raw.get("name"), str) or not isinstance(raw.get("primary"), str):
        raise ValueError(f"{source}: a theme needs a name and a primary colour")
    try:
        theme = Theme(**raw)
        theme.to_color_system()  # parses every colour now, not at first paint
    except Exception as exc:  # Color parse errors have several types
        raise ValueError(f"{source}: {exc}") from exc
    return theme


def load_themes(dirs: list[Path] | None = None) -> tuple[list[Any], list[str]]:
    """Every theme found (first of each name), and notices about files that were skipped."""
    themes: dict[str, Any] = {}
    notices: list[str] = []
    for directory in theme_dirs() if dirs is None else dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = parse_theme(tomllib.loads(path.read_text(encoding="utf-8")), path.name)
            except (OSError, ValueError, RecursionError) as exc:  # ValueError: TOML, colours, int()
                notices.append(f"Theme {path} skipped: {str(exc).splitlines()[0]}")
                continue
            themes.setdefault(theme.name, theme)
    return list(themes.values()), notices
