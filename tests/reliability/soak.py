"""Soak: many generations in one process, with cancels in between — memory stays flat, no
threads or file handles leak, the server stays responsive.

``generator``  a CLI-style loop over one ``Generator`` (the tiny model): sampling, greedy and
               beam, 1-2 candidates, contexts and constraints now and then; every 5th run is
               cancelled after a few tokens, every 7th is abandoned mid-stream (the consumer
               stops reading and closes the stream).
``server``     ``kolyric serve`` in its own process, driven over HTTP by a few client threads:
               plain and streamed generations, every 4th stream dropped by its client after the
               first token (a cancel), ``/health`` polled throughout to time the answers.

Resident memory (psutil RSS) is sampled every ``--sample-every`` generations; the slope is a
least-squares fit after the warm-up, in MB per 100 generations.

    python -m tests.reliability.soak --generations 1000
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability._util import ROOT, open_fds, print_report, quiet_env


def slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (generation, MB) in MB per 100 generations."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 100 * sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


@dataclass
class SoakReport:
    generations: int = 0
    cancelled: int = 0
    abandoned: int = 0
    failures: list[str] = field(default_factory=list)
    rss_mb: list[tuple[int, float]] = field(default_factory=list)
    rss_slope_mb_per_100: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    threads_start: int = 0
    threads_end: int = 0
    fds_start: int = 0
    fds_end: int = 0
    health_max_s: float = 0.0
    health_p50_s: float = 0.0
    seconds: float = 0.0


PROMPTS = ["사랑해", "바람이 분다", "", "너를 보낸다", "하늘 위로 날아가", "la la", "2024년 겨울", "가" * 60]


def _request(rng: random.Random, i: int):
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import DecodingSettings

    strategy = rng.choice(["sample", "sample", "sample", "greedy", "beam"])
    n = 1 if strategy == "greedy" else rng.choice([1, 2])
    settings = DecodingSettings(
        strategy=strategy,
        n=n,
        num_beams=max(2, n),
        max_length=rng.randint(6, 20),
        seed=i,
        top_k=rng.choice([0, 50]),
        top_p=rng.choice([1.0, 0.9]),
        repetition_penalty=rng.choice([1.0, 1.3]),
        no_repeat_ngram_size=rng.choice([0, 3]),
    )
    context = tuple(rng.sample(PROMPTS, 2)) if i % 3 == 0 else ()
    constraints = None
    if i % 11 == 0:
        from kolyric.engine.lyric.spec import from_dict

        constraints = from_dict({"syllables": rng.choice([4, 6])})
    return GenerationRequest(
        rng.choice(PROMPTS), rng.choice([None, "긍정", "부정"]), settings, context=context, constraints=constraints
    )


def soak_generator(
    generations: int, model_dir: Path, *, warmup: int = 100, sample_every: int = 50, seed: int = 0, log=print
) -> SoakReport:
    import gc

    import psutil
    import torch

    from kolyric.engine.loading import load_model
    from kolyric.engine.results import DoneEvent, TokenEvent
    from kolyric.engine.stream import Generator

    torch.set_num_threads(1)
    proc = psutil.Process()
    rng = random.Random(seed)
    generator = Generator(load_model(str(model_dir), device="cpu"))
    report = SoakReport()
    started = time.monotonic()
    for i in range(generations):
        request = _request(rng, i)
        cancel = threading.Event()
        mode = "cancel" if i % 5 == 4 else "abandon" if i % 7 == 6 else "full"
        done = None
        stream = generator.stream(request, cancel=cancel)
        try:
            for event in stream:
                if isinstance(event, TokenEvent) and event.step >= 2:
                    if mode == "cancel":
                        cancel.set()
                    elif mode == "abandon":
                        break
                elif isinstance(event, DoneEvent):
                    done = event.result
        except Exception as exc:  # noqa: BLE001 - counted and reported
            report.failures.append(f"generation {i}: {type(exc).__name__}: {exc}")
        finally:
            stream.close()
        if mode == "abandon":
            report.abandoned += 1
        elif done is None:
            report.failures.append(f"generation {i}: no result")
        elif mode == "cancel":
            report.cancelled += int(
                any(c.finish_reason == "cancelled" for c in done.candidates) or request.settings.strategy == "beam"
            )
        report.generations += 1
        if i + 1 == warmup:
            gc.collect()
            report.threads_start, report.fds_start = threading.active_count(), open_fds()
            report.rss_start_mb = proc.memory_info().rss / 2**20
        if i + 1 >= warmup and (i + 1 - warmup) % sample_every == 0:
            report.rss_mb.append((i + 1, round(proc.memory_info().rss / 2**20, 1)))
            log(
                f"generator: {i + 1}/{generations}, rss {report.rss_mb[-1][1]} MB, "
                f"threads {threading.active_count()}, fds {open_fds()}"
            )
    gc.collect()
    report.rss_end_mb = round(proc.memory_info().rss / 2**20, 1)
    report.rss_mb.append((generations, report.rss_end_mb))
    report.threads_end, report.fds_end = threading.active_count(), open_fds()
    report.rss_slope_mb_per_100 = round(slope_per_100([p for p in report.rss_mb if p[0] >= warmup]), 3)
    report.rss_start_mb = round(report.rss_start_mb, 1)
    report.seconds = round(time.monotonic() - started, 1)
    return report


# -- the server ------------------------------------------------------------------------------------------
class ServeProcess:
    """``kolyric serve --model DIR --port 0`` in a child process, on 127.0.0.1."""

    def __init__(self, model_dir: Path, queue_depth: int = 16) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kolyric",
                "serve",
                "--model",
                str(model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--threads",
                "1",
                "--queue-depth",
                str(queue_depth),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=quiet_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        found = threading.Event()

        def drain() -> None:
            for line in self.proc.stderr:
                self.lines.append(line)
                match = re.search(r"kolyric serve: (http://127\.0\.0\.1:\d+)", line)
                if match:
                    self.url = match.group(1)
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(60):
            self.stop()
            raise RuntimeError("kolyric serve did not start: " + "".join(self.lines)[-2000:])

    def wait_ready(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server's model never became ready: " + "".join(self.lines)[-2000:])

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def soak_server(
    generations: int,
    model_dir: Path,
    *,
    clients: int = 3,
    warmup: int = 100,
    sample_every: int = 50,
    seed: int = 0,
    log=print,
) -> SoakReport:
    import httpx
    import psutil

    server = ServeProcess(model_dir)
    report = SoakReport()
    started = time.monotonic()
    lock = threading.Lock()
    health_times: list[float] = []
    stop_health = threading.Event()
    try:
        server.wait_ready()
        ps = psutil.Process(server.proc.pid)
        url = server.url
        counter = iter(range(generations))

        def client(cid: int) -> None:
            rng = random.Random(seed * 100 + cid)
            with httpx.Client(base_url=url, timeout=60) as http:
                for i in counter:
                    body = {
                        "prompt": rng.choice(PROMPTS),
                        "max_length": rng.randint(6, 20),
                        "seed": i,
                        "preset": rng.choice(["combined", "greedy", "top-p-0.92", "beam-3"]),
                        "context": rng.sample(PROMPTS, 2) if i % 3 == 0 else [],
                    }
                    if i % 11 == 0:
                        body["constraints"] = {"syllables": 5}
                    try:
                        if i % 2:
                            r = http.post("/generate", json=body)
                            ok = r.status_code == 200 and r.json()["candidates"]
                            kind = "full"
                        else:
                            with http.stream("POST", "/generate/stream", json=body) as r:
                                kind, ok = "full", False
                                for line in r.iter_lines():
                                    if i % 4 == 0 and line.startswith("event: token"):
                                        kind, ok = "cancel", True  # the client leaves: a cancel
                                        break
                                    if line.startswith("event: done"):
                                        ok = True
                                    if line.startswith("event: error"):
                                        break
                    except httpx.HTTPError as exc:
                        ok, kind = False, f"{type(exc).__name__}: {exc}"
                    with lock:
                        report.generations += 1
                        report.cancelled += int(kind == "cancel")
                        if not ok:
                            report.failures.append(f"request {i}: {kind} status {getattr(r, 'status_code', '?')}")
                        n = report.generations
                        if n == warmup:
                            report.threads_start, report.fds_start = ps.num_threads(), ps.num_fds()
                            report.rss_start_mb = round(ps.memory_info().rss / 2**20, 1)
                        if n >= warmup and (n - warmup) % sample_every == 0:
                            report.rss_mb.append((n, round(ps.memory_info().rss / 2**20, 1)))
                            log(
                                f"server: {n}/{generations}, rss {report.rss_mb[-1][1]} MB, "
                                f"threads {ps.num_threads()}, fds {ps.num_fds()}"
                            )

        def poll_health() -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                while not stop_health.wait(0.25):
                    t0 = time.perf_counter()
                    try:
                        http.get("/health")
                        health_times.append(time.perf_counter() - t0)
                    except httpx.HTTPError:
                        health_times.append(30.0)

        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        workers = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stop_health.set()
        poller.join(35)
        time.sleep(1.0)  # cancelled generations finish their current step
        health = httpx.get(url + "/health", timeout=10).json()
        if health["active"] or health["queued"]:
            report.failures.append(f"work left after the soak: {health}")
        if health["failed"]:
            report.failures.append(f"{health['failed']} generation(s) failed on the server")
        if health["admitted"] != health["completed"] + health["cancelled"] + health["failed"]:
            report.failures.append(f"jobs unaccounted for: {health}")
        report.rss_end_mb = round(ps.memory_info().rss / 2**20, 1)
        report.rss_mb.append((report.generations, report.rss_end_mb))
        report.threads_end, report.fds_end = ps.num_threads(), ps.num_fds()
        report.rss_slope_mb_per_100 = round(slope_per_100([p for p in report.rss_mb if p[0] >= warmup]), 3)
        times = sorted(health_times)
        report.health_max_s = round(times[-1], 3) if times else 0.0
        report.health_p50_s = round(times[len(times) // 2], 3) if times else 0.0
        if "Traceback" in "".join(server.lines):
            report.failures.append("a traceback in the server's log: " + "".join(server.lines)[-1500:])
    finally:
        server.stop()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("generator", "server", "both"), default="both")
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--sample-every", type=int, default=50)
    parser.add_argument("--clients", type=int, default=3, help="server: concurrent HTTP clients")
    parser.add_argument("--model", default=None, help="model directory (default: the tests' tiny model)")
    args = parser.parse_args(argv)
    from tests.reliability._util import tiny_model_dir

    model = Path(args.model) if args.model else tiny_model_dir()
    failures = 0
    if args.part in ("generator", "both"):
        report = soak_generator(args.generations, model, warmup=args.warmup, sample_every=args.sample_every)
        print_report("generator", vars(report))
        failures += len(report.failures)
    if args.part in ("server", "both"):
        report = soak_server(
            args.generations, model, clients=args.clients, warmup=args.warmup, sample_every=args.sample_every
        )
        print_report("server", vars(report))
        failures += len(report.failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
