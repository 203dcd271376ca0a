"""The tree of versions (F6): every candidate of the draft, by prompt, branch under branch.

Each row is a node: its number, how it came about and, at a glance, how it differs: a branch
shows the tokens it shares with its parent dimmed and what it changed in bold, a regeneration
the same against the sibling before it. The highlighted node is previewed below (its text,
the settings of each stretch of its tokens, seed, model); ``c`` marks it for comparison and
``c`` on another shows the two side by side with their differences marked. Enter makes a node
the current candidate (its card, with every token's alternatives in the inspector), ``a``
accepts it into the draft. Nothing here removes a node.
"""

from __future__ import annotations

import difflib

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, Tree
from textual.widgets.tree import TreeNode

from kolyric.app.guard import Guarded
from kolyric.app.tree import Node, VersionTree, common_prefix
from kolyric.engine.settings import summary as settings_summary

KIND_MARK = {"generate": "●", "branch": "├", "edit": "✎", "continue": "→", "step": "⋯", "compare": "≡"}
PREVIEW_CHARS = 36  # of a row's text


def node_label(node: Node, against: Node | None, accepted: bool, current: bool) -> Text:
    """One row: "#12 ├ @4 seed 7 · 너를 사랑해…" with the shared part dimmed."""
    label = Text()
    label.append("✓" if accepted else "▶" if current else " ", style="green" if accepted else "bold")
    label.append(f"#{node.id} {KIND_MARK.get(node.kind, '?')} ")
    if node.at is not None:
        label.append(f"@{node.at + 1} ", style="dim")
    if node.seed is not None:
        label.append(f"s{node.seed} ", style="dim")
    text = node.text.replace("\n", " / ")
    shared = 0
    if against is not None:
        if node.kind == "branch" and node.at is not None:
            shared = len("".join(node.pieces[: node.at]))
            shared += len(node.prompt.strip()) + (1 if node.text[len(node.prompt.strip()) :][:1] == " " else 0)
        else:
            shared = len(_common_text(text, against.text.replace("\n", " / ")))
    shared = max(0, min(shared, len(text)))
    head = text[:shared]
    if len(head) > 8:
        head = "…" + head[-7:]
    label.append(head, style="dim")
    rest = text[shared:]
    label.append(rest[:PREVIEW_CHARS] + ("…" if len(rest) > PREVIEW_CHARS else ""), style="bold")
    return label


def _common_text(a: str, b: str) -> str:
    n = common_prefix([ord(c) for c in a], [ord(c) for c in b])
    return a[:n]


def describe(node: Node) -> Text:
    """The preview of one node: text, then how it was made."""
    out = Text()
    out.append(node.text + "\n", style="bold")
    origin = {
        "generate": "generated",
        "branch": f"branched from #{node.parent} at token {(node.at or 0) + 1}",
        "edit": f"#{node.parent} edited by hand",
        "continue": f"continued from the edit #{node.parent}",
        "step": "picked token by token",
        "compare": "kept from the compare view",
    }.get(node.kind, node.kind)
    out.append(
        f"{origin} · {len(node.pieces)} tokens · {node.finish_reason or '—'}"
        f"{f' · seed {node.seed}' if node.seed is not None else ''} · {node.model or 'model ?'}\n",
        style="dim",
    )
    for start, settings in node.stretches:
        out.append(f"from token {start + 1}: {settings_summary(settings)}\n", style="dim")
    return out


def compare(a: Node, b: Node) -> Text:
    """Two nodes one above the other, what differs marked (by character)."""
    out = Text()
    matcher = difflib.SequenceMatcher(None, a.text, b.text, autojunk=False)
    for node, side in ((a, 0), (b, 1)):
        out.append(f"#{node.id}: ", style="bold")
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            piece = a.text[i1:i2] if side == 0 else b.text[j1:j2]
            out.append(piece, style="" if op == "equal" else "bold reverse")
        out.append("\n")
    out.append(f"{matcher.ratio():.0%} alike", style="dim")
    return out


