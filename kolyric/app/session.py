"""The playground's generation state, free of Textual: runs, candidates and the history.

A ``StreamRun`` is one call to ``Generator.stream``. Its worker thread pushes engine events
into the run's buffer; the UI drains it when a (replaceable) ``StreamProgress`` message
arrives. Each stream candidate is shown in a *slot* (a card on screen): a fresh generation
fills slots 0..n-1, a branch (an alternative chosen at token i) rewrites one slot only.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from kolyric.app.tree import Node
from kolyric.app.tree_format import StoredReport, stored_tokens
from kolyric.engine.lyric.report import badge
from kolyric.korean.sections import is_header


class ConstraintsLike(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class GenerationRequestLike(Protocol):
    """What the app reads of the engine's ``GenerationRequest`` (imported with torch, later)."""

    prompt: str
    polarity: str | None
    context: tuple[str, ...]
    forced_ids: tuple[int, ...]
    constraints: ConstraintsLike | None


_run_ids = itertools.count(1)


@dataclass
class CandidateState:
    """One candidate as shown: its tokens and the text each token released."""

    slot: int
    prompt: str
    tokens: list[Any] = field(default_factory=list)  # engine TokenInfo
    pieces: list[str] = field(default_factory=list)  # text released by each token
    full_text: str = ""
    finish_reason: str | None = None  # None while streaming
    seed: int | None = None
    joiner: str | None = None  # between the prompt and the text; None: a space where the text has one
    report: Any = None  # the engine's ConstraintReport when the generation was constrained
    window_limit: int | None = None  # set when it stopped because the model's window was full
    title: str | None = None  # a card's own title (the compare view's preset)
    subtitle: str | None = None  # and what it sets, under the card

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def streaming(self) -> bool:
        return self.finish_reason is None

    def line_breaks(self) -> list[int]:
        """Offsets in ``text`` where a finished constrained candidate's next line begins and the
        stream has no line break (a vocabulary without a newline token streams the lines joined
        by spaces; the report has them apart). Empty when the text and report do not align."""
        report = self.report
        if report is None or self.streaming or len(report.lines) < 2:
            return []
        text, at, breaks = self.text, 0, []
        for line in report.lines[1:]:  # the first may hold the typed prompt (continue mode)
            found = text.find(line.text.strip(), at)
            if found < 0:
                return []
            if found > 0 and text[found - 1] != "\n":
                breaks.append(found)
            at = found + len(line.text.strip())
        return breaks

    def accepted_text(self) -> str:
        """What goes into the draft: the prompt line and the continuation."""
        if self.full_text:
            return self.full_text
        prompt, text = self.prompt.strip(), "\n".join(line.strip() for line in self.text.split("\n")).strip()
        joiner = self.joiner if self.joiner is not None else " " if self.text[:1].isspace() else ""
        return f"{prompt}{joiner if prompt else ''}{text}".strip()


@dataclass
class StreamRun:
    """One stream: its request, cancel flag, live controls, and the events not yet shown."""

    request: Any  # GenerationRequest
    controls: Any  # LiveControls
    slots: list[int]  # stream candidate i is shown in slot slots[i]
    run_id: int = field(default_factory=lambda: next(_run_ids))
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    _buffer: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, event: Any) -> None:
        with self._lock:
            self._buffer.append(event)

    def drain(self) -> list[Any]:
        with self._lock:
            events, self._buffer = self._buffer, []
        return events

    @property
    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.tokens / elapsed if elapsed > 0 else 0.0


@dataclass
class HistoryEntry:
    """A finished candidate of this session, as it can be browsed and accepted again."""

    text: str
    prompt: str
    polarity: str | None
    summary: str  # "sample · seed 7 · eos"
    accepted: bool = False
    at: float = field(default_factory=time.time)
    # what made it, to save with the text (export) and to make it again
    settings: dict[str, Any] | None = None  # DecodingSettings.to_dict(), with the seed used
    candidate: int = 0  # its index among the run's candidates (candidate i samples with seed + i)
    context: tuple[str, ...] = ()  # the draft lines the model saw before the prompt
    constraints: dict[str, Any] | None = None
    forced_ids: tuple[int, ...] = ()  # tokens chosen in the inspector (a branch)
    model: str | None = None
    finish_reason: str | None = None  # eos, length, constraint, stopped (a stopped line cannot be remade)
    # controls changed while it streamed: from which token on which values applied (``settings``
    # made the tokens before the first change)
    settings_changes: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt": self.prompt,
            "polarity": self.polarity,
            "context": list(self.context),
            "summary": self.summary,
            "accepted": self.accepted,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.at)),
            "model": self.model,
            "settings": self.settings,
            "settings_changes": [dict(c) for c in self.settings_changes],
            "candidate": self.candidate,
            "constraints": self.constraints,
            "forced_ids": list(self.forced_ids),
            "finish_reason": self.finish_reason,
        }


