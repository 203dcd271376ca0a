"""The controls at the smallest and a roomy terminal: a bad value's field stays in view above the
problems box that names it."""

from __future__ import annotations

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.testing import wait_until
from kolyric.app.widgets.fields import ProblemsBox

SIZES = [(80, 24), (120, 40)]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def new_app(**kwargs) -> KolyricApp:
    return KolyricApp(cursor_blink=False, load_on_start=False, **kwargs)


@pytest.mark.parametrize("size", SIZES)
async def test_the_field_typed_in_stays_in_view_above_the_problems_box(size):
    app = new_app()
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        controls = screen.controls
        await wait_until(pilot, lambda: controls.ready, what="the controls")
        await pilot.pause()
        view = controls.content_region
        # the lowest text field wholly in view: the box, when it shows, docks over it
        shown = [
            row
            for row in controls.all_rows().values()
            if not row.choices and view.y <= row.control.region.y and row.control.region.bottom <= view.bottom
        ]
        row = max(shown, key=lambda r: r.control.region.y)
        row.control.focus()
        await pilot.pause()
        await pilot.press("end", "x")  # no count, rate or list of those fields takes a trailing "x"
        await wait_until(pilot, lambda: row.invalid, what="the bad value")
        box = controls.query_one(ProblemsBox)
        await wait_until(pilot, lambda: box.region.height > 0, what="the problems box")
        await pilot.pause()
        field = row.control.region
        assert not field.overlaps(box.region), (field, box.region)
        assert controls.content_region.contains_region(field)
        assert box.lines and row.label_text in box.lines[0]
        assert app.is_running and not app.errors.reported


# -- fitting 80x24: text is cut with "…" on a whole syllable, measured in cells -----------------
LONG = "가나다라마바사아자차카타파하" * 3  # one word of 42 syllables, 84 cells


def test_ellipsize_and_fold_count_cells_and_keep_whole_syllables():
    from rich.cells import cell_len

    from kolyric.app.widgets.fit import ellipsize, fold_long_words, pad_cells

    assert ellipsize("사랑해요", 8) == "사랑해요"
    assert ellipsize("사랑해요", 7) == "사랑해…"  # 6 cells and the ellipsis: never half of 요
    assert ellipsize("사랑해요", 6) == "사랑…"
    assert ellipsize("ab 사랑", 4) == "ab…"
    assert pad_cells("가나다라마", 10) == "가나다라마" and pad_cells("가나다라마바", 10) == "가나다라… "
    assert cell_len(pad_cells("ab", 10)) == 10
    folded = fold_long_words(f"끝 {LONG} 끝", 36)
    assert folded.replace("\n", "") == f"끝 {LONG} 끝"
    assert all(cell_len(word) <= 36 for line in folded.split("\n") for word in line.split(" "))
    assert fold_long_words("[b]" + LONG + "[/b]", 36, markup=True) == "[b]" + LONG + "[/b]"
    path = "/tmp/" + "a" * 80 + "/model"  # narrow text: Textual folds it, whole
    assert fold_long_words(path, 36) == path
    assert fold_long_words("/tmp/" + LONG + ".txt", 36) == "/tmp/" + LONG + ".txt"  # a path stays copyable


