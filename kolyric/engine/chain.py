"""The processor chain of a decoding step: ``ProcessorChain`` (transformers' ``LogitsProcessorList``
without its per-step signature checks), the ``StepCache`` its processors share within a step,
and ``PoolWarper``, the NumPy warpers that run on the pool a top-k left.

Where the step graph gives each row's top logits (``StepCache.bound``) and every processor before
the top-k only lowers scores (a ``Lowering``: repetition penalty, no-repeat n-grams, DRY, minimum
length), the chain lowers and ranks those ~64 candidates alone (``ProcessorChain.lowered_top``)
instead of changing the 51,200-entry row: the row is then left as it is (the loop keeps no copy
of it) and each processor's cost is a few Python operations on the candidates it touches.

``kolyric.engine.processors`` re-exports all of it; the processors themselves live there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # annotations only: importing this module must not import torch
    from torch import Tensor

Array = NDArray[np.floating]


@dataclass
class StepCache:
    """What the processors of one chain share during one step: the sequences converted to NumPy
    once, and the NumPy view of the score tensor being passed along. Each chain has its own
    (a generation on another thread has another chain), and it is emptied when the step ends."""

    ids: Tensor | None = None
    ids_numpy: NDArray[np.int64] | None = None
    scores: Tensor | None = None
    view: Array | None = None
    bound: tuple[Array, NDArray[np.int64]] | None = None
    """The step's raw logits' top entries (values largest first, ids), set by the loop when every
    processor before the warpers only lowers scores (``lowers_only``): no token outside them can
    then score above their smallest value, so a top-k or argmax that beats it is found among
    them without a pass over the row (``top_within``). Kept across ``clear``: the loop sets it
    each step."""

    given: tuple[Tensor, NDArray[np.int64], bool] | None = None
    """The loop's sequences this step: (the tensor, a NumPy copy, whether they are the previous
    step's plus one column, the rest unchanged), so incremental processors need neither convert
    nor compare them (``incremental.Incremental``). Kept across ``clear``: the loop sets it each
    step."""

    seed: tuple[Tensor, Array] | None = None
    """The step's logits and their NumPy view as the loop already has them (``seed_view``), so
    the first processor does not ask torch for it again (~30 µs right after a forward pass).
    Kept across ``clear``: the loop sets it each step."""

    def clear(self) -> None:
        self.ids = self.ids_numpy = None
        self.scores, self.view = self.seed if self.seed is not None else (None, None)

    def seed_view(self, scores: Tensor, view: Array | None) -> None:
        """Take ``view`` as ``scores``' NumPy view this step (it must share its memory), where
        it is one ``_numpy_view`` would give (2-D float32, contiguous)."""
        ok = view is not None and view.dtype == np.float32 and view.ndim == 2 and view.flags.c_contiguous
        self.seed = (scores, view) if ok else None
        self.clear()


def _numpy_view(scores: Tensor, cache: StepCache | None = None) -> Array | None:
    """A NumPy view sharing memory with ``scores`` (2-D float32, contiguous, on the CPU), else None.

    A decoding step's forward pass streams every weight through the CPU caches, so the small
    calls after it run cold: each torch call costs 10-20 µs there, a NumPy call a few. NumPy's
    float32 ``*``, ``/`` and comparisons round as torch's do (the tests check scores bit for bit).
    The processors of one step all ask for the same tensor's view; the checks and the view are
    made once for it through the chain's ``cache`` (~10 µs each time otherwise, measured in the
    decoding loop).
    """
    if cache is not None and cache.scores is scores:
        return cache.view
    # torch refuses a GPU tensor, one that requires grad or a dtype NumPy lacks (bfloat16); the
    # rest is checked on the view, whose attributes cost a fraction of torch's (~8 µs a call)
    try:
        view = scores.numpy()
    except (RuntimeError, TypeError):
        return None
    if view.dtype != np.float32 or view.ndim != 2 or not view.flags.c_contiguous:
        return None
    if cache is not None:
        cache.scores, cache.view = scores, view
    return view


def top_within(view: Array, bound: tuple[Array, NDArray[np.int64]], k: int) -> tuple[Array, NDArray[np.int64]] | None:
    """The ``k`` largest of each row of ``view`` (values, ids; ties: the lower id first), found
    among ``bound``'s ids (``StepCache.bound``), or None when they may not all be there: the
    k-th must beat the smallest raw value of the bound, which every other token's score is at
    most, and no score may be NaN."""
    values, ids = bound
    rows = ids.shape[0]
    if k > ids.shape[-1] or rows != view.shape[0]:
        return None
    if rows == 1:
        return _rank_one_row(view[0, ids[0]].tolist(), ids[0].tolist(), float(values[0, -1]), k)
    # plain fancy indexing: take_along_axis builds its index in Python (~10 calls a use)
    return _rank_rows(view[_row_index(rows), ids], ids, values[:, -1], k)


def _rank_rows(gathered: Array, ids: NDArray[np.int64], floor: Array, k: int) -> tuple[Array, NDArray[np.int64]] | None:
    """The ``k`` best of each row of candidates (``gathered[r, j]``: the score of ``ids[r, j]``),
    or None unless the k-th beats ``floor`` (no NaN allowed)."""
    if np.isnan(gathered).any():  # argmax and torch's top-k rank NaN first
        return None
    index = _row_index(ids.shape[0])
    order = np.lexsort((ids, -gathered))[:, :k]
    top = gathered[index, order]
    if not (top[:, -1] > floor).all():
        return None
    return top, ids[index, order]


def _rank_one_row(
    gathered: list[float], candidates: list[int], floor: float, k: int
) -> tuple[Array, NDArray[np.int64]] | None:
    """``_rank_rows`` for a single row, ranked in Python floats: right after a forward pass each
    NumPy call runs cold (~15 µs), and sorting ~64 (score, id) pairs in Python costs less than
    the ~10 calls of the NumPy way. float32 values convert to Python floats exactly, so the
    order and the values returned are the same."""
    total = sum(gathered)  # NaN if any is (or +inf meets -inf: then look)
    if total != total and any(v != v for v in gathered):  # NaN: argmax and torch's top-k rank it first
        return None
    # largest score first, the lower id first among equal scores
    ranked = sorted(zip([-v for v in gathered], candidates))[:k]
    if not -ranked[-1][0] > floor:
        return None
    top = np.array([[-v for v, _ in ranked]], dtype=np.float32)
    return top, np.array([[t for _, t in ranked]], dtype=np.int64)


def _row_index(rows: int) -> NDArray[np.int64]:
    index = _ROW_INDEX.get(rows)
    if index is None:
        index = _ROW_INDEX[rows] = np.arange(rows)[:, None]
    return index


_ROW_INDEX: dict[int, NDArray[np.int64]] = {}
"""``arange(rows)[:, None]`` per row count, for ``top_within``'s gathers (never written to)."""