# what a live change cannot alter in a running stream (the engine keeps the run's own)
_FIXED_MID_STREAM = ("seed", "n")


def settings_changes(timeline: list[tuple[int, Any]], tokens: int | None = None) -> tuple[dict[str, Any], ...]:
    """``timeline`` ((first token, settings) in order, from ``RecordingControls``) as the
    changes after the first: ``{"from_token": 12, "changed": {"temperature": 1.5}}``, 0-based
    token numbers. Changes that took effect after a candidate's last token (``tokens``) are
    left out: they made none of its text."""
    out: list[dict[str, Any]] = []
    for (_, before), (step, after) in itertools.pairwise(timeline):
        old, new = before.to_dict(), after.to_dict()
        changed = {k: v for k, v in new.items() if k not in _FIXED_MID_STREAM and old.get(k) != v}
        if new.get("strategy") == "beam":  # a running stream does not turn into beam search
            changed.pop("strategy", None)
        if changed and (tokens is None or step < tokens):
            out.append({"from_token": step, "changed": changed})
    return tuple(out)


def changes_summary(changes: tuple[dict[str, Any], ...]) -> str:
    """ "from token 13: temperature 1.5, top_k 20" for each change (1-based for people)."""
    return "; ".join(
        f"from token {c['from_token'] + 1}: "
        + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in c["changed"].items())
        for c in changes
    )


def settings_summary(settings: Any, finish_reason: str | None, report: Any = None) -> str:
    """One short line describing how a candidate was made."""
    parts = [settings.strategy]
    if settings.strategy == "sample":
        parts.append(f"T {settings.temperature:g}")
    if settings.seed is not None:
        parts.append(f"seed {settings.seed}")
    if finish_reason:
        parts.append(finish_reason)
    if report is not None:
        parts.append(f"{report.constraints} {badge(report)}")
    return " · ".join(parts)


def draft_context(lines: list[str], before_line: int, prompt: str = "") -> tuple[str, ...]:
    """The lyric lines up to and including ``before_line``, oldest first: blank lines and
    section headers (``[후렴]``) are left out, so a rhyme scheme's leading letters line up with
    lyric lines, never with a header. When the last line is the prompt itself it is left out
    too: the model sees the line once, not twice (twice, no_repeat_ngram_size would forbid
    ending it the way the draft does)."""
    context = [line for line in lines[: before_line + 1] if line.strip() and not is_header(line)]
    if context and prompt.strip() and context[-1].strip() == prompt.strip():
        context.pop()
    return tuple(context)


def finish_state(state: CandidateState, candidate: Any, result: Any, window: int | None) -> None:
    """Fill ``state`` from the engine's finished ``Candidate`` of ``result``."""
    state.full_text = candidate.full_text
    state.finish_reason = candidate.finish_reason
    state.seed = result.settings.seed
    state.report = candidate.constraint_report
    if not state.tokens and candidate.tokens:  # beam search: tokens come with the result
        state.tokens = [t for t in candidate.tokens if t.token_id in candidate.token_ids]
        state.pieces = [t.text for t in state.tokens]
    # the prompt and the new tokens filled the model's window: that, not max_length, ended it
    if candidate.finish_reason == "length" and window and result.prompt_tokens + len(candidate.tokens) >= window:
        state.window_limit = int(window)


def state_from_node(node: Node, slot: int) -> CandidateState:
    """A finished candidate from the tree, as a card shows it (and the inspector reads it)."""
    tokens = list(node.tokens)
    pieces = list(node.pieces) if len(node.pieces) == len(tokens) else [t.text for t in tokens]
    return CandidateState(
        slot,
        node.prompt,
        tokens=tokens,
        pieces=pieces,
        full_text=node.text,
        finish_reason=node.finish_reason or "stopped",
        seed=node.seed,
        joiner=node.joiner,
        report=node.report,
        window_limit=node.window_limit,
    )


def node_from_state(
    state: CandidateState,
    request: GenerationRequestLike,
    settings: dict[str, Any],
    changes: tuple[dict[str, Any], ...],
    *,
    kind: str,
    model: str | None,
    candidate: int = 0,
    parent: int | None = None,
    at: int | None = None,
) -> Node:
    """A finished candidate as a tree node (its id is given by ``VersionTree.add``)."""
    constraints = request.constraints.to_dict() if request.constraints is not None else None
    return Node(
        0,
        kind,
        state.prompt,
        state.accepted_text(),
        parent=parent,
        at=at,
        polarity=request.polarity,
        context=tuple(request.context),
        constraints=constraints,
        forced_ids=tuple(request.forced_ids),
        settings=settings,
        changes=changes,
        seed=state.seed,
        model=model,
        candidate=candidate,
        finish_reason=state.finish_reason,
        joiner=state.joiner,
        report=StoredReport.from_report(state.report) if state.report is not None else None,
        window_limit=state.window_limit,
        pieces=tuple(state.pieces),
        _tokens=stored_tokens(state.tokens),
    )
