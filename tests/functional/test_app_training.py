"""The training screen: the form, a real tiny run, its progress, cancel, a crash, and the result."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.screens.playground import PlaygroundScreen
from kolyric.app.screens.training import TrainingScreen
from kolyric.app.testing import wait_for_model, wait_until
from kolyric.app.widgets.fields import FieldRow
from kolyric.app.widgets.plot import LossPlot

from tests.conftest import CORPUS_DIR

SIZE = (120, 36)
TINY_SHAPE = (
    "--vocab-size 500 --n-layer 1 --n-embd 32 --n-head 2 --n-positions 64 --num-workers 0 --val-check-interval 2"
)
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
        assert "[1, 4096]" in screen.query_one("#train-row-batch_size", FieldRow).message
        assert "got 'fast'" in screen.query_one("#train-row-lr", FieldRow).message
        problems = str(screen.query_one("#train-problems").render())
        assert "batch_size: must be" in problems and "lr: must be" in problems
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
        fill(
            screen,
            corpus_dir=str(CORPUS_DIR),
            batch_size="8",
            epochs="1",
            limit_train="64",
            limit_val="32",
            max_steps="3",
            out=str(out),
            extra=TINY_SHAPE,
        )
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
        # Opening the run makes it the model kolyric starts with, and the app says so.
        assert any("starts with" in str(n.message) and str(out / "model") in str(n.message) for n in app._notifications)
        assert app.host.spec == str(out / "model")
        assert str(out / "model") in app.status_model


FAKE_TRAINER = textwrap.dedent("""
    import json, os, signal, sys, time
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
    out = sys.argv[sys.argv.index("--out") + 1]
    os.makedirs(out, exist_ok=True)
    last = os.path.join(out, "last.ckpt")
    open(last, "w").write("weights")
    emit(event="checkpoint", path=last, kind="interrupted", step=step)
    emit(event="finished", cancelled=True, best_ckpt=None, last_ckpt=last, export_dir=None)
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


# -- what the screen shows of a run, and a second run into the same folder -------------------------
EVENTFUL_TRAINER = textwrap.dedent("""
    import json, os, signal, sys, time
    out = sys.argv[sys.argv.index("--out") + 1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "argv.json"), "w") as f:
        json.dump(sys.argv[1:], f)
    def emit(**event):
        print(json.dumps({**event, "time": 1.796e9}), flush=True)
    def say(text):
        print(text, file=sys.stderr, flush=True)
    def checkpoint(name, kind, step):
        path = os.path.join(out, name)
        open(path, "w").write("weights")
        emit(event="checkpoint", path=path, kind=kind, step=step, epoch=0)
        say(f"saved {path}")
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    emit(event="phase", phase="train", message="training 0.1M parameters")
    say("training 0.1M parameters · 30 batches/epoch")
    checkpoint("epoch=0-val_loss=3.00.ckpt", "best", 3)
    checkpoint("last.ckpt", "last", 3)
    os.remove(os.path.join(out, "epoch=0-val_loss=3.00.ckpt"))  # a better one replaces it
    checkpoint("epoch=0-val_loss=2.00.ckpt", "best", 6)
    for step in range(7, 10):
        emit(event="step", step=step, total_steps=30, epoch=0, loss=3.0 / step, eta_s=5.0)
        say(f"step {step}/30 · loss {3.0 / step:.3f}")
    emit(event="phase", phase="waiting", message="waiting at step 9")
    if "--finish" not in sys.argv:
        while not stop:
            time.sleep(0.02)
    checkpoint("last.ckpt", "interrupted" if stop else "last", 9)
    emit(event="finished", cancelled=bool(stop), best_ckpt=os.path.join(out, "epoch=0-val_loss=2.00.ckpt"),
         last_ckpt=os.path.join(out, "last.ckpt"), export_dir=None, step=9)
    say("cancelled; best epoch=0-val_loss=2.00.ckpt" if stop else "done")
    sys.exit(0)
""")


def eventful_app(tmp_path, *flags: str) -> KolyricApp:
    script = tmp_path / "eventful_trainer.py"
    script.write_text(EVENTFUL_TRAINER)
    return KolyricApp(load_on_start=False, cursor_blink=False, train_command=[sys.executable, str(script), *flags])


async def test_checkpoints_list_the_files_there_and_the_log_reads_like_prose(tmp_path):
    app = eventful_app(tmp_path)
    out = tmp_path / "run"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        fill(screen, model="any", out=str(out))
        await pilot.press("ctrl+g")
        phase = screen.query_one("#train-phase")
        await wait_until(pilot, lambda: "waiting at step 9" in str(phase.render()), timeout=30, what="step 9")
        listed = [
            str(screen.query_one("#train-checkpoints").get_option_at_index(k).prompt)
            for k in range(screen.query_one("#train-checkpoints").option_count)
        ]
        assert len(listed) == 2 and any("val_loss=2.00" in item for item in listed), listed
        assert not any("val_loss=3.00" in item for item in listed)  # replaced by the run: gone
        log = [str(line) for line in screen.query_one("#train-log").lines]
        assert any("saved" in line for line in log) and any("step 9/30" in line for line in log)
        assert not any("event=" in line or '"event"' in line or "time=" in line for line in log), log
        # Esc at step 9 of 30: the bar stays at 9/30 and says so
        await pilot.press("escape")
        await wait_until(pilot, lambda: screen.process is None, timeout=30, what="the cancelled run")
        assert screen.query_one("#train-bar").percentage == pytest.approx(9 / 30)
        summary = str(phase.render())
        assert "cancelled at step 9 of 30" in summary and "100%" not in summary
        assert screen.query_one("#train-checkpoints").option_count == 2