@pytest.mark.parametrize("size", SIZES)
async def test_the_status_bar_fits_its_three_parts(size):
    from rich.cells import cell_len

    from kolyric.app.widgets.status import StatusBar

    app = new_app()
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.controls.ready, what="the controls")
        app.status_model = "skt/kogpt2-base-v2 · 125M · int8 · cpu · " + LONG
        app.status_activity = "sample 3/4 · 14.2 tok/s · token 37 of 80 · " + LONG
        app.status_draft = "draft: " + LONG + ".txt (saved 12:34)"
        await pilot.pause()
        await pilot.pause()
        bar = app.screen.query_one(StatusBar)
        parts = [bar.query_one(f"#status-{name}") for name in ("model", "activity", "draft")]
        assert sum(p.outer_size.width for p in parts) <= size[0]
        for part in parts:
            shown = str(part.render())
            assert part.content_size.width >= 8  # each part keeps room to say something
            assert cell_len(shown) <= part.content_size.width and shown.endswith("…"), (part.id, shown)
            assert shown[-2] in part.id or "\uac00" <= shown[-2] <= "\ud7a3" or shown[-2].isascii()
        # a model's long path gives way to its size and device, cut at its start
        app.status_model = "/home/writer/kolyric/runs/" + "긴이름" * 10 + "/model · 1.2M params · cpu"
        await pilot.pause()
        shown = str(parts[0].render())
        assert shown.startswith("…") and shown.endswith("/model · 1.2M params · cpu"), shown


@pytest.mark.parametrize("size", SIZES)
async def test_the_inspector_rows_and_title_fit(size):
    from rich.cells import cell_len
    from textual.widgets import OptionList

    from kolyric.app.widgets.inspector import TokenInspector
    from kolyric.engine.results import Alternative, TokenInfo

    app = new_app()
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.controls.ready, what="the controls")
        words = [" 사랑해요요", "그리움이여", "가나다라마바", "abc", "\n"]
        alts = tuple(Alternative(i, w, p) for i, (w, p) in enumerate(zip(words, (0.452, 0.2, 0.1, 0.05, 0.01))))
        inspector = app.screen.query_one(TokenInspector)
        inspector.show(0, 11, TokenInfo(0, " " + LONG, 0.452, alts))
        await pilot.pause()
        title = inspector.query_one("#inspector-title")
        shown = title.render().plain
        assert "p 45.2%" in shown and shown.endswith("…") and cell_len(shown) <= title.content_size.width
        options = inspector.query_one(OptionList)
        width = options.scrollable_content_region.width
        prompts = [options.get_option_at_index(i).prompt.plain for i in range(options.option_count)]
        assert all(cell_len(p) <= width for p in prompts), (width, prompts)
        assert "가나다라…" in prompts[2] and "45.2%" in prompts[0]


@pytest.mark.parametrize("size", SIZES)
async def test_the_history_keeps_its_help_line(size):
    from kolyric.app.screens.history import HistoryScreen
    from kolyric.app.session import HistoryEntry

    app = new_app()
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.controls.ready, what="the controls")
        entry = HistoryEntry(
            "그대 곁에 있을래 " * 5 + "\n눈물이 흐르네", "바람이 분다", "긍정", "sample · seed 7 · eos"
        )
        app.push_screen(HistoryScreen([entry] * 8))
        await pilot.pause()
        await pilot.pause()
        dialog = app.screen.query_one(".dialog")
        help_line = app.screen.query(".dialog-help").last()
        assert dialog.content_region.contains_region(help_line.region), (dialog.content_region, help_line.region)
        assert dialog.scroll_offset.y == 0
        assert app.is_running and not app.errors.reported


@pytest.mark.parametrize("size", SIZES)
async def test_a_toast_keeps_every_syllable(size):
    from textual.geometry import Region
    from textual.widgets._toast import Toast

    app = new_app()
    async with app.run_test(size=size, notifications=True) as pilot:
        await wait_until(pilot, lambda: app.screen.controls.ready, what="the controls")
        message = f"학습이 끝났습니다. {LONG} 결과는 여기에 저장되었습니다"
        app.notify(message, title="Training", timeout=30)
        await wait_until(pilot, lambda: list(app.screen.query(Toast)), what="the toast")
        await pilot.pause()
        toast = app.screen.query_one(Toast)
        size = toast.size
        lines = toast.render_lines(Region(0, 0, size.width, size.height + 4))
        text = "".join(seg.text for line in lines for seg in line)
        assert text.replace("▌", "").replace(" ", "").endswith(message.replace(" ", "")), text
