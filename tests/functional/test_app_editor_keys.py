"""Keys of the draft editor that TextArea leaves unbound: Ctrl+Home and Ctrl+End."""

from __future__ import annotations

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.testing import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]

DRAFT = "[Verse 1]\n바람이 분다\n너를 보낸 그 날에\n눈물이 흐르네"


async def test_ctrl_home_and_ctrl_end_go_to_the_draft_ends():
    app = KolyricApp(cursor_blink=False, load_on_start=False)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        screen.editor.load(DRAFT)
        area = screen.editor.area
        area.focus()
        area.move_cursor((2, 3))
        await pilot.press("ctrl+end")
        assert area.cursor_location == (3, len("눈물이 흐르네"))
        await pilot.press("ctrl+home")
        assert area.cursor_location == (0, 0)
        await pilot.press("ctrl+shift+end")
        assert area.selected_text == DRAFT
