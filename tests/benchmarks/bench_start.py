"""Cold start: a fresh `kolyric generate` process, from its start to its first token on the terminal.

    .venv/bin/python tests/benchmarks/bench_start.py [--model DIR] [--reps 5] [--against TREE]

The model is the KoGPT2-shaped GPT-2 of ``_kogpt2_shape`` (125M parameters, vocab 51,200) unless
``--model`` names a folder; its int8 and int4 graphs are built into the graph cache before timing
(``$KOLYRIC_ONNX_CACHE``), so every timed run is the cached-graph path. Each run is a fresh
``python -m kolyric generate PROMPT --precision P`` whose standard output is read as it comes:
the CLI writes the prompt, then each token as it is decoded, so the first bytes after the prompt
mark the first token. Runs alternate between precisions (and, with ``--against``, between this
tree and another checkout's ``kolyric`` package on the same interpreter), ``--reps`` rounds;
the table shows medians with the load average at the start and end beside them.

Then the app (``KolyricApp`` under Textual's test driver, ``--app-reps`` rounds): seconds to its
first paint and until its model is ready. Then one ``-X importtime`` run per precision: where the
first token's imports go (the slowest top-level modules, cumulative), and whether transformers,
its model modules and torch were imported at all. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
PROMPT = "사랑해"


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far (Linux; else nan)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def first_token_seconds(tree: Path, model: str, precision: str, tokens: int = 8) -> tuple[float, float, float]:
    """(seconds to the first token, CPU seconds used by then, seconds to the process's exit) of
    one cold CLI run. The CPU seconds count the work, which a busy machine stretches less."""
    argv = [sys.executable, "-m", "kolyric", "generate", PROMPT, "--model", model, "--precision", precision]
    argv += ["--max-length", str(tokens), "--seed", "1"]
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    seen = b""
    first = cpu = float("nan")
    prompt = PROMPT.encode()
    while True:
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        if first != first and len(seen.rstrip(b"\n")) > len(prompt):  # nan: not seen yet
            first = time.perf_counter() - started
            cpu = _cpu_seconds(proc.pid)
    err = proc.stderr.read() if proc.stderr else b""
    code = proc.wait()
    total = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{tree} {precision}: exit {code}: {err.decode(errors='replace')[-400:]}")
    return first, cpu, total


_APP = """
import asyncio, json, sys, time
started = time.perf_counter()
from kolyric.app.app import KolyricApp
app = KolyricApp(model=sys.argv[1], precision=sys.argv[2])
async def main():
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        painted = time.perf_counter() - started
        while app.status_busy:
            await asyncio.sleep(0.02)
        ready = time.perf_counter() - started
        print(json.dumps({"painted": painted, "ready": ready, "error": app.load_error,
                          "transformers": "transformers" in sys.modules}))
asyncio.run(main())
"""


def app_ready_seconds(tree: Path, model: str, precision: str) -> tuple[float, float]:
    """(seconds to the app's first paint, seconds until its model is ready) in a fresh process,
    counted from the script's first line (the interpreter's own start, ~0.05 s, left out)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env |= {"KOLYRIC_CONFIG_DIR": f"{home}/c", "KOLYRIC_DATA_DIR": f"{home}/d", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", _APP, model, precision], cwd=tree, env=env, capture_output=True, text=True
        )
    if done.returncode != 0:
        raise RuntimeError(f"{tree} app {precision}: {done.stderr[-400:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    if got["error"]:
        raise RuntimeError(f"{tree} app {precision}: {got['error']}")
    return got["painted"], got["ready"]


def import_breakdown(model: str, precision: str, top: int = 12) -> tuple[list[tuple[str, float]], dict[str, bool]]:
    """The slowest top-level imports of one run (name, seconds) and which heavy packages it imported."""
    argv = [sys.executable, "-X", "importtime", "-m", "kolyric", "generate", PROMPT, "--model", model]
    argv += ["--precision", precision, "--max-length", "4", "--seed", "1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stderr
    rows = []
    names = set()
    for line in out.splitlines():
        m = re.match(r"import time:\s+(-?\d+) \|\s+(-?\d+) \|( *)(\S+)", line)
        if not m:
            continue
        names.add(m.group(4))
        if len(m.group(3)) <= 1:  # a module imported from kolyric's code, not by another library
            rows.append((m.group(4), int(m.group(2)) / 1e6))
    rows.sort(key=lambda r: -r[1])
    flags = {
        "torch": "torch" in names,
        "transformers": "transformers" in names,
        "transformers model code": any(n.startswith("transformers.models.") for n in names),
        "transformers tokenizer": "transformers.tokenization_utils_base" in names,
    }
    return rows[:top], flags


def _ensure_graphs(model: str, precisions: list[str]) -> None:
    """Build the graphs once (the first load of a model), so every timed run hits the cache."""
    for precision in precisions:
        first_token_seconds(ROOT, model, precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a GPT-2 folder (default: the KoGPT2-shaped one)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--precisions", default="int8,int4")
    parser.add_argument("--app-reps", type=int, default=3, help="rounds of the app's start (0: none)")
    parser.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        help="another checkout to time beside this one (repeat for more)",
    )
    args = parser.parse_args()
    if args.model is None:
        from tests.benchmarks._kogpt2_shape import kogpt2_shaped_dir

        args.model = str(kogpt2_shaped_dir())
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    trees = {"this tree": ROOT} | {str(tree): tree.resolve() for tree in args.against}
    print(f"model {args.model} · graph cache {os.environ.get('KOLYRIC_ONNX_CACHE', '(default)')}")
    _ensure_graphs(args.model, precisions)
    load_before = os.getloadavg()
    times: dict[tuple[str, str], list[tuple[float, float, float]]] = {(t, p): [] for t in trees for p in precisions}
    for rep in range(args.reps):
        order = [(t, p) for p in precisions for t in trees]
        if rep % 2:
            order.reverse()  # alternate who goes first, so a busy spell hits both sides
        for tree, precision in order:
            times[(tree, precision)].append(first_token_seconds(trees[tree], args.model, precision))
    load_after = os.getloadavg()
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({args.reps} rounds, medians)")
    print(
        f"{'tree':<28} {'precision':<9} {'first token':>11} {'best':>6} {'CPU by then':>11} {'exit':>7}"
        "   runs (first token)"
    )
    for (tree, precision), runs in times.items():
        first, cpu, total = (statistics.median(r[i] for r in runs) for i in range(3))
        best = min(r[0] for r in runs)  # the quietest moment: what an idle machine gives
        shown = " ".join(f"{r[0]:.2f}" for r in runs)
        print(f"{tree:<28} {precision:<9} {first:>10.2f}s {best:>5.2f}s {cpu:>10.2f}s {total:>6.2f}s   {shown}")
    if args.app_reps:
        print(f"\nthe app, to its first paint and to its model ready ({args.app_reps} rounds, medians):")
        for precision in precisions:
            for tree, where in trees.items():
                runs = [app_ready_seconds(where, args.model, precision) for _ in range(args.app_reps)]
                paint, ready = (statistics.median(r[i] for r in runs) for i in range(2))
                best = min(r[1] for r in runs)
                print(f"  {tree:<26} {precision:<5} paint {paint:5.2f}s  ready {ready:5.2f}s (best {best:.2f}s)")
    for precision in precisions:
        rows, flags = import_breakdown(args.model, precision)
        print(f"\nimports of one {precision} run (cumulative seconds, top level):")
        for name, seconds in rows:
            print(f"  {name:<40} {seconds:6.3f}")
        print("  imported: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()))


if __name__ == "__main__":
    main()
