"""Candidate cards: each shows one continuation as it streams, token by token.

A card is focusable. ←/→ select a token (its alternatives show in the inspector), 1–9 and 0
rewrite the candidate from that token with that alternative, E edits the text and continues
from it, Enter accepts the candidate into the draft.
A mouse click on a token selects it too. Generated line breaks show as lines, each without
the space a tokenizer puts before a word; why a candidate stopped short (an unmet constraint,
the model's window) stays visible at the bottom of its card however long the text is.

The strip sizes the cards to fit: all of them side by side when each gets ``MIN_CARD_WIDTH``
cells, else as many as fit, with the strip saying which ones show (``RangeChanged``) and
Tab moving to the next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.containers import HorizontalScroll
from textual.message import Message
from textual.widget import Widget

from kolyric.app.guard import Guarded
from kolyric.app.messages import (
    AcceptCandidate,
    AlternativeChosen,
    CardFocused,
    EditCandidate,
    KeepCandidate,
    ModelPick,
    TokenSelected,
)
from kolyric.app.session import CandidateState
from kolyric.engine.lyric.report import badge as report_badge

MIN_CARD_WIDTH = 22  # cells, borders included: room for a line of about eight syllables


class CandidateCard(Guarded, Widget, can_focus=True):
    """One candidate; ``state`` is updated by the playground, then ``refresh_state()``."""

    BINDINGS = [
        Binding("left", "move(-1)", "Prev token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("home", "move_to(0)", "First token", show=False),
        Binding("end", "move_to(-1)", "Last token", show=False),
        Binding("enter", "accept", "Accept"),
        Binding("e", "edit", "Edit", tooltip="Edit the text, then continue from it"),
        Binding("space", "model_pick", "Model's pick", tooltip="Step mode: take the model's pick", show=False),
        Binding("k", "keep", "Keep", tooltip="Keep a compared preset's card in the tree", show=False),
        # 1-9 and 0 choose the first ten alternatives; the inspector reaches the rest (up to 20)
        *[Binding(str(k % 10), f"alternative({k - 1})", f"Alternative {k}", show=False) for k in range(1, 11)],
    ]
    DEFAULT_CSS = """
    CandidateCard {
        width: 1fr;
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
    CandidateCard > .candidate--limit { color: $warning; }
    """
    COMPONENT_CLASSES = {"candidate--selected", "candidate--unmet", "candidate--limit"}

    def __init__(self, state: CandidateState, total: int = 1) -> None:
        super().__init__()  # no id: a fresh set of cards is mounted while the old one is removed
        self.state = state
        self.total = total  # cards in the strip: the title says "#2 of 4"
        self.selected: int | None = None
        self.refresh_state()

    @property
    def slot(self) -> int:
        return self.state.slot

    def refresh_state(self) -> None:
        """Repaint after ``state`` changed. No layout pass: the card's size never depends on it."""
        state = self.state
        status = "streaming…" if state.streaming else state.finish_reason
        if state.window_limit is not None and status == "length":
            status = "window full"
        if state.report is not None:  # the badge says more than "eos"; other endings still show
            badge = report_badge(state.report)
            status = badge if status in ("eos", "constraint") else f"{status} · {badge}"
        number = state.title or f"#{state.slot + 1}" + (f" of {self.total}" if self.total > 1 else "")
        self.border_title = f"{number} · {status}"
        seed = f" · seed {state.seed}" if state.seed is not None else ""
        self.border_subtitle = f"{state.subtitle or f'{len(state.tokens)} tok'}{seed}"
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
        line_start: bool | None = not text.plain or text.plain.endswith("\n")
        for i, piece in enumerate(state.pieces):
            style = Style(meta={"token": i})
            if i == highlight:
                style = accent + style
                focus_at = len(text)
            while breaks and breaks[0] < offset + len(piece):
                cut = max(0, breaks.pop(0) - offset)
                _append_lines(text, piece[:cut].rstrip(" "), style, line_start)
                text.append("\n")
                line_start = True
                piece, offset = piece[cut:], offset + cut
            line_start = _append_lines(text, piece, style, line_start)
            offset += len(piece)
        if state.streaming:
            text.append("▌", style="dim")
            focus_at = len(text)
        footer = self._footer()
        if highlight is not None:
            return self._window(text, focus_at, centre=True, footer=footer)
        return self._window(text, focus_at if state.streaming else 0, centre=False, footer=footer)

    def _footer(self) -> Text | None:
        """Why the candidate stopped short, shown below its text whatever its length."""
        state = self.state
        if state.streaming:
            return None
        if state.report is not None and not state.report.satisfied:
            return Text(
                f"✗ {'; '.join(state.report.reasons) or 'constraint not met'}",
                style=self.get_component_rich_style("candidate--unmet"),
            )
        if state.window_limit is not None and state.finish_reason == "length":
            return Text(
                f"⚠ stopped at the model's window of {state.window_limit} tokens (the prompt and "
                "the new tokens share it), not at max_length",
                style=self.get_component_rich_style("candidate--limit"),
            )
        return None

    def _window(self, text: Text, offset: int, *, centre: bool, footer: Text | None = None) -> Text:
        """The wrapped lines that fit, showing character ``offset``: the selected token in the
        middle, or the end while streaming (a long candidate follows its output). ``footer``
        always shows, below them."""
        width, height = self.content_size.width, self.content_size.height
        if width <= 0 or height <= 0:
            return text if footer is None else Text("\n").join([text, footer])
        console = self.app.console
        tail = list(footer.wrap(console, width, overflow="fold")) if footer is not None else []
        lines = text.wrap(console, width, overflow="fold")
        # The reason keeps two rows, a third of a taller card, or every row the text leaves empty
        # (its first rows, ending in …): the lyrics are what the card is for; the whole reason is
        # in the history (F5) and the export.
        cap = max(2, height // 3, height - len(lines))
        if len(tail) > cap:
            tail = [*tail[: cap - 1], Text(tail[cap - 1].plain[: max(0, width - 1)] + "…", style=tail[0].style)]
        room = height - len(tail)
        if len(lines) <= room:
            return Text("\n").join([*lines, *tail]) if tail else text
        # the wrapped row holding ``offset`` (the last row when it lies past the end)
        position, row = 0, max(len(lines) - 1, 0)
        for index, line in enumerate(lines):
            position += len(line.plain)
            if position >= offset:
                row = index
                break
        start = row - room // 2 if centre else row - room + 1
        start = max(0, min(start, len(lines) - room))
        return Text("\n").join([*lines[start : start + room], *tail]) if room > 0 else Text("\n").join(tail)

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

    def action_model_pick(self) -> None:
        self.post_message(ModelPick(self.slot))

    def action_keep(self) -> None:
        if not self.state.streaming:
            self.post_message(KeepCandidate(self.slot))

    def action_edit(self) -> None:
        if not self.state.streaming:
            self.post_message(EditCandidate(self.slot))

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
        # the inspector follows the focused card: its selected token, or nothing yet
        if self.selected is not None:
            self.post_message(TokenSelected(self.slot, self.selected))
        else:
            self.post_message(CardFocused(self.slot))


def _append_lines(text: Text, piece: str, style: Style, line_start: bool | None) -> bool | None:
    """Append ``piece`` as the final text shows it: a line's first piece loses the space the
    tokenizer put before its word, and a run of spaces across pieces shows as one.
    ``line_start``: True where ``text`` ends where a line begins, None where it ends in a space,
    False elsewhere; returns the same after ``piece``."""
    for n, part in enumerate(piece.split("\n")):
        if n and text.plain:  # a break before anything is shown would only be a blank first row
            text.append("\n")
            line_start = True
        if line_start or line_start is None:
            part = part.lstrip(" ")
        part = _SPACES.sub(" ", part)
        if part:
            text.append(part, style=style)
            line_start = None if part.endswith(" ") else False
    return line_start


_SPACES = re.compile(r" {2,}")


class CandidateStrip(Guarded, HorizontalScroll):
    """The cards side by side; as many as fit at ``MIN_CARD_WIDTH`` or more each, the rest a
    scroll (or Tab) away, with ``RangeChanged`` saying which show."""

    DEFAULT_CSS = """
    CandidateStrip { height: 10; scrollbar-size-horizontal: 1; }
    CandidateStrip > .placeholder { color: $text-muted; padding: 1 2; width: 1fr; }
    """

    @dataclass
    class RangeChanged(Message):
        """Cards ``first``..``last`` (1-based) of ``total`` are in view."""

        first: int
        last: int
        total: int

    def __init__(self, *children: Widget, id: str | None = None) -> None:
        super().__init__(*children, id=id)
        self._cards: dict[int, CandidateCard] = {}
        self._range: tuple[int, int, int] | None = None

    def show(self, states: list[CandidateState]) -> None:
        """Replace whatever is shown with one card per state."""
        self.remove_children()
        self._cards = {state.slot: CandidateCard(state, total=len(states)) for state in states}
        self._fit()
        self.mount_all(self._cards.values())
        self.call_after_refresh(self._report_range)

    def per_view(self) -> int:
        """How many cards fit side by side."""
        return max(1, self.size.width // MIN_CARD_WIDTH) if self.size.width else len(self._cards) or 1

    def _fit(self) -> None:
        """Equal widths: every card when they fit, else ``per_view`` cards fill the view."""
        cards = list(self._cards.values())
        if not cards or not self.size.width:
            return
        shown = min(len(cards), self.per_view())
        width = self.size.width // shown
        for card in cards:
            card.styles.width = width if shown < len(cards) else "1fr"

    def on_resize(self) -> None:
        self._fit()
        self._report_range()

    def watch_scroll_x(self, old: float, new: float) -> None:
        super().watch_scroll_x(old, new)
        self._report_range()

    def _report_range(self) -> None:
        cards = list(self._cards.values())
        if not cards:
            return
        # From the widths _fit gives, not from the cards' regions: those lag a layout behind a
        # resize or a new set of cards, and the title must never say what the screen does not.
        per = min(len(cards), self.per_view())
        if per >= len(cards) or not self.size.width:
            first, last = 1, per if self.size.width else len(cards)
        else:
            width = max(1, self.size.width // per)
            first = min(len(cards), int(self.scroll_x // width) + 1)
            last = min(len(cards), int((self.scroll_x + self.size.width - 1) // width) + 1)
        if (first, last, len(cards)) != self._range:
            self._range = (first, last, len(cards))
            self.post_message(self.RangeChanged(first, last, len(cards)))

    def cards(self) -> list[CandidateCard]:
        return list(self._cards.values())

    def card(self, slot: int) -> CandidateCard | None:
        return self._cards.get(slot)
