"""The tree of versions: every candidate the playground made, kept as a node, never removed.

A node is one candidate: what it continued (the prompt, polarity and the draft lines the model
saw), or the node and token position it branched from; the settings for each stretch of its
tokens; the seed and the model; and its tokens, each with the alternatives the model ranked
there. Regenerating adds sibling roots under the same prompt, choosing an alternative adds a
child branched at that token, editing a candidate adds an ``edit`` child holding the edited
text, and continuing from it adds a child of that. Free of Textual and torch: the CLI and the
benchmarks read it too.

The file format (``tree.json`` beside ``draft.json``; also the ``tree`` field of an export's
``.kolyric.json``) is versioned::

    {"format": "kolyric-tree", "version": 1,
     "current": [node ids shown as the candidates], "accepted": [ids accepted into the draft],
     "nodes": [{"id": 3, "parent": 1, "at": 4, "kind": "branch",
                "prompt": "너를", "polarity": null, "context": ["earlier line"],
                "constraints": {...} | null, "forced_ids": [...],
                "settings": {DecodingSettings.to_dict(), seed included},
                "changes": [{"from_token": 12, "changed": {"temperature": 1.5}}],
                "seed": 7, "model": "skt/kogpt2-base-v2", "candidate": 0,
                "text": "너를 사랑해", "finish_reason": "eos", "joiner": null,
                "report": {ConstraintReport.to_dict(), text, full_text} | null,
                "window_limit": null, "created": 1767225600.0,
                "tokens": {"ids": [..], "probs": [..], "pieces": [..],
                           "alt_ids": [[..], ..], "alt_probs": [[..], ..]},
                "texts": {"token id": "its text", ..}}]}

``kind`` is ``generate`` (a fresh run; siblings under a prompt are its regenerations),
``branch`` (``parent`` and ``at``: the first ``at`` tokens are the parent's, token ``at`` the
alternative chosen), ``edit`` (the parent's text edited by hand; no tokens), ``continue`` (a
run from an edit's text), ``step`` (tokens picked one at a time) or ``compare`` (a preset's
card kept from the compare view). ``settings`` made tokens 0.. up to the first change; each
change applies from its ``from_token`` on. Token texts are stored once per node (``texts``).
A node's JSON is built once (nodes never change), so saving hundreds of nodes is a join, and
a loaded node builds its token objects only when they are first read. The format's constants
and the records a node stores (tokens, alternatives, reports) are ``kolyric.app.tree_format``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kolyric.app.tree_format import (
    FORMAT,
    KINDS,
    VERSION,
    StoredReport,
    Token,
    opt_int,
    token_columns,
    tokens_from,
)


@dataclass
class Node:
    """One candidate. Built by ``VersionTree.add``; never changed once added."""

    id: int
    kind: str
    prompt: str
    text: str  # what goes into the draft: the prompt line and the continuation
    parent: int | None = None
    at: int | None = None  # branch: the token position in the parent where it diverges
    polarity: str | None = None
    context: tuple[str, ...] = ()
    constraints: dict[str, Any] | None = None
    forced_ids: tuple[int, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    changes: tuple[dict[str, Any], ...] = ()
    seed: int | None = None
    model: str | None = None
    candidate: int = 0
    finish_reason: str | None = None
    joiner: str | None = None
    report: StoredReport | None = None
    window_limit: int | None = None
    created: float = field(default_factory=time.time)
    pieces: tuple[str, ...] = ()
    _tokens: tuple[Token, ...] | None = None
    _raw_tokens: dict[str, Any] | None = None  # a loaded node's columns, turned into Tokens when read
    _json: str | None = None
    _texts: dict[str, str] = field(default_factory=dict, repr=False)  # a loaded node's token texts

    @property
    def tokens(self) -> tuple[Token, ...]:
        if self._tokens is None:
            self._tokens = tokens_from(self._raw_tokens or {}, self._texts)
            self._raw_tokens = None
        return self._tokens

    @property
    def stretches(self) -> list[tuple[int, dict[str, Any]]]:
        """(first token, settings in force from it) for each stretch of the tokens."""
        out = [(0, dict(self.settings))]
        for change in self.changes:
            out.append((int(change["from_token"]), {**out[-1][1], **change["changed"]}))
        return out

    def to_dict(self) -> dict[str, Any]:
        columns, texts = token_columns(self.tokens)
        return {
            "id": self.id,
            "parent": self.parent,
            "at": self.at,
            "kind": self.kind,
            "prompt": self.prompt,
            "polarity": self.polarity,
            "context": list(self.context),
            "constraints": self.constraints,
            "forced_ids": list(self.forced_ids),
            "settings": self.settings,
            "changes": list(self.changes),
            "seed": self.seed,
            "model": self.model,
            "candidate": self.candidate,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "joiner": self.joiner,
            "report": self.report.to_dict() if self.report is not None else None,
            "window_limit": self.window_limit,
            "created": self.created,
            "tokens": {
                "ids": columns["ids"],
                "probs": columns["probs"],
                "pieces": list(self.pieces),
                "alt_ids": columns["alt_ids"],
                "alt_probs": columns["alt_probs"],
            },
            "texts": texts,
        }

    def to_json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return self._json

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Node:
        """ValueError naming the field when ``raw`` is not a node."""
        if not isinstance(raw, dict):
            raise ValueError("node: must be an object")
        ident, kind = raw.get("id"), raw.get("kind")
        if not isinstance(ident, int) or isinstance(ident, bool):
            raise ValueError(f"node id: must be an integer, got {ident!r:.40}")
        if kind not in KINDS:
            raise ValueError(f"node {ident} kind: must be one of {', '.join(KINDS)}, got {kind!r:.40}")
        text, prompt = raw.get("text"), raw.get("prompt", "")
        if not isinstance(text, str) or not isinstance(prompt, str):
            raise ValueError(f"node {ident} text: must be a string")
        tokens = raw.get("tokens") or {}
        texts = raw.get("texts") or {}
        if not isinstance(tokens, dict) or not isinstance(texts, dict):
            raise ValueError(f"node {ident} tokens: must be an object")
        report = raw.get("report")
        node = cls(
            ident,
            kind,
            prompt,
            text,
            parent=opt_int(raw.get("parent")),
            at=opt_int(raw.get("at")),
            polarity=raw.get("polarity") if raw.get("polarity") in ("긍정", "부정") else None,
            context=tuple(str(c) for c in raw.get("context") or ()),
            constraints=raw.get("constraints") if isinstance(raw.get("constraints"), dict) else None,
            forced_ids=tuple(int(i) for i in raw.get("forced_ids") or ()),
            settings=dict(raw.get("settings") or {}),
            changes=tuple(
                c
                for c in raw.get("changes") or ()
                if isinstance(c, dict) and isinstance(c.get("from_token"), int) and isinstance(c.get("changed"), dict)
            ),
            seed=opt_int(raw.get("seed")),
            model=raw.get("model") if isinstance(raw.get("model"), str) else None,
            candidate=opt_int(raw.get("candidate")) or 0,
            finish_reason=raw.get("finish_reason"),
            joiner=raw.get("joiner") if isinstance(raw.get("joiner"), str) else None,
            report=StoredReport.from_dict(report) if isinstance(report, dict) else None,
            window_limit=opt_int(raw.get("window_limit")),
            created=float(raw.get("created") or 0.0),
            pieces=tuple(str(p) for p in tokens.get("pieces") or ()),
            _raw_tokens=tokens,
        )
        node._texts = texts
        return node


class VersionTree:
    """All nodes of a draft, in the order they were made. ``revision`` counts changes (saves
    compare it); ``current`` are the nodes shown as candidates, ``accepted`` those accepted."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.current: list[int] = []
        self.accepted: set[int] = set()
        self.revision = 0
        self._children: dict[int | None, list[int]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def add(self, node: Node) -> Node:
        """Add ``node`` under the next id (its own ``id`` is replaced); returns it."""
        node.id = max(self.nodes) + 1 if self.nodes else 1
        self._insert(node)
        self.revision += 1
        return node

    def _insert(self, node: Node) -> None:
        if node.parent is not None and node.parent not in self.nodes:
            node.parent, node.at = None, None  # a parent missing from a hand-edited file: a root
        self.nodes[node.id] = node
        self._children.setdefault(node.parent, []).append(node.id)

    def children(self, node_id: int | None) -> list[Node]:
        return [self.nodes[i] for i in self._children.get(node_id, [])]

    def roots(self, prompt: str | None = None) -> list[Node]:
        return [n for n in self.children(None) if prompt is None or n.prompt.strip() == prompt.strip()]

    def prompts(self) -> list[str]:
        """The prompts of the root nodes, most recent first."""
        seen: dict[str, None] = {}
        for node in reversed(self.children(None)):
            seen.setdefault(node.prompt.strip(), None)
        return list(seen)

    def path(self, node_id: int) -> list[Node]:
        """The node and its ancestors, root first."""
        out, node = [], self.nodes.get(node_id)
        while node is not None:
            out.append(node)
            node = self.nodes.get(node.parent) if node.parent is not None else None
        return out[::-1]

    def set_current(self, ids: Iterable[int]) -> None:
        ids = [i for i in ids if i in self.nodes]
        if ids != self.current:
            self.current = ids
            self.revision += 1

    def mark_accepted(self, node_id: int, accepted: bool = True) -> None:
        if node_id in self.nodes and (node_id in self.accepted) != accepted:
            (self.accepted.add if accepted else self.accepted.discard)(node_id)
            self.revision += 1

    # -- the file ------------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.snapshot().to_json()

    def snapshot(self) -> TreeSnapshot:
        """The tree as it is now, to write from another thread while this one adds nodes."""
        head = json.dumps(
            {"format": FORMAT, "version": VERSION, "current": self.current, "accepted": sorted(self.accepted)},
            separators=(",", ":"),
        )
        return TreeSnapshot(head, list(self.nodes.values()), self.revision)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())

    @classmethod
    def from_json(cls, raw: str) -> tuple[VersionTree, list[str]]:
        data = json.loads(raw)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> tuple[VersionTree, list[str]]:
        """The tree and the nodes left out (one line each); ValueError when it is no tree."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a kolyric tree")
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(f"version: this kolyric reads tree versions up to {VERSION}, got {version!r:.20}")
        nodes = data.get("nodes")
        if not isinstance(nodes, list):
            raise ValueError("nodes: must be a list")
        tree, skipped = cls(), []
        for raw in nodes:
            try:
                node = Node.from_dict(raw)
            except (ValueError, TypeError) as exc:
                skipped.append(str(exc)[:120])
                continue
            if node.id in tree.nodes:
                skipped.append(f"node {node.id}: a second node with that id")
                continue
            tree._insert(node)
        tree.current = [i for i in data.get("current") or () if isinstance(i, int) and i in tree.nodes]
        tree.accepted = {i for i in data.get("accepted") or () if isinstance(i, int) and i in tree.nodes}
        return tree, skipped


@dataclass(frozen=True)
class TreeSnapshot:
    head: str
    nodes: list[Node]
    revision: int

    def to_json(self) -> str:
        # one node per line: a diff of two saves shows the nodes added
        return self.head[:-1] + ',"nodes":[\n' + ",\n".join(n.to_json() for n in self.nodes) + "\n]}\n"


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two nodes share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