async def test_a_second_run_into_the_same_folder_offers_resume_or_a_new_folder(tmp_path):
    app = eventful_app(tmp_path, "--finish")
    out = tmp_path / "run"
    out.mkdir()
    (out / "epoch=0-val_loss=2.50.ckpt").write_text("weights")  # an earlier run's (no last.ckpt)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        fill(screen, model="any", out=str(out))
        await pilot.press("ctrl+g")
        assert screen.process is None  # refused, with the way out
        message = screen.query_one("#train-row-out", FieldRow).message
        assert "already holds" in message and "resume" in message and "New folder" in message
        screen.query_one("#train-resume").value = True
        await pilot.pause()
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: screen.process is None and screen.events_seen, timeout=30, what="the run")
        argv = json.loads((out / "argv.json").read_text())
        assert argv[argv.index("--resume") + 1] == str(out / "epoch=0-val_loss=2.50.ckpt")
        # the run left last.ckpt: another start in the folder is refused again until resumed or moved
        screen.query_one("#train-resume").value = False
        await pilot.pause()
        await pilot.press("ctrl+g")
        assert screen.process is None and "last.ckpt" in screen.query_one("#train-row-out", FieldRow).message
        await pilot.click("#train-new-folder")
        await pilot.pause()
        fresh = Path(screen.query_one("#train-out").value)
        assert fresh != out and fresh.parent == app.data_dir / "runs" and not fresh.exists()
        assert not screen.query_one("#train-row-out", FieldRow).invalid


@pytest.mark.parametrize(
    "extra",
    [
        "--out=/tmp/elsewhere",
        "--out /tmp/elsewhere",
        "--ou /tmp/elsewhere",
        "--events=/tmp/x.jsonl",
        "--n-layer 2 --resume",
        "--polarty 3",
        "-h",
    ],
)
def test_extra_flags_cannot_redirect_the_run(extra, tmp_path):
    from kolyric.app.training_form import parse_form

    request, problems = parse_form(
        {
            "corpus": "nsmc",
            "model": "any",
            "extra": extra,
            "max_seq_length": "32",
            "batch_size": "8",
            "lr": "5e-5",
            "epochs": "1",
            "seed": "7",
        },
        data_dir=tmp_path,
    )
    assert request is None and [p.field for p in problems] == ["extra"], problems
    assert len(problems[0].message) < 120


def test_extra_flags_kolyric_train_takes_pass(tmp_path):
    from kolyric.app.training_form import parse_form

    request, problems = parse_form(
        {
            "corpus": "nsmc",
            "model": "any",
            "extra": TINY_SHAPE,
            "max_seq_length": "32",
            "batch_size": "8",
            "lr": "5e-5",
            "epochs": "1",
            "seed": "7",
        },
        data_dir=tmp_path,
    )
    assert problems == [] and request.argv()[-2:] == ["--events", "-"]
    assert request.argv()[request.argv().index("--out") + 1].startswith(str(tmp_path / "runs"))


def start_up_notices(app: KolyricApp) -> list[str]:
    return [str(n.message) for n in app._notifications if n.title == "Start-up model changed"]


async def test_opening_a_result_says_it_becomes_the_start_up_model_once_it_has_loaded(tiny_model_dir, dirs):
    # A run opened in the playground is the model to go on with, as one picked with F4 is: it
    # becomes the start-up model, and the notice names it, the one it replaces and the way back.
    app = KolyricApp(load_on_start=False, cursor_blink=False, device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        app.config.remember_model("skt/kogpt2-base-v2")
        screen = await open_training(pilot)
        screen.result_path = str(dirs / "no-such-run" / "model")  # a result gone since: nothing changes
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: app.load_error is not None, what="the failed load")
        assert not any("starts with" in str(n.message) for n in app._notifications)
        assert app.config.model == "skt/kogpt2-base-v2"
        await pilot.press("escape")  # the picker the failure opened
        await pilot.press("f3")
        screen.result_path = str(tiny_model_dir)
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, PlaygroundScreen)
        await wait_until(pilot, lambda: start_up_notices(app), timeout=60, what="the start-up notice")
        assert app.host.spec == str(tiny_model_dir) and app.load_error is None
        [notice] = start_up_notices(app)
        assert str(tiny_model_dir) in notice and "skt/kogpt2-base-v2" in notice and "F4" in notice
        assert app.config.model == str(tiny_model_dir)
        assert app.is_running and not app.errors.reported
