"""The tree of versions at scale: save and load time of a tree of 500 candidates x 64 tokens with
20 alternatives each, opening the tree panel, and the editor's keypress latency with it loaded.

    .venv/bin/python tests/benchmarks/bench_tree.py [--nodes 500] [--tokens 64] [--alternatives 20] [--keys 60]

Save is ``DraftStore.save_tree`` (JSON + fsync + rename) of the whole tree, first with every
node's JSON still to build, then again after one node was added (what autosave does: nodes never
change, so their JSON is built once). Load is ``DraftStore.load_tree``; "tokens" is building
every node's token objects (a loaded node builds them only when first read). Latency is measured
as ``bench_app_latency.py`` does, in the playground with that tree in its data folder and its
last three nodes as the current candidates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_tree(nodes: int, tokens: int, alternatives: int, vocab: int = 1200):
    from kolyric.app.tree import Node, VersionTree
    from kolyric.app.tree_format import Alt, Token

    rng = random.Random(0)
    tree = VersionTree()
    words = [f"말{n}" for n in range(vocab)]
    for i in range(nodes):
        toks = []
        for _ in range(tokens):
            ids = rng.sample(range(vocab), alternatives)
            probs = sorted((rng.random() / (k + 1) for k in range(alternatives)), reverse=True)
            alts = tuple(Alt(a, words[a], p) for a, p in zip(ids, probs))
            toks.append(Token(ids[0], words[ids[0]], probs[0], alts))
        parent = rng.choice(list(tree.nodes)) if tree.nodes and i % 3 else None
        node = Node(
            0,
            "branch" if parent else "generate",
            f"프롬프트 {i % 7}",
            " ".join(t.text for t in toks),
            parent=parent,
            at=rng.randrange(tokens) if parent else None,
            settings={"strategy": "sample", "temperature": 0.9, "seed": i},
            seed=i,
            model="bench",
            finish_reason="length",
            pieces=tuple(" " + t.text for t in toks),
            _tokens=tuple(toks),
        )
        tree.add(node)
    tree.set_current(list(tree.nodes)[-3:])
    return tree


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


async def latency(args: argparse.Namespace, work: Path) -> None:
    from bench_app_latency import FrameClock, build_tiny_model, report, type_keys

    from kolyric.app.app import KolyricApp
    from kolyric.app.screens.tree import TreeScreen
    from kolyric.app.testing import wait_for_model, wait_until

    model = args.model or str(build_tiny_model(work))
    clock = FrameClock()
    started = time.perf_counter()
    app = KolyricApp(model=model, device="cpu", cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_model(pilot, timeout=300)
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready)
        print(
            f"app ready with the tree loaded: {time.perf_counter() - started:.2f} s "
            f"({len(screen.versions)} nodes, {len(screen.states)} current cards)",
            flush=True,
        )
        report("typing, tree", await type_keys(pilot, clock, args.keys, args.gap))
        start = time.perf_counter()
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, TreeScreen))
        await pilot.pause()
        print(f"tree panel open: {(time.perf_counter() - start) * 1000:.0f} ms", flush=True)
        from textual import events
        from textual.widgets import Tree

        rows = app.screen.query_one(Tree)
        moves = []
        for _ in range(30):  # each move previews its node; timed to the first frame that shows it
            line = rows.cursor_line
            start = time.perf_counter()
            event = events.Key("down", None)
            event.set_sender(app)
            app._driver.send_message(event)
            while rows.cursor_line == line:
                await asyncio.sleep(0.0005)
            frames = clock.frames
            while clock.frames == frames:
                await asyncio.sleep(0.0005)
            moves.append(clock.last - start)
            await asyncio.sleep(0.03)
        report("tree panel move", moves)


def main(args: argparse.Namespace) -> None:
    from kolyric.app.drafts import DraftStore
    from kolyric.app.tree import Node

    work = Path(tempfile.mkdtemp(prefix="kolyric-bench-tree-"))
    os.environ.setdefault("KOLYRIC_CONFIG_DIR", str(work / "config"))
    os.environ.setdefault("KOLYRIC_DATA_DIR", str(work / "data"))
    store = DraftStore(Path(os.environ["KOLYRIC_DATA_DIR"]))
    store.directory.mkdir(parents=True, exist_ok=True)
    tree = make_tree(args.nodes, args.tokens, args.alternatives)
    print(f"tree: {args.nodes} nodes x {args.tokens} tokens x {args.alternatives} alternatives", flush=True)
    seconds, _ = timed(lambda: store.save_tree(tree.to_json(), tree.revision))
    size = store.tree_path.stat().st_size / 1e6
    print(f"save, first (every node's JSON built): {seconds * 1000:.0f} ms ({size:.1f} MB)", flush=True)
    tree.add(Node(0, "generate", "하나 더", "하나 더"))
    seconds, _ = timed(lambda: store.save_tree(tree.to_json(), tree.revision))
    print(f"save after one more node (autosave's case): {seconds * 1000:.0f} ms", flush=True)
    seconds, (loaded, notices) = timed(store.load_tree)
    assert not notices and len(loaded) == len(tree), notices
    print(f"load: {seconds * 1000:.0f} ms", flush=True)
    seconds, _ = timed(lambda: [node.tokens for node in loaded.nodes.values()])
    print(f"tokens of every node built: {seconds * 1000:.0f} ms (a node builds its own when first shown)", flush=True)
    store.save_tree(make_tree(args.nodes, args.tokens, args.alternatives).to_json(), 10**9)
    if not args.no_app:
        asyncio.run(latency(args, work))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--alternatives", type=int, default=20)
    parser.add_argument("--keys", type=int, default=60, help="keypresses typed with the tree loaded")
    parser.add_argument("--gap", type=float, default=0.066, help="seconds between keypresses")
    parser.add_argument("--model", help="model for the app (default: a tiny random GPT-2)")
    parser.add_argument("--no-app", action="store_true", help="file times only")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(parser.parse_args())
