"""An app's first paint in a fresh interpreter (in the test's own, other tests may have imported torch
already): the CPU seconds it took, and whether torch and transformers were imported by then."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass

# The script's ``setup`` makes ``app``. The first frame Textual draws (App._display with something
# to show) records what is imported at that moment. The CPU time runs from the script's first line
# to the started app (after its first pause), where the imports are read again. With
# ``wait_for_model`` it then waits for the app's model load to end.
_SCRIPT = """
import asyncio, json, sys, time
cpu = time.process_time()
from textual.app import App
painted = {{}}
_display = App._display
def _first_display(self, screen, renderable):
    if renderable is not None and not painted:
        painted.update(torch="torch" in sys.modules, transformers="transformers" in sys.modules)
    return _display(self, screen, renderable)
App._display = _first_display
{setup}
async def main():
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        cpu_s = time.process_time() - cpu
        started = {{"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}}
        loaded = False
        if {wait_for_model}:
            for _ in range(1200):
                if not app.status_busy:
                    break
                await asyncio.sleep(0.05)
            loaded = not app.status_busy and app.load_error is None
    result = {{"cpu_s": cpu_s, "painted": painted, "started": started, "loaded": loaded}}
    print(json.dumps({{**result, "torch": "torch" in sys.modules}}))
asyncio.run(main())
"""


@dataclass(frozen=True)
class FirstPaint:
    cpu_s: float
    torch_at_paint: bool
    transformers_at_paint: bool
    torch_at_start: bool  # once the app has started and settled (pilot.pause), before any model wait
    transformers_at_start: bool
    model_loaded: bool  # only with wait_for_model
    torch_at_end: bool


def first_paint(setup: str, env: dict[str, str], *, wait_for_model: bool = False) -> FirstPaint:
    script = _SCRIPT.format(setup=textwrap.dedent(setup), wait_for_model=wait_for_model)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["painted"], "Textual drew no frame (App._display was never called with a screen)"
    painted, started = got["painted"], got["started"]
    return FirstPaint(
        got["cpu_s"],
        painted["torch"],
        painted["transformers"],
        started["torch"],
        started["transformers"],
        got["loaded"],
        got["torch"],
    )