class TreeScreen(Guarded, ModalScreen[tuple[str, int] | None]):
    """Dismisses with ("current", node id), ("accept", node id) or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("a", "accept", "Accept"),
        Binding("c", "compare", "Compare"),
    ]
    DEFAULT_CSS = """
    TreeScreen .dialog { width: 100; }
    TreeScreen Tree { height: 12; border: none; }
    TreeScreen #tree-preview { height: 6; color: $text; }  /* fixed: a preview never re-lays the tree out */
    """

    def __init__(self, tree: VersionTree, prompt: str, current: list[int]) -> None:
        super().__init__()
        self.versions = tree
        self.prompt = prompt.strip()
        self.current = set(current)
        self.marked: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Versions · {len(self.versions)} candidates", classes="dialog-title")
            widget: Tree[int] = Tree("versions", id="tree")
            widget.show_root = False
            widget.guide_depth = 2
            self._fill(widget)
            yield widget
            yield Static("", id="tree-preview")
            yield Static(
                "Enter: make current · a: accept · c: mark, then c: compare · Esc: close", classes="dialog-help"
            )

    def _fill(self, widget: Tree[int]) -> None:
        prompts = self.versions.prompts()
        if self.prompt in prompts:  # the current prompt's branches first, open
            prompts.remove(self.prompt)
            prompts.insert(0, self.prompt)
        for n, prompt in enumerate(prompts):
            roots = self.versions.roots(prompt)
            group = widget.root.add(
                Text.assemble((prompt or "(empty prompt)", "bold"), f"  {len(roots)} runs"), expand=n == 0
            )
            previous: Node | None = None
            for node in roots:
                self._add(group, node, previous)
                previous = node

    def _add(self, parent_row: TreeNode[int], node: Node, against: Node | None) -> None:
        children = self.versions.children(node.id)
        label = node_label(node, against, node.id in self.versions.accepted, node.id in self.current)
        if children:
            row = parent_row.add(label, data=node.id, expand=True)
            for child in children:
                self._add(row, child, node)
        else:
            parent_row.add_leaf(label, data=node.id)

    def on_mount(self) -> None:
        widget = self.query_one(Tree)
        widget.focus()
        target = max(self.current) if self.current else None
        for line in range(widget.last_line + 1):
            row = widget.get_node_at_line(line)
            if row is not None and row.data is not None and (target is None or row.data == target):
                widget.move_cursor(row)
                break

    def _highlighted(self) -> Node | None:
        row = self.query_one(Tree).cursor_node
        return self.versions.nodes.get(row.data) if row is not None and row.data is not None else None

    @on(Tree.NodeHighlighted)
    def _preview(self) -> None:
        node = self._highlighted()
        preview = self.query_one("#tree-preview", Static)
        if node is None:
            preview.update("")
        elif self.marked is not None and self.marked != node.id and self.marked in self.versions.nodes:
            preview.update(compare(self.versions.nodes[self.marked], node))
        else:
            preview.update(describe(node))

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data is not None:
            self.dismiss(("current", int(event.node.data)))

    def action_accept(self) -> None:
        node = self._highlighted()
        if node is not None:
            self.dismiss(("accept", node.id))

    def action_compare(self) -> None:
        node = self._highlighted()
        if node is None:
            return
        if self.marked is None or self.marked == node.id:
            self.marked = None if self.marked == node.id else node.id
            self.notify(
                f"#{node.id} marked: move to another version and press c." if self.marked else "Unmarked.", timeout=3
            )
            self._preview()
        else:
            self.query_one("#tree-preview", Static).update(compare(self.versions.nodes[self.marked], node))


class EditScreen(Guarded, ModalScreen[str | None]):
    """Edit a candidate's text; Enter continues from the edited text (a new node), Esc cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Edit, then continue from the edited text", classes="dialog-title")
            yield Input(self.text.replace("\n", " "), id="edit-text")
            yield Static(
                "Enter: continue from it (the edit and the continuation are new versions) · Esc: cancel",
                classes="dialog-help",
            )

    def on_mount(self) -> None:
        self.app.settle_cursors(self)
        self.query_one(Input).focus()

    @on(Input.Submitted, "#edit-text")
    def _done(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)