# -- the chain --------------------------------------------------------------------------------------
class Lowering(Protocol):
    """A base processor that only lowers scores, and can lower the candidates' alone: ``follow``
    takes the step's sequences into its state (once a step: a second call with the loop's same
    sequences does nothing), then ``lower_pool`` changes the scores of candidate tokens, in
    place, by the same float32 arithmetic as ``lower_row`` changes them in whole rows. A chain
    of these ranks the step's bound (``StepCache.bound``) without a pass over the row, and
    without changing it (``ProcessorChain.lowered_top``)."""

    lowers_only: bool

    def follow(self, input_ids: Tensor, width: int) -> None: ...

    def lower_row(self, scores: Tensor) -> Tensor: ...

    def lower_pool(self, values: Array, ids: list[list[int]]) -> None: ...


def _lowering(processor: object) -> bool:
    return getattr(processor, "lowers_only", False) is True and callable(getattr(processor, "lower_pool", None))


class PoolWarper:
    """A sampling warper that works on candidate scores in NumPy: a ``(rows, width)`` array whose
    columns are the vocabulary (``ids`` None) or the pool's token ids, -inf for a removed token.
    At the end of a ``ProcessorChain`` it runs on the pool a top-k left, else on the whole row.
    Subclasses set ``truncates`` when they only remove tokens (the rest keep their scores)."""

    truncates = False

    def warp(self, values: Array, ids: NDArray[np.int64] | None, input_ids: Tensor) -> Array:
        raise NotImplementedError

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        """As a transformers processor: on the whole row (float32 on a CPU in place, else a copy)."""
        import torch

        view = _numpy_view(scores)
        if view is not None:
            self.warp(view, None, input_ids)
            return scores
        array = scores.detach().cpu().numpy().copy()
        return torch.from_numpy(self.warp(array, None, input_ids)).to(device=scores.device, dtype=scores.dtype)


