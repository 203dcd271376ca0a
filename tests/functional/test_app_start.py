"""Start-up: first paint without torch, the status bar, a failed load and the model picker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.screens.model_picker import ModelPickerScreen
from kolyric.app.testing import wait_for_model, wait_until

SIZE = (120, 36)
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def test_first_paint_is_fast_and_torch_free(tmp_path):
    # A fresh interpreter: in this one, other tests may have imported torch already. CPU time
    # is the measure (wall time on a shared test machine depends on its other load).
    script = textwrap.dedent("""
        import asyncio, sys, time
        cpu, wall = time.process_time(), time.perf_counter()
        from kolyric.app.app import KolyricApp

        async def main():
            app = KolyricApp(load_on_start=False)
            async with app.run_test(size=(120, 36)) as pilot:
                await pilot.pause()
                print(f"{time.process_time() - cpu:.3f} {time.perf_counter() - wall:.3f}",
                      "torch" in sys.modules, "transformers" in sys.modules)

        asyncio.run(main())
    """)
    env = {**os.environ, "KOLYRIC_CONFIG_DIR": str(tmp_path / "c"), "KOLYRIC_DATA_DIR": str(tmp_path / "d")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    cpu_s, wall_s, torch_loaded, transformers_loaded = out.stdout.split()
    assert torch_loaded == "False" and transformers_loaded == "False"
    assert float(cpu_s) < 1.0, f"first paint took {cpu_s} s of CPU ({wall_s} s wall)"


async def test_status_bar_names_model_size_and_device(tiny_model_dir):
    app = KolyricApp(model=str(tiny_model_dir), precision="fp32", device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_model(pilot)
        assert str(tiny_model_dir) in app.status_model
        assert "params" in app.status_model and "cpu" in app.status_model
        shown = str(app.screen.query_one("#status-model").render())
        assert "params" in shown


async def test_failed_load_keeps_app_up_and_picker_loads_another(tiny_model_dir, dirs):
    missing = str(dirs / "no-such-model")
    app = KolyricApp(model=missing, device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        picker = await wait_until(pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen,
                                  what="the model picker")
        assert "no such file or directory" in str(picker.query_one("#picker-error").render())
        assert not app.host.ready
        # the picker refuses a path that does not exist, without closing
        picker.query_one("#model-spec").value = str(dirs / "still-missing")
        await pilot.press("enter")
        assert isinstance(app.screen, ModelPickerScreen)
        picker.query_one("#model-spec").value = str(tiny_model_dir)
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen))
        await wait_until(pilot, lambda: app.host.ready and not app.status_busy, what="the picked model")
        assert app.load_error is None
        await wait_until(pilot, lambda: (dirs / "config" / "settings.toml").exists(), what="settings saved")
    saved = tomllib.loads((dirs / "config" / "settings.toml").read_text())
    assert saved["model"] == str(tiny_model_dir)
    assert saved["recent_models"][0] == str(tiny_model_dir)
