"""The processor chain of a decoding step: ``ProcessorChain`` (transformers' ``LogitsProcessorList``
without its per-step signature checks), the ``StepCache`` its processors share within a step,
and ``PoolWarper``, the NumPy warpers that run on the pool a top-k left.

``kolyric.engine.processors`` re-exports all of it; the processors themselves live there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
        return _top_within_one_row(view, values, ids, k)
    # plain fancy indexing: take_along_axis builds its index in Python (~10 calls a use)
    index = _ROW_INDEX.get(rows)
    if index is None:
        index = _ROW_INDEX[rows] = np.arange(rows)[:, None]
    gathered = view[index, ids]
    if np.isnan(gathered).any():  # argmax and torch's top-k rank NaN first
        return None
    order = np.lexsort((ids, -gathered))[:, :k]
    top = gathered[index, order]
    if not (top[:, -1] > values[:, -1]).all():
        return None
    return top, ids[index, order]


def _top_within_one_row(
    view: Array, values: Array, ids: NDArray[np.int64], k: int
) -> tuple[Array, NDArray[np.int64]] | None:
    """``top_within`` for a single row, ranked in Python floats: right after a forward pass each
    NumPy call runs cold (~15 µs), and sorting ~64 (score, id) pairs in Python costs less than
    the ~10 calls of the NumPy way. float32 values convert to Python floats exactly, so the
    order and the values returned are the same."""
    candidates = ids[0].tolist()
    gathered = view[0, ids[0]].tolist()
    if any(v != v for v in gathered):  # NaN: argmax and torch's top-k rank it first
        return None
    # largest score first, the lower id first among equal scores
    ranked = sorted(zip([-v for v in gathered], candidates))[:k]
    if not -ranked[-1][0] > float(values[0, -1]):
        return None
    top = np.array([[-v for v, _ in ranked]], dtype=np.float32)
    return top, np.array([[t for _, t in ranked]], dtype=np.int64)


_ROW_INDEX: dict[int, NDArray[np.int64]] = {}
"""``arange(rows)[:, None]`` per row count, for ``top_within``'s gathers (never written to)."""


# -- the chain --------------------------------------------------------------------------------------
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
        end = len(self)
        while end and isinstance(self[end - 1], PoolWarper):
            end -= 1
        tail = list(self[end:])
        last = self[end - 1] if end else None
        pooled = None
        if hasattr(last, "pool"):
            scores = self._part(None, end - 1)(input_ids, scores)
            if self.cache.bound is not None and not all(getattr(p, "lowers_only", False) for p in self[: end - 1]):
                self.cache.bound = None  # something before the top-k may raise a score
            pooled = last.pool(input_ids, scores, arrays=True) if arrays else last.pool(input_ids, scores)
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