_COMPACT_WIDTH = 4096
"""A whole row wider than this is cut down to its finite entries before the next pool warper."""


class ProcessorChain(list):
    """Logits processors applied in order, as ``LogitsProcessorList`` applies them, minus the
    ``inspect.signature`` it runs on every processor at every step (~0.1 ms each): processors
    here take (input_ids, scores) only.

    ``warpers_from`` marks where sampling's warpers (temperature, top-k, top-p …) begin: ``base``
    is the chain before them (the scores every allowed token keeps), ``warpers`` the rest.
    Processors with a ``step`` attribute share the chain's ``StepCache``."""

    warpers_from: int | None = None
    """Index of the first warper; None: the chain has none."""

    def __init__(self, processors: list | tuple = (), cache: StepCache | None = None):
        super().__init__(processors)
        self.cache = cache if cache is not None else StepCache()
        for processor in self:
            self._attach(processor)

    def _attach(self, processor: object) -> None:
        if hasattr(processor, "step"):
            processor.step = self.cache

    def append(self, processor: object) -> None:
        self._attach(processor)
        super().append(processor)

    def _part(self, start: int | None, stop: int | None) -> ProcessorChain:
        """The chain's processors from ``start`` to ``stop``, made once (a step asks every time);
        the key names every processor, so a chain changed since gets its part made again."""
        key = (start, stop, tuple(map(id, self)))
        parts = self.__dict__.setdefault("_parts", {})
        part = parts.get(key)
        if part is None:
            part = parts[key] = ProcessorChain(self[start:stop], cache=self.cache)
        return part

    @property
    def base(self) -> ProcessorChain:
        return self if self.warpers_from is None else self._part(None, self.warpers_from)

    @property
    def warpers(self) -> ProcessorChain:
        return ProcessorChain(cache=self.cache) if self.warpers_from is None else self._part(self.warpers_from, None)

    @property
    def lowers_on_pool(self) -> bool:
        """Whether every processor is a ``Lowering`` (an empty chain is not)."""
        return bool(len(self)) and all(map(_lowering, self))

    def lowered_top(self, input_ids: Tensor, scores: Tensor, k: int) -> tuple[Array, NDArray[np.int64]] | None:
        """The ``k`` best scores after the chain (values, ids; ties: the lower id first), found
        among the step's bound alone, with ``scores`` left as they are, when every processor is a
        ``Lowering``. None where they may lie outside the bound (the chain must then run on the
        row, and its state, moved already, does not move again) or the chain cannot say."""
        bound = self.cache.bound
        if bound is None or not self.lowers_on_pool:
            return None
        values, ids = bound
        if k > ids.shape[-1] or ids.shape[0] != scores.shape[0]:
            return None
        width = scores.shape[-1]
        self.cache.clear()
        self.cache.ids = input_ids
        try:
            for processor in self:
                processor.follow(input_ids, width)
            lowered = values.copy()
            candidates = ids.tolist()
            for processor in self:
                processor.lower_pool(lowered, candidates)
        finally:
            self.cache.clear()
        if ids.shape[0] == 1:
            return _rank_one_row(lowered[0].tolist(), candidates[0], float(values[0, -1]), k)
        return _rank_rows(lowered, ids, values[:, -1], k)

    def leaves_scores(self) -> bool:
        """Whether ``pool`` leaves the scores it is given as they are this step: its processors
        before the top-k rank the bound (``lowered_top``), and where the row is needed after all
        they run on a copy of it."""
        if self.cache.bound is None:
            return False
        key = tuple(map(id, self))  # the chain's processors as they are (each step asks twice)
        known = self.__dict__.get("_leaves")
        if known is None or known[0] != key:
            end = self._pool_end()
            last = self[end - 1] if end else None
            known = self.__dict__["_leaves"] = (key, hasattr(last, "k") and self._part(None, end - 1).lowers_on_pool)
        return known[1]

    def _pool_end(self) -> int:
        """Where the trailing pool warpers begin."""
        end = len(self)
        while end and isinstance(self[end - 1], PoolWarper):
            end -= 1
        return end

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self.cache.clear()
        self.cache.ids = input_ids  # converted once, by the first processor that needs it
        try:
            for processor in self:
                scores = processor(input_ids, scores)
        finally:
            self.cache.clear()
        return scores

    def pool(self, input_ids: Tensor, scores: Tensor, arrays: bool = False) -> tuple[Tensor, Tensor | None]:
        """(scores, None) as ``__call__`` gives them, or, when a top-k that can say so comes
        before the trailing pool warpers, (pool scores, pool token ids): the only tokens left
        with a finite score, all others -inf. Sampling from the pool is sampling from the full
        scores. Pool warpers behind no top-k run on the whole row, which is then cut down to its
        finite entries (a pool) once it is mostly -inf. ``arrays``: a pool may come as NumPy
        arrays (no torch calls after a top-k found in NumPy; the full row stays a tensor)."""
        end = self._pool_end()
        tail = list(self[end:])
        last = self[end - 1] if end else None
        pooled = None
        if hasattr(last, "pool"):
            before = self._part(None, end - 1)
            found = None
            if self.leaves_scores():  # the top-k's k + 1 candidates from the bound (no pass over the row)
                k = min(last.k, scores.shape[-1])
                found = before.lowered_top(input_ids, scores, k + 1) if k < scores.shape[-1] else None
                if found is not None:
                    pooled = last.pool(input_ids, scores, arrays=arrays, found=found)
                if pooled is None:
                    scores = scores.clone()  # the row after all, on a copy: the caller's stays
            if pooled is None:
                scores = before(input_ids, scores)
                if self.cache.bound is not None and not all(getattr(p, "lowers_only", False) for p in before):
                    self.cache.bound = None  # something before the top-k may raise a score
                if found is None:
                    pooled = last.pool(input_ids, scores, arrays=arrays)
                if pooled is None:
                    scores = last(input_ids, scores)
        else:
            scores = self._part(None, end)(input_ids, scores)
        if not tail:
            return pooled if pooled is not None else (scores, None)
        return _warp_pool(tail, input_ids, scores, pooled, arrays)


