"""Autosave for the playground: the draft is written at most ``AUTOSAVE_DELAY`` after an edit.

The first edit after a save starts a timer (further typing does not push it back, so a long
burst of typing is still saved every half second). The write runs in a thread worker; a
draft equal to the last one written is not written again. A failure (full disk, read-only
folder) is said once, the draft stays in memory, and the save is retried on the next edit
and every ``RETRY_DELAY`` seconds until it works.
"""

from __future__ import annotations

from textual import work
from textual.timer import Timer

from kolyric.app.drafts import Draft
from kolyric.app.file_safety import describe_os_error
from kolyric.app.messages import DraftSaved, DraftSaveFailed

AUTOSAVE_DELAY = 0.5
RETRY_DELAY = 5.0


class AutosaveMixin:
    """For a Screen with ``current_draft() -> Draft``; saves through the app's ``drafts`` store."""

    _last_written: Draft | None = None  # set to the restored draft at start
    _save_seq = 0
    _save_timer: Timer | None = None
    _save_failing = False

    def draft_changed(self) -> None:
        if self._save_failing:
            self._restart_timer()  # the next edit retries soon, not at the slow retry clock
        elif self._save_timer is None:
            self._save_timer = self.set_timer(AUTOSAVE_DELAY, self.save_draft_now)  # type: ignore[attr-defined]

    def save_draft_now(self) -> None:
        self._save_timer = None
        draft = self.current_draft()  # type: ignore[attr-defined]
        if draft == self._last_written:
            return
        self._save_seq += 1
        self._write_draft(draft, self._save_seq)

    @work(thread=True, group="autosave", exit_on_error=False)
    def _write_draft(self, draft: Draft, seq: int) -> None:
        try:
            self.app.drafts.save(draft, seq)  # type: ignore[attr-defined]
        except OSError as exc:
            self.post_message(DraftSaveFailed(seq, describe_os_error(exc)))  # type: ignore[attr-defined]
        else:
            self.post_message(DraftSaved(seq, draft))  # type: ignore[attr-defined]

    def flush_draft(self) -> bool:
        """Save now, on this thread (when the screen goes away, or before an error is reported).
        True when the draft on disk is the current one."""
        draft = self.current_draft()  # type: ignore[attr-defined]
        if draft == self._last_written:
            return True
        self._save_seq += 1
        try:
            self.app.drafts.save(draft, self._save_seq)  # type: ignore[attr-defined]
        except OSError:
            return False  # the user was told when saving first failed
        self._last_written = draft
        return True

    def on_draft_saved(self, message: DraftSaved) -> None:
        if message.seq == self._save_seq:
            self._last_written = message.draft
        app = self.app  # type: ignore[attr-defined]
        if self._save_failing:
            self._save_failing = False
            self.notify("The draft is saved again.")  # type: ignore[attr-defined]
        app.status_draft, app.status_draft_ok = "draft saved", True

    def on_draft_save_failed(self, message: DraftSaveFailed) -> None:
        app = self.app  # type: ignore[attr-defined]
        if not self._save_failing:
            self.notify(f"Could not save the draft: {message.reason}. It is kept in memory; "  # type: ignore[attr-defined]
                        "keep writing, kolyric will retry (Ctrl+S exports it elsewhere).",
                        title="Draft not saved", severity="error", timeout=12)
        self._save_failing = True
        app.status_draft, app.status_draft_ok = f"draft NOT saved: {message.reason}", False
        if self._save_timer is None:  # no edit since: retry on a slower clock
            self._save_timer = self.set_timer(RETRY_DELAY, self.save_draft_now)  # type: ignore[attr-defined]

    def _restart_timer(self) -> None:
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(AUTOSAVE_DELAY, self.save_draft_now)  # type: ignore[attr-defined]
