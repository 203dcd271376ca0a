"""Autosave: the draft (and its tree of versions) written at most ``AUTOSAVE_DELAY`` after a change.

The first change after a save starts a timer (further typing does not push it back, so a long
burst of typing is still saved every half second). The write runs in a thread worker; a
draft equal to the last one written is not written again, and the tree is written only when
its revision moved. A failure (full disk, read-only folder) is said once, the draft stays in
memory, and the save is retried on the next edit and every ``RETRY_DELAY`` seconds until it
works.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen
from textual.timer import Timer

from kolyric.app.drafts import Draft, DraftStore
from kolyric.app.file_safety import describe_os_error
from kolyric.app.messages import DraftSaved, DraftSaveFailed
from kolyric.app.tree import TreeSnapshot, VersionTree

AUTOSAVE_DELAY = 0.5
RETRY_DELAY = 5.0


class Autosave:
    """Saves ``snapshot()`` and ``tree`` through ``store`` for ``screen``, which hands the
    ``DraftSaved`` / ``DraftSaveFailed`` messages back to ``saved`` / ``failed``."""

    def __init__(
        self, screen: Screen, store: DraftStore, snapshot: Callable[[], Draft], tree: VersionTree, last_written: Draft
    ) -> None:
        self.screen = screen
        self.store = store
        self.snapshot = snapshot
        self.tree = tree
        self.last_written: Draft | None = last_written
        self.tree_written = tree.revision  # the tree as loaded is on disk
        self.timer: Timer | None = None
        self.failing = False
        self._seq = 0

    def changed(self) -> None:
        if self.failing:
            self._restart_timer()  # the next edit retries soon, not at the slow retry clock
        elif self.timer is None:
            self.timer = self.screen.set_timer(AUTOSAVE_DELAY, self.save_now)

    def _pending(self) -> tuple[Draft, TreeSnapshot | None]:
        """The draft, and the tree when it changed since the last write (else None)."""
        tree = self.tree.snapshot() if self.tree.revision != self.tree_written else None
        return self.snapshot(), tree

    def save_now(self) -> None:
        self.timer = None
        draft, tree = self._pending()
        if draft == self.last_written and tree is None:
            return
        self._seq += 1
        seq = self._seq
        self.screen.run_worker(
            lambda: self._write(draft, tree, seq), thread=True, group="autosave", exit_on_error=False
        )

    def _write(self, draft: Draft, tree: TreeSnapshot | None, seq: int) -> None:
        try:
            if tree is not None:  # first: a draft on disk never names a node the tree file lacks
                self.store.save_tree(tree.to_json(), tree.revision)
            self.store.save(draft, seq)
        except OSError as exc:
            self.screen.post_message(DraftSaveFailed(seq, describe_os_error(exc)))
        else:
            self.screen.post_message(DraftSaved(seq, draft, tree.revision if tree is not None else -1))

    def flush(self) -> bool:
        """Save now, on this thread (when the screen goes away, or before an error is reported).
        True when the draft on disk is the current one."""
        draft, tree = self._pending()
        if draft == self.last_written and tree is None:
            return True
        self._seq += 1
        try:
            if tree is not None:
                self.store.save_tree(tree.to_json(), tree.revision)
                self.tree_written = tree.revision
            self.store.save(draft, self._seq)
        except OSError:
            return False  # the user was told when saving first failed
        self.last_written = draft
        return True

    def saved(self, message: DraftSaved) -> None:
        if message.seq == self._seq:
            self.last_written = message.draft
        self.tree_written = max(self.tree_written, message.tree_revision)
        app = self.screen.app
        if self.failing:
            self.failing = False
            self.screen.notify("The draft is saved again.")
        app.status_draft, app.status_draft_ok = "draft saved", True

    def failed(self, message: DraftSaveFailed) -> None:
        app = self.screen.app
        if not self.failing:
            self.screen.notify(
                f"Could not save the draft: {message.reason}. It is kept in memory; "
                "keep writing, kolyric will retry (Ctrl+S exports it elsewhere).",
                title="Draft not saved",
                severity="error",
                timeout=12,
            )
        self.failing = True
        app.status_draft, app.status_draft_ok = f"draft NOT saved: {message.reason}", False
        if self.timer is None:  # no edit since: retry on a slower clock
            self.timer = self.screen.set_timer(RETRY_DELAY, self.save_now)

    def _restart_timer(self) -> None:
        if self.timer is not None:
            self.timer.stop()
        self.timer = self.screen.set_timer(AUTOSAVE_DELAY, self.save_now)
