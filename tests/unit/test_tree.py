"""The tree of versions and the undo journal on disk: round trips, hostile files, no lost text."""

from __future__ import annotations

import json

import pytest

from kolyric.app.drafts import Draft, DraftStore, journal_from_json, journal_to_json
from kolyric.app.tree import Node, VersionTree
from kolyric.app.tree_format import FORMAT, Alt, Token
from kolyric.app.undo import UndoJournal


def node(text: str = "너를 사랑해", parent: int | None = None, at: int | None = None) -> Node:
    tokens = (Token(5, "▁사랑", 0.4, (Alt(5, "▁사랑", 0.4), Alt(9, "▁너", 0.2))), Token(1, "</s>", 0.9, ()))
    return Node(
        0,
        "branch" if parent else "generate",
        "너를",
        text,
        parent=parent,
        at=at,
        seed=7,
        settings={"strategy": "sample", "temperature": 0.9},
        pieces=(" 사랑", ""),
        _tokens=tokens,
        changes=({"from_token": 1, "changed": {"temperature": 1.5}},),
    )


def test_round_trip_keeps_every_field_and_alternative():
    tree = VersionTree()
    root = tree.add(node())
    child = tree.add(node("너를 너", parent=root.id, at=0))
    tree.set_current([child.id])
    tree.mark_accepted(root.id)
    again, skipped = VersionTree.from_json(tree.to_json())
    assert not skipped and again.current == [child.id] and again.accepted == {root.id}
    back = again.nodes[child.id]
    assert (back.parent, back.at, back.kind, back.seed) == (root.id, 0, "branch", 7)
    assert back.tokens == child.tokens and back.pieces == child.pieces
    assert back.stretches == [
        (0, {"strategy": "sample", "temperature": 0.9}),
        (1, {"strategy": "sample", "temperature": 1.5}),
    ]
    assert [n.id for n in again.children(root.id)] == [child.id]


@pytest.mark.parametrize(
    "bad",
    [
        {"format": FORMAT, "version": 99, "nodes": []},
        {"format": "something else", "nodes": []},
        [1, 2, 3],
    ],
)
def test_a_file_that_is_no_tree_is_set_aside(tmp_path, bad):
    store = DraftStore(tmp_path)
    store.tree_path.write_text(json.dumps(bad), encoding="utf-8")
    tree, notices = store.load_tree()
    assert len(tree) == 0 and notices and "unreadable" in notices[0]
    assert list(tmp_path.glob("tree.json.bad*")) or list(tmp_path.glob("*.bad-*"))


def test_bad_nodes_are_left_out_and_bad_token_columns_give_no_tokens(tmp_path):
    tree = VersionTree()
    tree.add(node())
    data = tree.to_dict()
    hostile = dict(data["nodes"][0], id=2, tokens={"ids": ["x"], "probs": [1e309], "alt_ids": [], "alt_probs": []})
    data["nodes"] += [{"id": "nope"}, {"id": 3, "kind": "???", "text": ""}, hostile, dict(data["nodes"][0])]
    store = DraftStore(tmp_path)
    store.tree_path.write_text(json.dumps(data), encoding="utf-8")
    loaded, notices = store.load_tree()
    assert sorted(loaded.nodes) == [1, 2] and "Left out 3" in notices[0]
    assert loaded.nodes[2].tokens == () and loaded.nodes[1].tokens == tree.nodes[1].tokens


def test_tree_saves_never_go_back_to_an_older_revision(tmp_path):
    store = DraftStore(tmp_path)
    assert store.save_tree("new", 5) and not store.save_tree("old", 4)
    assert store.tree_path.read_text(encoding="utf-8") == "new"


def test_journal_round_trips_in_the_draft_and_coalesces_typing():
    journal = UndoJournal(text="")
    for text in ["바", "바람", "바람이"]:
        journal.record(text)
    journal.record("바람이\n너를 사랑해", boundary=True)  # an accept: its own state
    assert journal.states == ["", "바람이", "바람이\n너를 사랑해"]
    states, at = journal.snapshot()
    draft = Draft(text="바람이\n너를 사랑해", undo=states, undo_at=at)
    back = Draft.from_json(draft.to_json())
    assert back.undo == states and back.undo_at == at
    again = UndoJournal(back.undo, back.undo_at, back.text)
    assert again.undo() == "바람이" and again.undo() == "" and again.undo() is None
    assert again.redo() == "바람이"
    assert journal_from_json(journal_to_json(("a", "abc", "xbc", ""))) == ("a", "abc", "xbc", "")


@pytest.mark.parametrize("undo", [[1, 2], ["a", [99, 0, "x"]], ["a", [0, 0]], "text", [["x"]]])
def test_a_damaged_journal_is_dropped_and_the_lyrics_kept(undo):
    raw = json.loads(Draft(text="가사").to_json())
    raw["undo"], raw["undo_at"] = undo, 1
    draft = Draft.from_json(json.dumps(raw))
    assert draft.text == "가사" and draft.undo == () and draft.undo_at == -1
