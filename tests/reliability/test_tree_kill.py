"""kill -9 while the tree of versions is being written: the file on disk is always a whole tree
(the previous one or the new one), never a torn one, and it loads with every node."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from kolyric.app.drafts import DraftStore

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from bench_tree import make_tree
from kolyric.app.drafts import DraftStore
from kolyric.app.tree import Node
store = DraftStore({folder!r})
tree = make_tree(60, 32, 20)
print("ready", flush=True)
while True:
    tree.add(Node(0, "generate", "또", "또 하나"))
    store.save_tree(tree.to_json(), tree.revision)
"""


def test_a_killed_tree_save_leaves_a_whole_tree(tmp_path):
    rng = random.Random(3)
    folder = tmp_path / "data"
    folder.mkdir()
    script = WRITER.format(root=str(ROOT), bench=str(ROOT / "tests" / "benchmarks"), folder=str(folder))
    sizes = []
    for _trial in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.3, 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        tree, notices = DraftStore(folder).load_tree()
        assert not notices, notices
        assert all(node.tokens or node.text == "또 하나" for node in tree.nodes.values())
        sizes.append(len(tree))
    assert all(size > 60 for size in sizes), sizes  # saves were under way at each kill
