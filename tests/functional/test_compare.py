"""Compare presets: each preset's output equals a plain single run with that preset and seed, in
the terminal, in --json and in the playground's compare view."""

from __future__ import annotations

import json

import pytest

from kolyric.cli import main
from kolyric.compare import TUTORIAL_PRESETS, parse_names, preset_title
from kolyric.engine.settings import SettingsError, preset

NAMES = ["greedy", "top-p-0.92", "combined"]


def generate(capsys, model_dir, *flags: str) -> str:
    """What ``kolyric generate 바람이`` prints on the tiny model, seed 5, 8 tokens, with ``flags``."""
    args = ["generate", "바람이", "--model", str(model_dir), "--device", "cpu", "--seed", "5", "--max-length", "8"]
    assert main([*args, *flags]) == 0
    return capsys.readouterr().out


def single(capsys, model_dir, name: str) -> dict:
    return json.loads(generate(capsys, model_dir, "--preset", name, "--json"))


def test_compare_json_equals_single_runs(tiny_model_dir, capsys):
    out = json.loads(generate(capsys, tiny_model_dir, "--compare", ",".join(NAMES), "--json"))
    assert out["seed"] == 5 and [run["preset"] for run in out["compare"]] == NAMES
    for run in out["compare"]:
        alone = single(capsys, tiny_model_dir, run["preset"])
        assert run["candidates"] == alone["candidates"] and run["settings"] == alone["settings"]
        assert run["title"].startswith(run["preset"])


def test_compare_in_the_terminal_titles_each_preset(tiny_model_dir, capsys):
    shown = generate(capsys, tiny_model_dir, "--compare", "greedy,top-k-50")
    blocks = [b for b in shown.split("── ") if b.strip()]
    assert [b.split(" ·")[0] for b in blocks] == ["greedy", "top-k-50"]
    for block, name in zip(blocks, ["greedy", "top-k-50"]):
        alone = single(capsys, tiny_model_dir, name)
        assert alone["candidates"][0]["full_text"] in block


def test_compare_names_are_checked():
    assert parse_names("") == TUTORIAL_PRESETS
    for bad in ("greedy,nope", "greedy,greedy"):
        with pytest.raises(SettingsError) as caught:
            parse_names(bad)
        assert caught.value.problems[0].field == "compare"
    assert main(["generate", "x", "--compare", "greedy,nope"]) != 0
    assert preset_title("top-p-0.92", preset("top-p-0.92")) == "top-p-0.92 · sample, top_p 0.92"


@pytest.mark.anyio
@pytest.mark.usefixtures("dirs")
async def test_compare_view_cards_equal_single_runs_and_can_be_kept(tiny_model_dir):
    from kolyric.app.app import KolyricApp
    from kolyric.app.testing import wait_for_model, wait_until
    from kolyric.app.widgets.candidates import CandidateStrip
    from kolyric.engine.results import GenerationRequest

    app = KolyricApp(model=str(tiny_model_dir), device="cpu", cursor_blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_model(pilot)
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        screen.prompt_input.value = "바람이"
        screen.controls.set_values(seed=5, max_length=8)
        await pilot.press("f7")
        await wait_until(
            pilot, lambda: len(screen.compare.compared) == len(TUTORIAL_PRESETS), timeout=60, what="every preset"
        )
        cards = screen.query_one(CandidateStrip).cards()
        assert [str(c.border_title).split(" · ")[0] for c in cards] == list(TUTORIAL_PRESETS)
        assert "top_p 0.92" in str(cards[3].border_subtitle) and "seed 5" in str(cards[3].border_subtitle)
        for slot, name in enumerate(TUTORIAL_PRESETS):
            alone = app.host.generator.generate(GenerationRequest("바람이", None, preset(name, seed=5, max_length=8)))
            assert screen.states[slot].full_text == alone.candidates[0].full_text, name
            assert [t.token_id for t in screen.states[slot].tokens] == alone.candidates[0].token_ids[
                : len(screen.states[slot].tokens)
            ] or name.startswith("beam")
        assert len(screen.versions) == 0  # nothing is kept until asked
        cards[3].focus()
        await pilot.press("k")
        node = screen.versions.nodes[screen.slot_nodes[3]]
        assert node.kind == "compare" and node.settings["top_p"] == 0.92 and node.seed == 5
        await pilot.press("enter")  # accepting another card keeps it too
        assert len(screen.versions) == 1 and screen.editor.text == screen.states[3].full_text
