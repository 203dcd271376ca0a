"""The tree of versions with a tiny real model: regenerate, branch and edit add nodes; a restart
brings the tree, every alternative and the undo history back."""

from __future__ import annotations

import json

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.screens.tree import EditScreen, TreeScreen
from kolyric.app.testing import screen_lines, wait_for_model, wait_until
from kolyric.app.widgets.candidates import CandidateStrip

SIZE = (120, 40)
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def new_app(model_dir) -> KolyricApp:
    return KolyricApp(model=str(model_dir), device="cpu", cursor_blink=False)


async def ready(pilot):
    await wait_for_model(pilot)
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    return screen


def tokens_of(state) -> list[tuple]:
    """A candidate's tokens with their alternatives, as the inspector shows them."""
    return [
        (t.token_id, t.text, round(t.prob, 6), tuple((a.token_id, a.text, round(a.prob, 6)) for a in t.alternatives))
        for t in state.tokens
    ]


async def generated(pilot, screen, key: str) -> None:
    before = len(screen.versions)
    await pilot.press(key)
    await wait_until(pilot, lambda: not screen.streaming and len(screen.versions) > before, what="the stream")


async def test_regenerate_branch_and_edit_build_a_tree_that_survives_a_restart(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.prompt_input.value = "노래"
        screen.controls.set_values(strategy="sample", n=1, max_length=6, seed=2, temperature=1.0)
        await generated(pilot, screen, "ctrl+g")
        screen.controls.set_values(seed=3)
        await generated(pilot, screen, "ctrl+r")  # a regeneration: a second root under the prompt
        card = screen.query_one(CandidateStrip).cards()[0]
        before = [t.token_id for t in card.state.tokens]
        card.focus()
        await pilot.press("right", "right", "right")
        chosen = next(a for a in card.state.tokens[2].alternatives if a.token_id != before[2])
        await generated(pilot, screen, str(card.state.tokens[2].alternatives.index(chosen) + 1))
        card = screen.query_one(CandidateStrip).cards()[0]
        card.focus()
        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        app.screen.query_one("#edit-text").value = "노래 부르며 걸어"
        await generated(pilot, screen, "enter")
        tree = screen.versions
        kinds = [node.kind for node in tree.nodes.values()]
        assert kinds == ["generate", "generate", "branch", "edit", "continue"]
        one, two, branch, edit, cont = tree.nodes.values()
        assert (branch.parent, branch.at) == (two.id, 2)
        assert [t.token_id for t in branch.tokens][:3] == before[:2] + [chosen.token_id]
        assert edit.parent == branch.id and edit.text == "노래 부르며 걸어"
        assert cont.parent == edit.id and cont.text.startswith("노래 부르며 걸어")
        assert one.seed == 2 and two.seed == 3 and one.settings["strategy"] == "sample"
        assert tree.current == [cont.id]
        live = tokens_of(screen.states[0])
        assert len(live) == len(cont.tokens) and all(len(t[3]) == 5 for t in live)
        await pilot.press("ctrl+o")  # accept into the draft
        accepted = screen.editor.text
        assert accepted.startswith("노래 부르며 걸어") and cont.id in tree.accepted
        # saved within a second, with no flush (a kill -9 now loses nothing)
        await wait_until(
            pilot,
            lambda: (
                app.drafts.tree_path.exists()
                and len(json.loads(app.drafts.tree_path.read_text("utf-8"))["nodes"]) == 5
                and json.loads(app.drafts.path.read_text("utf-8"))["text"] == accepted
            ),
            timeout=1.5,
            what="the tree and the draft on disk",
        )
        record = screen.export_record()  # the export's .kolyric.json carries the tree
        assert [n["kind"] for n in record["tree"]["nodes"]] == kinds and record["tree"]["format"] == "kolyric-tree"
        # F6: the tree panel shows the prompt's branches; Enter makes the first run current
        await pilot.press("f6")
        assert isinstance(app.screen, TreeScreen)
        shown = "\n".join(screen_lines(app))
        assert "#1" in shown and "#3" in shown and "@3" in shown  # the branch says where it diverged
    again = new_app(tiny_model_dir)
    async with again.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        tree = screen.versions
        assert [node.kind for node in tree.nodes.values()] == kinds
        assert tokens_of(screen.states[0]) == live  # every token and alternative, as live
        card = screen.query_one(CandidateStrip).cards()[0]
        card.focus()
        await pilot.press("right", "right")
        inspector = screen.query_one("#inspector")
        assert inspector.index == 1 and len(inspector.token.alternatives) == 5
        # branching from an old candidate works as from a live one
        alt = next(a for a in card.state.tokens[1].alternatives if a.token_id != card.state.tokens[1].token_id)
        await generated(pilot, screen, str(card.state.tokens[1].alternatives.index(alt) + 1))
        newest = list(tree.nodes.values())[-1]
        assert (newest.kind, newest.parent, newest.at) == ("branch", cont.id, 1)
        assert newest.tokens[1].token_id == alt.token_id
        # undo across the restart takes back the accept; redo puts it back
        screen.editor.area.focus()
        assert screen.editor.text == accepted
        await pilot.press("ctrl+z")
        assert screen.editor.text == ""
        await pilot.press("ctrl+y")
        assert screen.editor.text == accepted
        # the tree panel: Enter on a node makes it the current candidate
        await pilot.press("f6")
        assert isinstance(again.screen, TreeScreen)
        await pilot.press("home", "down", "enter")
        assert again.screen is screen and len(screen.states) == 1
        assert screen.states[0].full_text == tree.nodes[screen.slot_nodes[0]].text
