"""The draft on disk: autosave target, restore on the next launch, quarantine of bad files.

The draft is one JSON file (``draft.json`` in the data directory) holding the lyrics and
the prompt line. Saves are atomic (temp file + fsync + ``os.replace``), so a killed process
leaves either the previous draft or the new one, never a torn file. Saves may come from
several worker threads; each carries a sequence number and a save older than the newest
written one is skipped, so an old snapshot can never overwrite a newer one.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kolyric.app.files import atomic_write_text, quarantine
from kolyric.files import sweep_stale_temps

DRAFT_FILE = "draft.json"
FORMAT = "kolyric-draft"
VERSION = 1
# A lone UTF-16 surrogate (a broken paste) has no UTF-8 form; JSON can still carry it as \uXXXX.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Draft:
    """What is saved: the lyrics, and the prompt line, polarity and constraint fields beside them."""

    text: str = ""
    prompt: str = ""
    polarity: str | None = None
    constraints: tuple[tuple[str, str], ...] = ()  # the lyric-constraint fields as typed (name, value)

    def to_json(self) -> str:
        data = {"format": FORMAT, "version": VERSION, "saved_at": time.time(), **asdict(self),
                "constraints": dict(self.constraints)}
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

    @classmethod
    def from_json(cls, raw: str) -> "Draft":
        """Parse a saved draft; ValueError when it is not one."""
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a kolyric draft")
        text, prompt, polarity = data.get("text"), data.get("prompt", ""), data.get("polarity")
        if not isinstance(text, str) or not isinstance(prompt, str):
            raise ValueError("text and prompt must be strings")
        if polarity not in (None, "긍정", "부정"):
            raise ValueError(f"unknown polarity {polarity!r}")
        return cls(text=text, prompt=prompt, polarity=polarity, constraints=_constraint_fields(data.get("constraints")))


class DraftStore:
    """Loads and saves the draft in ``directory``; ``save`` is safe to call from any thread."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / DRAFT_FILE
        self._lock = threading.Lock()
        self._written_seq = -1

    def load(self) -> tuple[Draft | None, list[str]]:
        """The saved draft (None when there is none or it was unreadable) and notices."""
        sweep_stale_temps(self.directory, DRAFT_FILE)  # left by a save that was killed mid-write
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, []
        except OSError as exc:
            return None, [f"Could not read the saved draft {self.path}: {exc.strerror or exc}"]
        try:
            return Draft.from_json(raw.decode("utf-8")), []
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            moved = quarantine(self.path)
            where = f"renamed to {moved.name}" if moved else "left in place"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return None, [f"The saved draft was unreadable ({reason}); starting empty. "
                          f"The file was {where} in {self.directory}."]

    def save(self, draft: Draft, seq: int) -> bool:
        """Write ``draft`` unless a newer one (higher ``seq``) is already written.

        Returns whether it wrote; raises OSError (disk full, read-only, ...) to the caller.
        """
        with self._lock:
            if seq <= self._written_seq:
                return False
            atomic_write_text(self.path, draft.to_json())
            self._written_seq = seq
            return True


def _constraint_fields(raw: object) -> tuple[tuple[str, str], ...]:
    """The constraint fields of a saved draft. They are optional extras beside the lyrics: a
    value of another shape (an older or newer kolyric, a hand edit) is dropped, never a reason
    to set the whole draft aside. Numbers and booleans are kept as the text a field shows."""
    if not isinstance(raw, dict):
        return ()
    shown = {True: "on", False: "off"}
    return tuple((k, shown[v] if isinstance(v, bool) else str(v)) for k, v in raw.items()
                 if isinstance(k, str) and isinstance(v, (str, int, float, bool)))


def export_record(path: Path, record: dict) -> Path:
    """Write ``record`` (how the exported lines were made) as JSON beside the exported text:
    ``song.txt`` -> ``song.kolyric.json``. Atomic; returns the absolute path."""
    path = Path(path).expanduser().resolve()
    target = path.with_name(f"{path.stem}.kolyric.json")
    text = json.dumps(record, ensure_ascii=False, indent=1) + "\n"
    atomic_write_text(target, _LONE_SURROGATE.sub("\ufffd", text))
    return target


def export_text(path: Path, text: str) -> Path:
    """Write the lyrics as plain UTF-8 text (atomically); returns the absolute path."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    text = _LONE_SURROGATE.sub("\ufffd", text)  # plain text cannot carry them: shown as �
    atomic_write_text(path, text if text.endswith("\n") or not text else text + "\n")
    return path
