"""Benchmark `kolyric serve` under a bounded load on localhost (not collected by pytest).

For each model, starts ``python -m kolyric serve`` on a free 127.0.0.1 port, waits until
``/health`` is ready, warms up, then for each concurrency level sends a fixed number of
requests (each with its own seed and prompt, a fixed number of new tokens) from that many
concurrent clients and prints: throughput (requests/s and generated tokens/s), p50/p95
latency, p50/p95 time to the first token (streaming), and how many requests failed, which
must be 0 while the concurrency stays within the workers plus the queue depth. An optional
burst past the queue limit then shows the overflow answered 503 (with Retry-After), and
nothing else failing.

Models: ``tiny`` (2 layers, width 64, a 1,200-entry tokenizer trained on an NSMC slice) and
``kogpt2`` (KoGPT2's shape: vocab 51,200, 12 layers, width 768, random weights, a 51,200-entry
tokenizer trained on NSMC; see ``_kogpt2_shape.py``), or any model directory.

    python tests/benchmarks/bench_serve.py --models tiny,kogpt2 --levels 1,4,16 --requests 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NSMC_DIR = ROOT.parent / "shared" / "nsmc"
sys.path.insert(0, str(ROOT))


@dataclass
class Outcome:
    status: int | str  # HTTP status, or an exception's name
    latency_s: float
    first_token_s: float | None = None
    new_tokens: int = 0
    retry_after: str | None = None


@dataclass
class Level:
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0


FALLBACK_PROMPTS = [
    "사랑해 너를",
    "눈물이 흘러",
    "바다가 보이는 창가에서",
    "별빛 아래 우리",
    "비가 오는 날이면",
    "너와 나의 노래",
    "봄이 오면 다시",
    "잊지 못할 그 밤",
    "기다릴게 언제까지나",
    "하늘을 날아",
]


def nsmc_prompts(count: int, chars: int = 24) -> list[str]:
    """Openings of NSMC test reviews (a fixed list of lyric lines where NSMC is absent)."""
    path = NSMC_DIR / "ratings_test.txt"
    if not path.is_file():
        return (FALLBACK_PROMPTS * (count // len(FALLBACK_PROMPTS) + 1))[:count]
    prompts = []
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and len(parts[1].strip()) >= 4:
                prompts.append(parts[1].strip()[:chars])
            if len(prompts) >= count:
                break
    return prompts


def tiny_model_dir(cache: Path) -> Path:
    out = cache / "serve-tiny"
    if (out / "config.json").is_file():
        return out
    from kolyric.training.scratch import ModelShape, new_model, train_tokenizer

    texts = nsmc_prompts(3000, chars=200)
    tokenizer = train_tokenizer(texts, vocab_size=1200, kind="metaspace")
    model = new_model(tokenizer, ModelShape(n_layer=2, n_embd=64, n_head=2, n_positions=128), seed=7)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def model_dir(name: str, cache: Path) -> Path:
    if name == "tiny":
        return tiny_model_dir(cache)
    if name == "kogpt2":
        from tests.benchmarks._kogpt2_shape import kogpt2_shaped_dir

        return kogpt2_shaped_dir(cache)
    path = Path(name)
    if not path.is_dir():
        raise SystemExit(f"--models: {name!r} is neither tiny, kogpt2 nor a model directory")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`kolyric serve` in a subprocess, stopped with SIGINT."""

    def __init__(self, model: Path, args: argparse.Namespace, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("w")
        cmd = [
            sys.executable,
            "-m",
            "kolyric",
            "serve",
            "--model",
            str(model),
            "--port",
            str(self.port),
            "--queue-depth",
            str(args.queue_depth),
            "--workers",
            str(args.workers),
            "--device",
            args.device,
            "--max-n",
            "1",
            "--log-level",
            "warning",
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )

    def wait_ready(self, timeout: float) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"kolyric serve exited with {self.proc.returncode}; see {self.log.name}")
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                body = r.json()
                if body["status"] == "ready":
                    return body
                if body["status"] == "error":
                    raise SystemExit(f"model failed to load: {body['error']}")
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"kolyric serve not ready after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def one_request(client, url: str, body: dict, stream: bool) -> Outcome:
    import json

    started = time.perf_counter()
    try:
        if not stream:
            r = await client.post(url + "/generate", json=body)
            new = r.json().get("new_tokens", 0) if r.status_code == 200 else 0
            return Outcome(r.status_code, time.perf_counter() - started, None, new, r.headers.get("retry-after"))
        first = None
        async with client.stream("POST", url + "/generate/stream", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return Outcome(r.status_code, time.perf_counter() - started, None, 0, r.headers.get("retry-after"))
            event, new, status = None, 0, "no done event"
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    if event == "token" and first is None:
                        first = time.perf_counter() - started
                elif line.startswith("data:") and event == "done":
                    new, status = json.loads(line[5:])["new_tokens"], 200
                elif line.startswith("data:") and event == "error":
                    status = "error event"
        return Outcome(status, time.perf_counter() - started, first, new)
    except Exception as exc:  # noqa: BLE001 - counted as a failure
        return Outcome(type(exc).__name__, time.perf_counter() - started)


async def run_level(
    url: str, clients: int, requests: int, args: argparse.Namespace, prompts: list[str], seed0: int
) -> Level:
    import httpx

    level = Level(clients)
    todo = list(range(requests))
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)

    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as client:

        async def worker() -> None:
            while todo:
                i = todo.pop(0)
                body = {
                    "prompt": prompts[i % len(prompts)],
                    "preset": "top-k-50",
                    "seed": seed0 + i,
                    "max_length": args.new_tokens,
                    "min_length": args.new_tokens,
                }
                level.outcomes.append(await one_request(client, url, body, args.stream))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        level.wall_s = time.perf_counter() - started
    return level


