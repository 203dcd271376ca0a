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
