"""Keypress-to-screen latency in the playground's editor: idle, while a stream runs, and while
a training run goes on. Prints p50/p95/max per scenario.

    .venv/bin/python tests/benchmarks/bench_app_latency.py [--model DIR] [--keys 80] [--draft-lines 200]

A key is sent the way a terminal driver sends it (``driver.send_message``), and the latency
is the time until the first frame composed after the editor's text holds the new character.
The app runs headless; without ``--model`` a tiny random GPT-2 is built in a temp folder
(as the tests do), so the figures measure the app's own overhead rather than a big model's.
The training scenario starts a real `kolyric train` run (tiny, from scratch, on the NSMC
copy in ../shared when present).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
KEYS = "가나다라마바사아자차카타파하 "


def build_tiny_model(directory: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import _build  # the tests' own tiny model recipe

    return _build(directory, "tiny", "metaspace", 1200)


class FrameClock:
    """Counts composed frames (every Screen compositor refresh), with the time of the last one."""

    def __init__(self) -> None:
        from textual.screen import Screen

        self.frames = 0
        self.last = 0.0
        original = Screen._compositor_refresh
        clock = self

        def counted(screen):
            result = original(screen)
            clock.frames += 1
            clock.last = time.perf_counter()
            return result

        Screen._compositor_refresh = counted


async def type_keys(pilot, clock: FrameClock, count: int, gap_s: float) -> list[float]:
    from textual import events

    app = pilot.app
    area = app.screen.editor.area
    area.focus()
    await pilot.pause()
    latencies = []
    for i in range(count):
        char = KEYS[i % len(KEYS)]
        before = len(area.text)
        start = time.perf_counter()
        event = events.Key("space" if char == " " else char, char)
        event.set_sender(app)
        app._driver.send_message(event)
        while len(area.text) == before:  # the key is handled …
            await asyncio.sleep(0.0005)
        frames = clock.frames
        while clock.frames == frames:  # … and a frame shows it
            await asyncio.sleep(0.0005)
        latencies.append(clock.last - start)
        await asyncio.sleep(gap_s)  # a fast typist: about 15 keys a second
    return latencies


def report(name: str, latencies: list[float], extra: str = "") -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    worst = max(range(len(latencies)), key=latencies.__getitem__)
    print(
        f"{name:<16} n={len(ms):<4} p50 {statistics.median(ms):6.1f} ms   p95 {p95:6.1f} ms   "
        f"max {ms[-1]:6.1f} ms (key {worst + 1})   {extra}",
        flush=True,
    )


async def keep_streaming(screen, stop: asyncio.Event) -> int:
    """Start a new generation whenever the last one ends; returns the tokens streamed."""
    tokens = 0
    while not stop.is_set():
        if not screen.streaming:
            screen.start("바람이 분다", None, ())
        run = screen.run
        while screen.run is run and not stop.is_set():
            await asyncio.sleep(0.01)
        tokens += run.tokens if run is not None else 0
    screen.stop_stream()
    return tokens


async def main(args: argparse.Namespace) -> None:
    from kolyric.app.app import KolyricApp
    from kolyric.app.testing import wait_for_model, wait_until

    work = Path(tempfile.mkdtemp(prefix="kolyric-bench-"))
    os.environ.setdefault("KOLYRIC_CONFIG_DIR", str(work / "config"))
    os.environ.setdefault("KOLYRIC_DATA_DIR", str(work / "data"))
    model = args.model or str(build_tiny_model(work))
    clock = FrameClock()
    app = KolyricApp(model=model, device="cpu", cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_model(pilot, timeout=300)
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready)
        print(f"model: {app.status_model} · CPUs: {os.cpu_count()}", flush=True)
        if args.draft_lines:  # a long draft: every keypress re-analyses all of it (rhyme groups)
            verse = [
                "[Verse]",
                "바람이 불어오는 곳 그곳으로 가네",
                "너를 보낸 그 날에 나",
                "사랑한다고 말해",
                "눈물이 흐르네",
                "",
            ]
            screen.editor.load("\n".join((verse * (args.draft_lines // len(verse) + 1))[: args.draft_lines]))
            screen.editor.area.move_cursor((args.draft_lines - 1, 0))
            await pilot.pause()
            print(f"draft: {args.draft_lines} lines before typing", flush=True)

        report("idle", await type_keys(pilot, clock, args.keys, args.gap))
        if args.idle_only:
            return

        screen.controls.set_values(strategy="sample", n=args.n, max_length=1024, seed=7)
        await pilot.pause()
        stop = asyncio.Event()
        streamer = asyncio.create_task(keep_streaming(screen, stop))
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        latencies = await type_keys(pilot, clock, args.keys, args.gap)
        stop.set()
        tokens = await streamer
        rate = tokens / (time.perf_counter() - started)
        report("while streaming", latencies, f"({rate:.0f} tokens/s on screen, n={args.n})")

        await pilot.press("f3")
        training = app.screen
        corpus_dir = str(SHARED) if (SHARED / "nsmc").is_dir() else ""
        values = {
            "corpus_dir": corpus_dir,
            "batch_size": "8",
            "epochs": "1",
            "limit_train": "512",
            "limit_val": "64",
            "max_steps": str(args.train_steps),
            "out": str(work / "run"),
            "extra": "--vocab-size 800 --n-layer 2 --n-embd 64 --n-head 2 --n-positions 64 "
            "--num-workers 0 --val-check-interval 20",
        }
        training.query_one("#train-from_scratch").value = True
        for name, value in values.items():
            training.query_one(f"#train-{name}").value = value
        await pilot.pause()
        training.action_start()
        await wait_until(
            pilot,
            lambda: any(training.query_one("#train-plot").series["loss"].points) or training.process is None,
            timeout=300,
            what="training steps",
        )
        await pilot.press("f2")
        seen = training.events_seen
        latencies = await type_keys(pilot, clock, args.keys, args.gap)
        report(
            "while training",
            latencies,
            f"({training.events_seen - seen} events meanwhile, {'still running' if training.process else 'ended'})",
        )
        if training.process is not None:
            training.action_cancel()
            await wait_until(pilot, lambda: training.process is None, timeout=60)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model to stream from (default: a tiny random GPT-2)")
    parser.add_argument("--keys", type=int, default=80, help="keypresses per scenario")
    parser.add_argument("--gap", type=float, default=0.066, help="seconds between keypresses")
    parser.add_argument("-n", type=int, default=3, help="candidates streamed at once")
    parser.add_argument("--train-steps", type=int, default=400, help="max steps of the training run")
    parser.add_argument("--idle-only", action="store_true", help="measure typing with nothing else running only")
    parser.add_argument("--draft-lines", type=int, default=0, help="lines of lyrics in the draft before typing")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(main(parser.parse_args()))
