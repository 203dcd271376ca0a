"""Messages between workers and widgets. All dataclasses; the frequent ones are replaceable.

Workers never touch widgets: they post these. ``StreamProgress`` and ``TrainingProgress``
carry no payload; the worker appends to a shared buffer and the handler drains it, so a
burst of tokens (or steps) that arrives between two frames collapses into one repaint
(``can_replace``) without losing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


# -- model loading ------------------------------------------------------------------------------
@dataclass
class ModelLoadProgress(Message):
    """A loading phase began ("importing torch", "loading weights", ...)."""

    phase: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelLoadProgress)


@dataclass
class ModelLoaded(Message):
    """A model is ready in the app's ``ModelSlot``; ``description`` is for the status bar."""

    spec: str
    description: str
    notices: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


@dataclass
class ModelLoadFailed(Message):
    spec: str
    message: str


# -- generation ---------------------------------------------------------------------------------
@dataclass
class StreamProgress(Message):
    """New events are waiting in run ``run_id``'s buffer."""

    run_id: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StreamProgress) and message.run_id == self.run_id


@dataclass
class StreamFailed(Message):
    run_id: int
    message: str


# -- controls and candidates --------------------------------------------------------------------
@dataclass
class SettingsChanged(Message):
    """The controls hold a valid set of settings (``settings``) or do not (``problems``)."""

    settings: Any  # DecodingSettings, the last valid one
    problems: list[Any] = field(default_factory=list)  # settings.Problem / constraints.ConstraintProblem
    preset: str | None = None


@dataclass
class PresetChosen(Message):
    """The user chose a preset (the settings file remembers it)."""

    name: str


@dataclass
class TokenSelected(Message):
    """A token of a candidate was selected (keyboard or mouse): show its alternatives."""

    slot: int
    index: int


@dataclass
class CardFocused(Message):
    """Candidate ``slot`` got the focus with no token selected: the inspector shows nothing stale."""

    slot: int


@dataclass
class AlternativeChosen(Message):
    """Rewrite candidate ``slot`` from token ``index`` on, starting with ``token_id``."""

    slot: int
    index: int
    token_id: int


@dataclass
class AcceptCandidate(Message):
    slot: int


@dataclass
class KeepCandidate(Message):
    """Keep candidate ``slot`` (a compared preset's card) in the tree of versions."""

    slot: int


@dataclass
class CompareProgress(Message):
    """Preset ``index`` of compare run ``run_id`` finished (``compared``: kolyric.compare.Compared,
    with the text each token released in ``pieces``)."""

    run_id: int
    index: int
    compared: Any
    pieces: list[str] = field(default_factory=list)
    tokens: list[Any] = field(default_factory=list)
    error: str | None = None


@dataclass
class StepReady(Message):
    """A step of step mode ran: ``result`` (engine GenerationResult, None when it failed), the
    text each token released, and the alternatives of the new token the constraints exclude."""

    result: Any
    pieces: list[str]
    excluded: frozenset[int]
    error: str | None = None


@dataclass
class ModelPick(Message):
    """Space on card ``slot`` in step mode: take the model's own pick for the next token."""

    slot: int


@dataclass
class EditCandidate(Message):
    """Edit candidate ``slot``'s text, then continue from the edited text."""

    slot: int


@dataclass
class DraftAnalysed(Message):
    """The draft was analysed again (an edit, or new rhyme options)."""

    analysis: Any  # kolyric.korean.Analysis

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DraftAnalysed)


# -- training -----------------------------------------------------------------------------------
@dataclass
class TrainingProgress(Message):
    """New events are waiting in the training run's buffer."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TrainingProgress)


@dataclass
class TrainingEnded(Message):
    """The training process exited: ``ok`` when it finished, else ``message`` says why."""

    ok: bool
    returncode: int | None
    message: str
    cancelled: bool = False
    result_path: str | None = None


# -- the draft ----------------------------------------------------------------------------------
@dataclass
class UndoRequested(Message):
    """Ctrl+Z (or Ctrl+Y, ``redo``) in the draft: the screen's journal answers it. ``reset``:
    the draft was replaced by this text, which begins the journal again."""

    redo: bool = False
    reset: str | None = None


# -- the draft (saving) ----------------------------------------------------------------------------------
@dataclass
class DraftSaved(Message):
    seq: int
    draft: Any  # kolyric.app.drafts.Draft, as written
    tree_revision: int = -1  # the tree's revision written with it (-1: the tree was unchanged)


@dataclass
class DraftSaveFailed(Message):
    seq: int
    reason: str
