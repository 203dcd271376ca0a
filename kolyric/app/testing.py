"""Helpers for driving the app from Pilot tests and the latency benchmark.

``wait_until`` polls a condition while letting the app process messages, so a test waits
for a worker's result instead of sleeping a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from textual.app import App
    from textual.pilot import Pilot

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


async def wait_until(
    pilot: Pilot[object],
    condition: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Pause the pilot until ``condition()`` is truthy; returns its value, or fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(interval)


async def wait_for_model(pilot: Pilot[object], timeout: float = 60.0) -> None:
    """Until the app's model is loaded (fails early with the load error if it failed)."""
    app = pilot.app

    def done() -> bool:
        if app.load_error:
            raise AssertionError(f"model failed to load: {app.load_error}")
        return app.host.ready and not app.status_busy

    await wait_until(pilot, done, timeout, what="the model to load")


def send_key(pilot: Pilot[object], key: str, character: str | None = None) -> None:
    """Send a key the way a terminal driver does and return at once.

    ``Pilot.press`` waits until the app is idle, which a running stream postpones, so a test
    that must act *during* a stream sends keys with this instead.
    """
    from textual import events

    app = pilot.app
    event = events.Key(key, character)
    event.set_sender(app)
    app._driver.send_message(event)


def screen_lines(app: App[object]) -> list[str]:
    """The current screen as plain text, one string per terminal row (what a user reads)."""
    strips = app.screen._compositor.render_strips()
    return ["".join(segment.text for segment in strip) for strip in strips]
