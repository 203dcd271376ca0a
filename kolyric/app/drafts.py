"""The draft on disk: autosave target, restore on the next launch, quarantine of bad files.

The draft is one JSON file (``draft.json`` in the data directory) holding the lyrics, the
prompt line, the constraint fields, the undo journal and where the writer was (the cursor, and
the first line in view); its tree of versions
(``kolyric.app.tree``) is ``tree.json`` beside it, written first and only when it changed.
Saves are atomic (temp file + fsync + ``os.replace``), so a killed process leaves either the
previous draft or the new one, never a torn file. Saves may come from several worker threads;
each carries a sequence number and a save older than the newest written one is skipped, so an
old snapshot can never overwrite a newer one.

A file that is not a draft at all is renamed aside. A draft with one field that cannot be read
(a number of thousands of digits, which ``int()`` refuses; a polarity kolyric does not know)
loses that field only: the file as it was is copied aside, and the rest is restored and
written back, so a poisoned field never stops a later start.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kolyric.app.file_safety import keep_copy, quarantine
from kolyric.app.tree import VersionTree
from kolyric.app.undo import difference
from kolyric.atomic_files import atomic_write_text, sweep_stale_temps

DRAFT_FILE = "draft.json"
TREE_FILE = "tree.json"
FORMAT = "kolyric-draft"
VERSION = 1
# A lone UTF-16 surrogate (a broken paste) has no UTF-8 form; JSON can still carry it as \uXXXX.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_NUMBER_DIGITS = 64  # no number a draft holds is longer; longer ones are never given to int()
MAX_FIELD_CHARS = 500  # a constraint field as typed (a rhyme may be a whole line)
MAX_PLACE = 10**9  # a cursor row or column, or a line number, beyond any draft's


class _LongNumber(str):
    """A JSON integer too long to convert: kept as its digits, and set aside."""


def _parse_int(digits: str) -> int | str:
    return int(digits) if len(digits.lstrip("-")) <= MAX_NUMBER_DIGITS else _LongNumber(digits)


@dataclass(frozen=True)
class Draft:
    """What is saved: the lyrics, and the prompt line, polarity and constraint fields beside them."""

    text: str = ""
    prompt: str = ""
    polarity: str | None = None
    constraints: tuple[tuple[str, str], ...] = ()  # the lyric-constraint fields as typed (name, value)
    undo: tuple[str, ...] = ()  # the undo journal's states of the lyrics, oldest first (kolyric.app.undo)
    undo_at: int = -1  # the state the lyrics are in; later ones are redo
    settings: tuple[tuple[str, object], ...] = ()  # the decoding controls (DecodingSettings.to_dict() items)
    cursor: tuple[int, int] = (0, 0)  # the editor's cursor: (line, column), 0-based
    top: int = 0  # the draft line at the top of the editor's view (a line, not a row: wrapping differs by size)

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "saved_at": time.time(),
            **asdict(self),
            "constraints": dict(self.constraints),
            "undo": journal_to_json(self.undo),
            "settings": dict(self.settings),
        }
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

    @classmethod
    def from_json(cls, raw: str) -> Draft:
        """Parse a saved draft, strictly; ValueError naming the first field that cannot be read."""
        draft, set_aside = cls.read(raw)
        if set_aside:
            raise ValueError(set_aside[0])
        return draft

    @classmethod
    def read(cls, raw: str) -> tuple[Draft, list[str]]:
        """Parse a saved draft: the draft and the fields left out because they could not be
        read (one line each). ValueError when it is not a draft or its lyrics cannot be read."""
        data = json.loads(raw, parse_int=_parse_int)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a kolyric draft")
        text = data.get("text")
        if not isinstance(text, str) or isinstance(text, _LongNumber):
            raise ValueError(f"text: must be the lyrics as a string, got {_describe(text)}")
        set_aside: list[str] = []
        prompt, polarity = data.get("prompt", ""), data.get("polarity")
        if not isinstance(prompt, str) or isinstance(prompt, _LongNumber):
            set_aside.append(f"prompt: must be a string, got {_describe(prompt)}")
            prompt = ""
        if polarity not in (None, "긍정", "부정"):
            set_aside.append(f"polarity: must be 긍정, 부정 or none, got {_describe(polarity)}")
            polarity = None
        constraints, bad = _constraint_fields(data.get("constraints"))
        undo, undo_at = journal_from_json(data.get("undo")), data.get("undo_at", -1)
        if not (undo_at == -1 and not undo) and not (
            isinstance(undo_at, int) and 0 <= undo_at < len(undo) and undo[undo_at] == text
        ):
            undo, undo_at = (), -1  # a journal out of step with the lyrics (a hand edit): started afresh
        settings, bad_settings = _settings_fields(data.get("settings"))
        cursor = data.get("cursor")
        top = data.get("top")
        return cls(
            text=text,
            prompt=prompt,
            polarity=polarity,
            constraints=constraints,
            undo=undo,
            undo_at=undo_at,
            settings=settings,
            # where the writer was: a draft from before it was saved, or a bad value, starts at the top
            cursor=(cursor[0], cursor[1])
            if isinstance(cursor, list) and len(cursor) == 2 and all(map(_place, cursor))
            else (0, 0),
            top=top if _place(top) else 0,
        ), set_aside + bad + bad_settings


class DraftStore:
    """Loads and saves the draft in ``directory``; ``save`` is safe to call from any thread."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / DRAFT_FILE
        self.tree_path = self.directory / TREE_FILE
        self._lock = threading.Lock()
        self._written_seq = -1
        self._tree_lock = threading.Lock()
        self._tree_revision = -1

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
            draft, set_aside = Draft.read(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            moved = quarantine(self.path)
            where = f"renamed to {moved.name}" if moved else "left in place"
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return None, [
                f"The saved draft was unreadable ({reason}); starting empty. The file was {where} in {self.directory}."
            ]
        if not set_aside:
            return draft, []
        kept = keep_copy(self.path)
        try:  # the readable part replaces the file: the bad field cannot trouble the next start
            atomic_write_text(self.path, draft.to_json())
        except OSError:
            pass
        where = f"the file as it was is kept as {kept.name}" if kept else "the file could not be copied aside"
        return draft, [
            f"Restored your last draft, but left out what could not be read "
            f"({'; '.join(set_aside)[:300]}); {where} in {self.directory}."
        ]

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

    def load_tree(self) -> tuple[VersionTree, list[str]]:
        """The saved tree of versions (empty when there is none) and notices; an unreadable
        file is renamed aside, nodes that cannot be read are left out and said."""
        sweep_stale_temps(self.directory, TREE_FILE)
        try:
            raw = self.tree_path.read_bytes()
        except FileNotFoundError:
            return VersionTree(), []
        except OSError as exc:
            return VersionTree(), [f"Could not read the saved versions {self.tree_path}: {exc.strerror or exc}"]
        try:
            tree, skipped = VersionTree.from_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            moved = quarantine(self.tree_path)
            where = f"renamed to {moved.name}" if moved else "left in place"
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return VersionTree(), [f"The saved versions were unreadable ({reason}); the file was {where}."]
        if skipped:
            kept = keep_copy(self.tree_path)
            return tree, [
                f"Left out {len(skipped)} saved version(s) that could not be read ({skipped[0]}); "
                f"the file as it was is kept as {kept.name if kept else 'nothing'}."
            ]
        return tree, []

    def save_tree(self, text: str, revision: int) -> bool:
        """Write the tree's JSON unless a newer revision is already written; OSError to the caller."""
        with self._tree_lock:
            if revision <= self._tree_revision:
                return False
            atomic_write_text(self.tree_path, text)
            self._tree_revision = revision
            return True


def journal_to_json(states: tuple[str, ...]) -> list[object]:
    """The undo journal as the first state, then each later one as [kept prefix, kept suffix,
    new middle] of the state before it: a long journal of a long draft stays small."""
    if not states:
        return []
    out: list[object] = [states[0]]
    for before, after in itertools.pairwise(states):
        start, end, middle = difference(before, after)
        out.append([start, len(before) - end, middle])
    return out


def journal_from_json(raw: object) -> tuple[str, ...]:
    """``journal_to_json`` read back; () for anything that is not one (it is only the undo history)."""
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        return ()
    states = [raw[0]]
    for step in raw[1:]:
        if (
            not isinstance(step, list)
            or len(step) != 3
            or not all(isinstance(n, int) for n in step[:2])
            or not isinstance(step[2], str)
        ):
            return ()
        head, tail, middle = step
        before = states[-1]
        if head < 0 or tail < 0 or head + tail > len(before):
            return ()
        states.append(before[:head] + middle + before[len(before) - tail :])
    return tuple(states)


def _constraint_fields(raw: object) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """The constraint fields of a saved draft, and those left out. They are optional extras
    beside the lyrics: a value of another shape (an older or newer kolyric, a hand edit) is
    dropped silently, never a reason to set the whole draft aside; a number too long to read
    or a value too long for a field is left out with a notice. Numbers and booleans are kept
    as the text a field shows."""
    if not isinstance(raw, dict):
        return (), []
    shown = {True: "on", False: "off"}
    fields: list[tuple[str, str]] = []
    bad: list[str] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            continue
        if isinstance(value, _LongNumber) or (isinstance(value, str) and len(value) > MAX_FIELD_CHARS):
            bad.append(f"constraints.{key[:40]}: {_describe(value)}")
            continue
        fields.append((key, shown[value] if isinstance(value, bool) else str(value)))
    return tuple(fields), bad


def _settings_fields(raw: object) -> tuple[tuple[tuple[str, object], ...], list[str]]:
    """The decoding controls of a saved draft, and those left out (a number too long to read).
    Each is checked when the controls panel restores it, which keeps the valid ones only
    (``kolyric.app.widgets.control_values.restore_settings``); another shape is dropped silently."""
    if not isinstance(raw, dict):
        return (), []
    kept = tuple((k, v) for k, v in raw.items() if isinstance(k, str) and not isinstance(v, _LongNumber))
    bad = [f"settings.{k[:40]}: {_describe(v)}" for k, v in raw.items() if isinstance(v, _LongNumber)]
    return kept, bad


def _place(value: object) -> bool:
    """Whether ``value`` can be a cursor row or column or a line number (clamped to the text later)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PLACE


def _describe(value: object) -> str:
    """A value from a draft file in a few words, however large it is."""
    if isinstance(value, _LongNumber):
        return f"a number of {len(value.lstrip('-')):,} digits"
    if isinstance(value, str) and len(value) > 60:
        return f"a text of {len(value):,} characters"
    return repr(value) if not isinstance(value, (dict, list)) else f"a {type(value).__name__}"


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
