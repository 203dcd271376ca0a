"""Live controls that remember which settings made which tokens of a stream.

``Generator.stream`` reads ``LiveControls.current`` when a stream starts and again before the
first token after each change (``kolyric.engine.stream``: "the loop reads them before each
token"). A read on the stream's own thread therefore marks where the settings it returns take
over: the step after the last one the worker has passed on. Reads from other threads (the UI
showing the current values) are not marks. Imported when a stream starts (it imports the
engine, and with it torch).
"""

from __future__ import annotations

import threading

from kolyric.engine.settings import DecodingSettings
from kolyric.engine.stream import LiveControls


class RecordingControls(LiveControls):
    def __init__(self, settings: DecodingSettings) -> None:
        super().__init__(settings)
        self.stream_thread: int | None = None  # set by the worker before it starts the stream
        self.steps_done = 0  # steps whose tokens the worker has passed on
        self.timeline: list[tuple[int, DecodingSettings]] = []  # (first step, settings), in order
        self._marks = threading.Lock()

    @property
    def current(self) -> DecodingSettings:
        settings = super().current
        if threading.get_ident() == self.stream_thread:
            with self._marks:
                if self.timeline and self.timeline[-1][0] == self.steps_done:
                    self.timeline[-1] = (self.steps_done, settings)  # e.g. the seed filled in at the start
                elif not self.timeline or self.timeline[-1][1] is not settings:
                    self.timeline.append((self.steps_done, settings))
        return settings

    def marks(self) -> list[tuple[int, DecodingSettings]]:
        with self._marks:
            return list(self.timeline)