def _warp_pool(
    warpers: list[PoolWarper],
    input_ids: Tensor,
    scores: Tensor,
    pooled: tuple[Tensor, Tensor] | tuple[Array, NDArray[np.int64]] | None,
    arrays: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """The pool warpers over a pool (or the whole row), in NumPy; torch tensors back (a pool
    found as NumPy arrays stays so with ``arrays``)."""
    import torch

    device, dtype = scores.device, scores.dtype
    if pooled is not None and isinstance(pooled[0], np.ndarray):  # the top-k's own arrays
        values, ids = pooled
        for warper in warpers:
            values = warper.warp(values, ids, input_ids)
        if arrays:
            return values, ids
        return torch.from_numpy(values), torch.from_numpy(ids)
    if pooled is not None:
        values = host_array(pooled[0]).copy()
        ids: NDArray[np.int64] | None = host_array(pooled[1])
    else:
        view = _numpy_view(scores)
        values = view if view is not None else scores.detach().cpu().numpy().copy()
        ids = None
    for warper in warpers:
        if ids is None and values.shape[-1] > _COMPACT_WIDTH:
            keep = np.flatnonzero(np.isfinite(values).any(axis=0))
            if len(keep) * 4 < values.shape[-1]:
                values = np.ascontiguousarray(values[:, keep])
                ids = np.broadcast_to(keep, values.shape).copy()
        values = warper.warp(values, ids, input_ids)
    out = torch.from_numpy(values)
    if device.type != "cpu" or out.dtype != dtype:  # each no-op ``to`` is a call too
        out = out.to(device=device, dtype=dtype)
    if ids is None:
        return out, None
    found = torch.from_numpy(ids)
    return out, found if device.type == "cpu" else found.to(device=device)


def host_array(tensor: Tensor) -> NDArray:
    """``tensor.detach().cpu().numpy()``: a CPU tensor's own view in one call (each torch call
    costs 10-20 µs right after a forward pass), the chain of three elsewhere."""
    if tensor.device.type == "cpu" and not tensor.requires_grad:
        return tensor.numpy()
    return tensor.detach().cpu().numpy()


numpy_view = _numpy_view

__all__ = ["PoolWarper", "ProcessorChain", "StepCache", "host_array", "numpy_view", "top_within"]