async def burst(url: str, count: int, args: argparse.Namespace, prompts: list[str]) -> Level:
    """``count`` requests at the same moment, each on its own connection."""
    import httpx

    level = Level(count)
    limits = httpx.Limits(max_connections=count + 4)
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as client:
        started = time.perf_counter()
        bodies = [
            {
                "prompt": prompts[i % len(prompts)],
                "preset": "top-k-50",
                "seed": 9000 + i,
                "max_length": args.new_tokens,
                "min_length": args.new_tokens,
            }
            for i in range(count)
        ]
        level.outcomes = list(await asyncio.gather(*(one_request(client, url, b, args.stream) for b in bodies)))
        level.wall_s = time.perf_counter() - started
    return level


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(model: str, level: Level, label: str | None = None) -> str:
    ok = [o for o in level.outcomes if o.status == 200]
    failed = [o for o in level.outcomes if o.status != 200 and o.status != 503]
    rejected = [o for o in level.outcomes if o.status == 503]
    lat = [o.latency_s for o in ok]
    ttft = [o.first_token_s for o in ok if o.first_token_s is not None]
    tokens = sum(o.new_tokens for o in ok)
    row = (
        f"{model:<8} {label or level.clients:>7} {len(level.outcomes):>5} {len(ok) / level.wall_s:>8.2f} "
        f"{tokens / level.wall_s:>8.1f} {pct(lat, 50):>7.2f} {pct(lat, 95):>7.2f} "
        f"{pct(ttft, 50):>7.2f} {pct(ttft, 95):>7.2f} {len(failed):>6} {len(rejected):>5}"
    )
    if failed:
        kinds = sorted({str(o.status) for o in failed})
        row += f"   failures: {', '.join(kinds)}"
    if rejected:
        row += f"   Retry-After: {sorted({o.retry_after for o in rejected})}"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,kogpt2", help="comma-separated: tiny, kogpt2, or model directories")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level (default 1,4,16)")
    parser.add_argument("--requests", type=int, default=16, help="requests per level (default 16)")
    parser.add_argument("--new-tokens", type=int, default=16, help="new tokens per request (min = max; default 16)")
    parser.add_argument("--queue-depth", type=int, default=32, help="server queue depth (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="server workers (default 1)")
    parser.add_argument("--device", default="cpu", help="server device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="server's torch CPU threads (default: torch's)")
    parser.add_argument(
        "--plain",
        dest="stream",
        action="store_false",
        help="use POST /generate instead of the SSE stream (no first-token times)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        help="after the levels, this many requests at once (past workers + queue depth: the rest must be 503)",
    )
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--cache", default=os.environ.get("KOLYRIC_BENCH_CACHE", "/tmp/kolyric-bench"))
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if max(levels) > args.workers + args.queue_depth:
        print(
            f"note: {max(levels)} clients exceed workers + queue depth ({args.workers + args.queue_depth}): "
            "some requests will be answered 503",
            file=sys.stderr,
        )
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    prompts = nsmc_prompts(max(64, args.requests))

    header = (
        f"{'model':<8} {'clients':>7} {'reqs':>5} {'req/s':>8} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} "
        f"{'ttft50':>7} {'ttft95':>7} {'failed':>6} {'503':>5}"
    )
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="kolyric-bench-serve-"))
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = model_dir(name, cache)
        server = Server(path, args, logs / f"{Path(name).name}.log")
        try:
            started = time.perf_counter()
            health = server.wait_ready(args.ready_timeout)
            print(f"{name}: {health['model']} ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            asyncio.run(run_level(server.url, 1, 2, args, prompts, 10_000))  # warm-up
            for i, clients in enumerate(levels):
                level = asyncio.run(run_level(server.url, clients, args.requests, args, prompts, 1000 * i))
                rows.append(report(name, level))
                print(rows[-1], file=sys.stderr)
            if args.burst:
                level = asyncio.run(burst(server.url, args.burst, args, prompts))
                rows.append(report(name, level, label=f"burst{args.burst}"))
                print(rows[-1], file=sys.stderr)
        finally:
            server.stop()
    print(
        f"\nkolyric serve: {args.new_tokens} new tokens per request, workers {args.workers}, queue depth "
        f"{args.queue_depth}, {'SSE stream' if args.stream else 'POST /generate'}, device {args.device}, "
        f"torch threads {args.threads or 'default'}, {os.cpu_count()} CPUs"
    )
    print(header)
    for row in rows:
        print(row)
    print(f"(server logs in {logs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
