"""Candidate cards: each shows one continuation as it streams, token by token.

A card is focusable. ←/→ select a token (its top-5 show in the inspector), 1–5 rewrite the
candidate from that token with that alternative, Enter accepts the candidate into the draft.
A mouse click on a token selects it too.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.containers import HorizontalScroll
from textual.widget import Widget

from kolyric.app.messages import AcceptCandidate, AlternativeChosen, TokenSelected
from kolyric.app.session import CandidateState, report_badge


class CandidateCard(Widget, can_focus=True):
    """One candidate; ``state`` is updated by the playground, then ``refresh_state()``."""

    BINDINGS = [
        Binding("left", "move(-1)", "Prev token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("home", "move_to(0)", "First token", show=False),
        Binding("end", "move_to(-1)", "Last token", show=False),
        Binding("enter", "accept", "Accept"),
        *[Binding(str(k), f"alternative({k - 1})", f"Alternative {k}", show=False) for k in range(1, 6)],
    ]
    DEFAULT_CSS = """
    CandidateCard {
        width: 1fr;
        min-width: 24;
        height: 100%;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        border-subtitle-color: $text-muted;
        padding: 0 1;
    }
    CandidateCard:focus { border: round $accent; border-title-color: $accent; }
    CandidateCard.-streaming { border-title-style: italic; }
    CandidateCard.-accepted { border: round $success; }
    CandidateCard > .candidate--selected { background: $accent; color: $background; text-style: bold; }
    CandidateCard > .candidate--unmet { color: $error; }
    """
    COMPONENT_CLASSES = {"candidate--selected", "candidate--unmet"}

    def __init__(self, state: CandidateState) -> None:
        super().__init__()  # no id: a fresh set of cards is mounted while the old one is removed
        self.state = state
        self.selected: int | None = None
        self.refresh_state()

    @property
    def slot(self) -> int:
        return self.state.slot

    def refresh_state(self) -> None:
        """Repaint after ``state`` changed. No layout pass: the card's size never depends on it."""
        state = self.state
        status = "streaming…" if state.streaming else state.finish_reason
        if state.report is not None:  # the badge says more than "eos"; other endings still show
            badge = report_badge(state.report)
            status = badge if status in ("eos", "constraint") else f"{status} · {badge}"
        self.border_title = f"#{state.slot + 1} · {status}"
        self.border_subtitle = f"{len(state.tokens)} tok" + (f" · seed {state.seed}" if state.seed is not None else "")
        self.set_class(state.streaming, "-streaming")
        self.refresh()

    def _span_owner(self, index: int) -> int:
        """The token whose piece shows token ``index`` (an empty piece is shown by the next one)."""
        pieces = self.state.pieces
        for j in range(index, len(pieces)):
            if pieces[j]:
                return j
        return index

    def render(self) -> Text:
        state = self.state
        text = Text()
        if state.prompt.strip():
            text.append(state.prompt.strip(), style="dim")
            if state.joiner:
                text.append(state.joiner)
        highlight = self._span_owner(self.selected) if self.selected is not None else None
        accent = self.get_component_rich_style("candidate--selected")
        focus_at = len(text)
        breaks = state.line_breaks()  # constrained lines the stream joined with spaces
        offset = 0
        for i, piece in enumerate(state.pieces):
            style = Style(meta={"token": i})
            if i == highlight:
                style = accent + style
                focus_at = len(text)
            while breaks and breaks[0] < offset + len(piece):
                cut = max(0, breaks.pop(0) - offset)
                text.append(piece[:cut].rstrip(" "), style=style)
                text.append("\n")
                piece, offset = piece[cut:], offset + cut
            text.append(piece, style=style)
            offset += len(piece)
        if state.streaming:
            text.append("▌", style="dim")
            focus_at = len(text)
        elif state.report is not None and not state.report.satisfied:
            text.append(f"\n✗ {'; '.join(state.report.reasons) or 'constraint not met'}",
                        style=self.get_component_rich_style("candidate--unmet"))
        if highlight is not None:
            return self._window(text, focus_at, centre=True)
        return self._window(text, focus_at if state.streaming else 0, centre=False)

    def _window(self, text: Text, offset: int, *, centre: bool) -> Text:
        """The wrapped lines that fit, showing character ``offset``: the selected token in the
        middle, or the end while streaming (a long candidate follows its output)."""
        width, height = self.content_size.width, self.content_size.height
        if width <= 0 or height <= 0:
            return text
        lines = text.wrap(self.app.console, width, overflow="fold")
        if len(lines) <= height:
            return text
        position, row = 0, 0
        for row, line in enumerate(lines):
            position += len(line.plain)
            if position >= offset:
                break
        start = row - height // 2 if centre else row - height + 1
        start = max(0, min(start, len(lines) - height))
        return Text("\n").join(lines[start:start + height])

    # -- actions -------------------------------------------------------------------------------
    def select_token(self, index: int | None) -> None:
        count = len(self.state.tokens)
        if index is None or count == 0:
            self.selected = None
        else:
            self.selected = max(0, min(index, count - 1))
            self.post_message(TokenSelected(self.slot, self.selected))
        self.refresh()

    def action_move(self, delta: int) -> None:
        start = -1 if self.selected is None and delta > 0 else (self.selected or 0)
        self.select_token(start + delta)

    def action_move_to(self, index: int) -> None:
        self.select_token(index if index >= 0 else len(self.state.tokens) - 1)

    def action_accept(self) -> None:
        self.post_message(AcceptCandidate(self.slot))

    def action_alternative(self, k: int) -> None:
        if self.selected is None or self.state.streaming:
            return
        alternatives = self.state.tokens[self.selected].alternatives
        if k < len(alternatives):
            self.post_message(AlternativeChosen(self.slot, self.selected, alternatives[k].token_id))

    def on_click(self, event: events.Click) -> None:
        token = event.style.meta.get("token") if event.style else None
        if isinstance(token, int):
            self.focus()
            self.select_token(token)

    def on_focus(self) -> None:
        if self.selected is not None:
            self.post_message(TokenSelected(self.slot, self.selected))


class CandidateStrip(HorizontalScroll):
    """The cards side by side (n of them); scrolls sideways when they do not fit."""

    DEFAULT_CSS = """
    CandidateStrip { height: 10; scrollbar-size-horizontal: 1; }
    CandidateStrip > .placeholder { color: $text-muted; padding: 1 2; width: 1fr; }
    """

    def __init__(self, *children: Widget, id: str | None = None) -> None:
        super().__init__(*children, id=id)
        self._cards: dict[int, CandidateCard] = {}

    def show(self, states: list[CandidateState]) -> None:
        """Replace whatever is shown with one card per state."""
        self.remove_children()
        self._cards = {state.slot: CandidateCard(state) for state in states}
        self.mount_all(self._cards.values())

    def cards(self) -> list[CandidateCard]:
        return list(self._cards.values())

    def card(self, slot: int) -> CandidateCard | None:
        return self._cards.get(slot)
