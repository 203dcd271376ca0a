"""The training screen: the form, a real tiny run, its progress, cancel, a crash, and the result."""

from __future__ import annotations

import sys
import textwrap

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.screens.playground import PlaygroundScreen
from kolyric.app.screens.training import TrainingScreen
from kolyric.app.testing import wait_for_model, wait_until
from kolyric.app.widgets.fields import FieldRow
from kolyric.app.widgets.plot import LossPlot
from tests.conftest import CORPUS_DIR

SIZE = (120, 36)
TINY_SHAPE = ("--vocab-size 500 --n-layer 1 --n-embd 32 --n-head 2 --n-positions 64 "
              "--num-workers 0 --val-check-interval 2")
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def fill(screen: TrainingScreen, **values) -> None:
    for name, value in values.items():
        screen.query_one(f"#train-{name}").value = value


async def open_training(pilot) -> TrainingScreen:
    await pilot.press("f3")
    screen = pilot.app.screen
    assert isinstance(screen, TrainingScreen)
    return screen


async def test_form_is_validated_like_the_controls():
    app = KolyricApp(load_on_start=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        assert screen.query_one("#train-max_seq_length").value == "32"
        assert screen.query_one("#train-batch_size").value == "32"
        assert screen.query_one("#train-lr").value == "5e-05"
        assert screen.query_one("#train-epochs").value == "3"
        assert screen.query_one("#train-seed").value == "7"
        fill(screen, batch_size="0", lr="fast")
        await pilot.press("ctrl+g")
        assert screen.process is None
        assert screen.query_one("#train-row-batch_size", FieldRow).invalid
        assert "[1, 4096]" in str(screen.query_one("#train-error-batch_size").render())
        assert "got 'fast'" in str(screen.query_one("#train-error-lr").render())
        fill(screen, batch_size="8")
        await pilot.pause()
        assert not screen.query_one("#train-row-batch_size", FieldRow).invalid
        screen.query_one("#train-from_scratch").value = True
        await pilot.pause()
        assert screen.query_one("#train-model").disabled
        assert screen.query_one("#train-lr").value == "fast"  # a value the user typed is kept


async def test_tiny_training_run_from_the_screen_then_open_it(dirs):
    app = KolyricApp(load_on_start=False, cursor_blink=False, device="cpu")
    out = dirs / "run"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        screen.query_one("#train-from_scratch").value = True
        await pilot.pause()
        assert screen.query_one("#train-lr").value == "0.001"  # the from-scratch default
        fill(screen, corpus_dir=str(CORPUS_DIR), batch_size="8", epochs="1", limit_train="64", limit_val="32",
             max_steps="3", out=str(out), extra=TINY_SHAPE)
        await pilot.press("ctrl+g")
        assert screen.process is not None
        assert screen.query_one("#train-start").disabled and not screen.query_one("#train-cancel").disabled
        await wait_until(pilot, lambda: screen.events_seen >= 3, timeout=60, what="the first events")
        await wait_until(pilot, lambda: screen.process is None, timeout=120, what="the run to end")
        assert screen.result_path == str(out / "model"), screen.query_one("#train-log").lines[-5:]
        plot = screen.query_one(LossPlot)
        assert plot.series["loss"].points and plot.series["val_loss"].points
        assert screen.query_one("#train-bar").percentage == 1.0
        assert screen.query_one("#train-checkpoints").option_count >= 1
        assert not screen.query_one("#train-open").disabled
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, PlaygroundScreen)
        await wait_for_model(pilot)
        assert app.host.spec == str(out / "model")
        assert str(out / "model") in app.status_model


FAKE_TRAINER = textwrap.dedent("""
    import json, signal, sys, time
    def emit(**event):
        print(json.dumps(event), flush=True)
    mode = sys.argv[1]
    emit(event="phase", phase="train", message="fake training")
    emit(event="step", step=1, total_steps=100, epoch=0, loss=3.0, eta_s=50.0, tokens_per_s=10.0)
    if mode == "crash":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("RuntimeError: CUDA out of memory (fake)", file=sys.stderr)
        sys.exit(1)
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    step = 1
    while not stop:
        step += 1
        emit(event="step", step=step, total_steps=100, epoch=0, loss=3.0 / step, eta_s=1.0)
        time.sleep(0.05)
    emit(event="checkpoint", path="/tmp/fake/last.ckpt", kind="interrupted", step=step)
    emit(event="finished", cancelled=True, best_ckpt=None, last_ckpt="/tmp/fake/last.ckpt", export_dir=None)
    sys.exit(130)
""")


async def test_a_crashing_trainer_is_reported_and_the_app_stays_up(tmp_path):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    app = KolyricApp(load_on_start=False, cursor_blink=False, train_command=[sys.executable, str(script), "crash"])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        fill(screen, model="any")
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: screen.process is None and screen.events_seen >= 2, timeout=30)
        phase = str(screen.query_one("#train-phase").render())
        assert "failed (exit status 1)" in phase and "CUDA out of memory (fake)" in phase
        assert screen.result_path is None and screen.query_one("#train-open").disabled
        assert not screen.query_one("#train-start").disabled  # ready for another try
        await pilot.press("f2")
        assert isinstance(app.screen, PlaygroundScreen)


async def test_cancel_stops_the_run_with_sigint(tmp_path):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    app = KolyricApp(load_on_start=False, cursor_blink=False, train_command=[sys.executable, str(script), "run"])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: screen.events_seen >= 4, timeout=30, what="steps")
        assert 0 < screen.query_one("#train-bar").percentage < 1
        await pilot.press("escape")
        await wait_until(pilot, lambda: screen.process is None, timeout=30, what="the cancelled run")
        assert "cancelled" in str(screen.query_one("#train-phase").render())
        assert screen.query_one("#train-checkpoints").option_count == 1
