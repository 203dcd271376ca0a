"""Undo and redo for the draft that outlive the app: a journal of the lyrics' states.

Textual's TextArea keeps its own undo history in memory only; kolyric's journal is saved with
the draft (``Draft.undo``), so Ctrl+Z after a restart still takes back an accepted candidate
or the last burst of typing. Typing within ``COALESCE_S`` of the previous edit extends the
same state (one undo takes back a burst of typing, as editors do); an accepted candidate is
a state of its own. Applying a state replaces only the text that differs, and the cursor is
put at the change, inside the document, whatever the cursor and wrapping were.
"""

from __future__ import annotations

import time

MAX_STATES = 200  # the oldest states go first
COALESCE_S = 1.0
TYPED_CHARS = 4  # an edit of more characters than this is a paste or a cut, never merged with typing


class UndoJournal:
    def __init__(self, states: tuple[str, ...] = (), at: int = -1, text: str = "") -> None:
        if not states or not 0 <= at < len(states) or states[at] != text:
            states, at = (text,), 0
        self.states = list(states)
        self.at = at
        self._typed_at = 0.0  # when the current state was last extended by typing (0: a boundary)

    @property
    def current(self) -> str:
        return self.states[self.at]

    def record(self, text: str, *, boundary: bool = False) -> None:
        """The lyrics changed to ``text`` (an edit, or an accept when ``boundary``)."""
        if text == self.current:
            return
        now = time.monotonic()
        del self.states[self.at + 1 :]  # a new change drops what could have been redone
        start, end, middle = difference(self.current, text)
        if end - start > TYPED_CHARS or len(middle) > TYPED_CHARS:  # a paste or a cut: a state of its own
            boundary = True
            self._typed_at = 0.0
        if not boundary and self._typed_at and now - self._typed_at < COALESCE_S and self.at > 0:
            self.states[self.at] = text
        else:
            self.states.append(text)
            self.at += 1
            if len(self.states) > MAX_STATES:
                drop = len(self.states) - MAX_STATES
                del self.states[:drop]
                self.at -= drop
        self._typed_at = 0.0 if boundary else now

    def reset(self, text: str) -> None:
        """The lyrics were replaced wholesale (``LyricsEditor.load``): they begin a new journal."""
        self.states, self.at, self._typed_at = [text], 0, 0.0

    def boundary(self) -> None:
        """The next edit starts a state of its own (before an accept, after an undo)."""
        self._typed_at = 0.0

    def undo(self) -> str | None:
        if self.at == 0:
            return None
        self.at -= 1
        self._typed_at = 0.0
        return self.current

    def redo(self) -> str | None:
        if self.at + 1 >= len(self.states):
            return None
        self.at += 1
        self._typed_at = 0.0
        return self.current

    def snapshot(self) -> tuple[tuple[str, ...], int]:
        return tuple(self.states), self.at


def difference(before: str, after: str) -> tuple[int, int, str]:
    """(start, end, replacement): ``after`` is ``before[:start] + replacement + before[end:]``."""
    limit = min(len(before), len(after))
    head = 0
    while head < limit and before[head] == after[head]:
        head += 1
    tail = 0
    while tail < limit - head and before[-1 - tail] == after[-1 - tail]:
        tail += 1
    return head, len(before) - tail, after[head : len(after) - tail]


def location(text: str, offset: int) -> tuple[int, int]:
    """The (row, column) of character ``offset`` in ``text``."""
    offset = max(0, min(offset, len(text)))
    row = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return row, offset - start
