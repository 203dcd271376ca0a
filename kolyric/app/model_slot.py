"""The model the app is using, and loading a new one (from a worker thread only).

``ModelSlot.load`` imports torch (and transformers, unless the model's graph is cached) on
first use, so it must never run on the UI thread; it reports its phases through a callback so the app can show progress.
The new model replaces the old one only once it has loaded: a failed load leaves the
previous model in place.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kolyric.engine.loading import LoadedModel
    from kolyric.engine.stream import Generator

Progress = Callable[[str], None]


def default_specs() -> list[str]:
    """What to try when no model is configured: the hub default, then kolyric-mini."""
    from kolyric.engine.loading import DEFAULT_MODEL, MINI_PATH

    specs = [DEFAULT_MODEL]
    if (MINI_PATH / "config.json").is_file():
        specs.append("mini")
    return specs


def _quiet_transformers() -> None:
    """Progress bars written to the terminal would scribble over the app's screen. Set through
    the environment, which transformers reads when it is imported, so that a model whose graph
    is cached (which needs no transformers) does not import it for this."""
    import sys

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:  # it read the environment already
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


class ModelSlot:
    """Holds the loaded model and its ``Generator``; thread-safe swaps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loaded: LoadedModel | None = None
        self.generator: Generator | None = None
        self.spec: str | None = None

    @property
    def ready(self) -> bool:
        return self.generator is not None

    @property
    def description(self) -> str:
        return self.loaded.description if self.loaded is not None else "no model loaded"

    def load(
        self, spec: str, *, device: str = "auto", precision: str = "auto", progress: Progress = lambda phase: None
    ) -> tuple[str, list[str], float]:
        """Load ``spec`` (empty: the defaults in order); returns (spec used, notices, seconds).

        Raises ``ModelLoadError`` with a user-ready message when nothing could be loaded.
        """
        started = time.perf_counter()
        progress("importing the engine")
        _quiet_transformers()
        from kolyric.engine.loading import ModelLoadError, load_model
        from kolyric.engine.stream import Generator

        specs = [spec] if spec else default_specs()
        errors: list[str] = []
        for candidate in specs:
            progress(f"loading {candidate}")
            try:
                loaded = load_model(candidate, device=device, precision=precision, progress=progress)
            except ModelLoadError as exc:
                errors.append(str(exc))
                continue
            progress("preparing the generator")
            generator = Generator(loaded)
            with self._lock:
                self.loaded, self.generator, self.spec = loaded, generator, candidate
            notices = list(loaded.notices)
            if errors:
                notices.insert(0, f"fell back to {candidate}: {errors[0]}")
            return candidate, notices, time.perf_counter() - started
        raise ModelLoadError(" / ".join(errors) if errors else "no model to load")
