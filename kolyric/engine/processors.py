"""Logits processing for kolyric's decoding loop, lean enough to stay a small share of a step.

On a CPU with int8 weights everything the loop does beside the forward pass competes with a
step of a few milliseconds, and transformers' processors and a few plain torch calls (top-k,
argmax, the repetition and n-gram processors, which rescan the sequence or build vocabulary-wide
masks every step) were most of that time; ``tests/benchmarks/README.md`` has the figures.

So this module holds, for exactly those, replacements that give the same scores:

- ``top_k`` / ``argmax``: exact top-k and argmax over a CPU row through NumPy, pruned by group
  maxima; torch's elsewhere.
- (the repetition penalty, no-repeat n-gram and min-length replacements, which follow the
  sequence one token a step, are ``kolyric.engine.incremental``'s)
- ``TopKThenTopP`` / ``TopK``: the temperature over the k survivors only, top-k (and top-p over
  its survivors only) with one top-k call, and a ``pool`` form that hands the loop the k
  survivors, so sampling never touches the rest of the vocabulary.

The samplers beyond these (min-p, typical-p, DRY …) are ``kolyric.engine.samplers`` and
``kolyric.engine.penalties``; the chain that runs them all, ``kolyric.engine.chain``. Temperature
without top-k and top-p alone are transformers' own. ``tests/unit/test_processors.py`` checks each
replacement against the transformers processor it replaces, score for score, over many random
steps.

Processors in a ``ProcessorChain`` may change the score tensor they are given in place: the
loop hands over logits it no longer needs. Those with a ``step`` attribute share the chain's
``StepCache`` (the engine's state lives on its objects: this module keeps none of its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

# the chain and its step cache live in kolyric.engine.chain; re-exported here
from kolyric.engine.chain import PoolWarper, ProcessorChain, StepCache, _numpy_view, top_within

if TYPE_CHECKING:  # annotations only: importing this module must not import torch
    from torch import Tensor
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

Array = NDArray[np.floating]
Ranked = tuple[Array, NDArray[np.int64]]
"""The best scores of each row and their token ids, largest first (ties: the lower id first)."""

_NUMPY_MIN_VOCAB = 4096
"""Below this many entries torch's own top-k and argmax are as fast."""
_GROUPS = 512
"""Group maxima for the top-k pruning: one strided max over the row, vectorised by NumPy."""


# -- top-k and argmax ----------------------------------------------------------------------------
def _numpy_rows(scores: Tensor, cache: StepCache | None = None) -> Array | None:
    """``scores`` as a NumPy array when the fast CPU path applies, else None."""
    if scores.shape[-1] < _NUMPY_MIN_VOCAB:
        return None
    return _numpy_view(scores, cache)


def top_k_lists(scores: Tensor, k: int, cache: StepCache | None = None) -> tuple[list[list[float]], list[list[int]]]:
    """``top_k`` as Python lists (values, ids), without torch tensors in between where NumPy finds
    them (``cache``: a ``StepCache`` that keeps the NumPy view of ``scores`` for a later lookup)."""
    found = _top_k_numpy(scores, k, cache)
    if found is None:
        values, ids = top_k(scores, k)
        return values.tolist(), ids.tolist()
    return found[0].tolist(), found[1].tolist()


def top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(values, indices) of the ``k`` largest scores of each row, largest first.

    The values are exactly ``torch.topk``'s. Among equal scores the lower vocabulary index comes
    first (torch leaves that order unspecified). On a CPU row of float32 scores the top k are
    found among the entries at least as large as the k-th largest of 512 strided group maxima (k
    groups each hold an entry that large, so the k-th largest entry is too): one vectorised max,
    a comparison and a sort of the few survivors, ~25 µs instead of torch.topk's ~90 µs.
    """
    import torch

    found = _top_k_numpy(scores, k)
    if found is None:
        return torch.topk(scores, k, dim=-1)
    return torch.from_numpy(found[0]), torch.from_numpy(found[1])


def _top_k_numpy(scores: Tensor, k: int, cache: StepCache | None = None) -> tuple[Array, NDArray[np.int64]] | None:
    """``top_k`` as NumPy arrays (float32 values, int64 ids), or None where torch's is used."""
    rows = _numpy_rows(scores, cache)
    width = scores.shape[-1]
    if rows is None or k > _GROUPS // 4 or k >= width:
        return None
    values = np.empty((rows.shape[0], k), dtype=np.float32)
    indices = np.empty((rows.shape[0], k), dtype=np.int64)
    span = width // _GROUPS * _GROUPS
    for r, row in enumerate(rows):
        maxima = row[:span].reshape(-1, _GROUPS).max(axis=0)
        if span < width:
            maxima = np.append(maxima, row[span:].max())
        # one partition places the k-th largest and the largest, which is NaN when the row holds
        # one (NumPy sorts NaN last; torch.topk ranks it above everything: then torch's way)
        ranked = np.partition(maxima, (-k, -1))
        if ranked[-1] != ranked[-1]:
            return None
        threshold = ranked[-k]
        found = np.flatnonzero(row >= threshold)
        if len(found) > 64 * k:  # a flat row (say, mostly -inf): nothing to prune
            return None
        found_values = row[found]
        order = np.argsort(-found_values, kind="stable")[:k]
        values[r] = found_values[order]
        indices[r] = found[order]
    return values, indices


def argmax(scores: Tensor) -> Tensor:
    """``scores.argmax(dim=-1)`` (the first maximum of each row; NaN counts as the maximum), through
    NumPy on a CPU: torch's CPU argmax takes ~70 µs over 51,200 entries, NumPy's ~3 µs."""
    import torch

    rows = _numpy_rows(scores)
    if rows is None:
        return scores.argmax(dim=-1)
    return torch.from_numpy(rows.argmax(axis=-1)).to(torch.long)


_FLOAT32_MAX = 3.4028234663852886e38


def overflows_float32(magnitude: float, divisor: float) -> bool:
    """Whether ``magnitude / divisor`` (a score over a temperature) overflows float32, where the
    scores are divided: the divisor itself rounds to 0 there, or the quotient passes the largest
    float32 (with a factor 2 of room for the rounding of either)."""
    return bool(np.float32(divisor) == 0) or magnitude / divisor > _FLOAT32_MAX / 2


# -- top-k and top-p ---------------------------------------------------------------------------
class TopK:
    """transformers' ``TemperatureLogitsWarper(temperature)`` (when not 1) then
    ``TopKLogitsWarper(top_k)``: scores below the k-th largest become -inf (ties at the k-th
    score all stay). The same scores, with ``top_k`` and a pool form.

    The temperature divides the k survivors only: dividing by a positive number keeps the order,
    so the same k survive, and each keeps exactly the value ``scores / temperature`` gives it
    (the same torch division). That saves a pass over the vocabulary (~50 µs a token at 51,200
    entries). Where the division makes the k-th and the next score equal (top-k would then keep
    both), the whole row is divided and handed to transformers' warper instead."""

    def __init__(self, k: int, temperature: float = 1.0):
        self.k = max(int(k), 1)
        self.step: StepCache | None = None  # the chain's: the scores' NumPy view made once a step
        self._temperature = float(temperature)
        # transformers' warpers, for the rows NumPy does not take: built on first use, so the
        # decoding loop does not import transformers' generation package (~0.4-0.9 s) before its
        # first token
        self._warpers: tuple[TopKLogitsWarper, TemperatureLogitsWarper | None] | None = None

    @property
    def inner(self) -> TopKLogitsWarper:
        return self._transformers()[0]

    @property
    def temperature(self) -> TemperatureLogitsWarper | None:
        return self._transformers()[1] if self._temperature != 1.0 else None

    def _transformers(self) -> tuple[TopKLogitsWarper, TemperatureLogitsWarper | None]:
        if self._warpers is None:
            from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper

            self._warpers = (
                TopKLogitsWarper(self.k),
                TemperatureLogitsWarper(self._temperature) if self._temperature != 1.0 else None,
            )
        return self._warpers

    def _survivors(
        self, scores: Tensor, arrays: bool = False, found: Ranked | None = None
    ) -> tuple[Tensor, Tensor] | None:
        """The k best (scores, ids), largest first, the temperature applied, or None when the
        k-th score is tied with the next (top-k then keeps more than k) or k covers the vocabulary.
        ``arrays``: NumPy arrays where NumPy found them (no torch call). ``found``: the k + 1
        best scores of ``scores`` (values, ids; ties: the lower id first), already known."""
        import torch

        k = min(self.k, scores.shape[-1])
        if k >= scores.shape[-1]:
            return None
        step = self.step
        if found is None and step is not None and step.bound is not None:  # among the raw top entries
            view = _numpy_view(scores, step)
            found = top_within(view, step.bound, k + 1) if view is not None else None
        if found is None:
            found = _top_k_numpy(scores, k + 1, step)
        if found is not None:  # the division and the tie check in NumPy: no torch call
            kept, ids = found
            if self._temperature != 1.0:  # float32 / float32, rounded as torch's ``scores / t``
                with np.errstate(over="ignore"):  # a tiny temperature overflows to inf, as torch's does
                    kept = kept / np.float32(self._temperature)
            if (kept[:, k] == kept[:, k - 1]).any():
                return None
            if arrays:
                return kept[:, :k], ids[:, :k]
            return torch.from_numpy(kept[:, :k]), torch.from_numpy(ids[:, :k])
        kept, ids = torch.topk(scores, k + 1, dim=-1)
        if self.temperature is not None:
            kept = self.temperature(None, kept)
        if bool((kept[:, k] == kept[:, k - 1]).any()):
            return None
        return kept[:, :k], ids[:, :k]

    def _full_row(self, scores: Tensor) -> Tensor:
        """transformers' own warpers over the whole row (the fallback)."""
        if self.temperature is not None:
            scores = self.temperature(None, scores)
        return self.inner(None, scores)

    def pool(
        self,
        input_ids: Tensor,
        scores: Tensor,
        arrays: bool = False,
        found: Ranked | None = None,
    ) -> tuple[Tensor, Tensor] | None:
        """The survivors (scores, ids), or None: the caller runs the warper on the whole row.
        ``arrays``: as NumPy arrays where NumPy found them. ``found``: as ``_survivors``."""
        return self._survivors(scores, arrays, found)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        survivors = self._survivors(scores)
        if survivors is None:
            return self._full_row(scores)
        return _spread(scores, *survivors)


class _LazyTopP:
    """transformers' ``TopPLogitsWarper(p)``: its settings now (read by the NumPy pool), the
    warper itself built on the first call that needs it (a row NumPy does not take)."""

    def __init__(self, p: float):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"top_p: must be between 0 and 1, got {p}")
        self.top_p, self.min_tokens_to_keep, self.filter_value = p, 1, -float("inf")
        self._warper: TopPLogitsWarper | None = None

    def __call__(self, input_ids: Tensor | None, scores: Tensor) -> Tensor:
        if self._warper is None:
            from transformers.generation.logits_process import TopPLogitsWarper

            self._warper = TopPLogitsWarper(self.top_p)
        return self._warper(input_ids, scores)


class TopKThenTopP(TopK):
    """transformers' ``TemperatureLogitsWarper`` (when not 1), ``TopKLogitsWarper`` then
    ``TopPLogitsWarper``. The same scores (up to one rounding unit at the top-p boundary: see
    ``_top_p``), with top-p's sort over the k survivors instead of the
    whole vocabulary (~3 ms a token at 51,200 entries: top-p only ever removes tokens that top-k
    left in) and a pool form."""

    def __init__(self, k: int, p: float, temperature: float = 1.0):
        super().__init__(k, temperature)
        self.top_p = _LazyTopP(float(p))

    def pool(
        self,
        input_ids: Tensor,
        scores: Tensor,
        arrays: bool = False,
        found: Ranked | None = None,
    ) -> tuple[Tensor, Tensor] | None:
        import torch

        survivors = self._survivors(scores, arrays=True, found=found)
        if survivors is None:
            return None
        kept, ids = survivors
        if isinstance(kept, np.ndarray):
            filtered = self._top_p_numpy(kept)
            if filtered is None:
                return None
            return (filtered, ids) if arrays else (torch.from_numpy(filtered), torch.from_numpy(ids))
        filtered = self._top_p(kept)
        return (filtered, ids) if filtered is not None else None

    def _top_p_numpy(self, kept: Array) -> Array | None:
        """``_top_p`` over NumPy survivors. The cumulative probabilities come from NumPy (Python
        floats for a single row), which rounds a little differently from torch: where one lands
        within ``_TOP_P_MARGIN`` of 1 - p, torch's own arithmetic decides, as in ``_top_p``."""
        import torch

        threshold = np.float32(1 - self.top_p.top_p)
        removed = _removed_one_row(kept, float(threshold)) if kept.shape[0] == 1 else None
        if removed is None:
            top = kept[:, :1]
            if not np.isfinite(top).all():
                return self._numpy_of(self._top_p(torch.from_numpy(kept)))
            weights = np.exp(kept[:, ::-1] - top)
            cumulative = weights.cumsum(axis=-1) / weights.sum(axis=-1, keepdims=True)
            if (np.abs(cumulative - threshold) <= _TOP_P_MARGIN).any():
                return self._numpy_of(self._top_p(torch.from_numpy(kept)))
            removed = (cumulative <= threshold).sum(axis=-1).tolist()
        elif removed == -1:  # near the boundary: torch's arithmetic decides
            return self._numpy_of(self._top_p(torch.from_numpy(kept)))
        if not any(removed):
            return kept
        k, keep_min = kept.shape[-1], self.top_p.min_tokens_to_keep
        out = None
        for row, count in enumerate(removed):
            count = min(count, k - keep_min)
            if count <= 0:
                continue
            if kept[row, k - count] == kept[row, k - count - 1]:  # a tie at the boundary
                return None
            if out is None:
                out = kept.copy()
            out[row, k - count :] = self.top_p.filter_value
        return kept if out is None else out

    @staticmethod
    def _numpy_of(values: Tensor | None) -> Array | None:
        return None if values is None else values.numpy()

    def _top_p(self, kept: Tensor) -> Tensor | None:
        """``TopPLogitsWarper`` over the survivors (largest first): the same arithmetic, or None
        when a score it removes equals one it keeps. One difference remains: the probabilities
        are summed over the k survivors, not the whole row, so a cumulative probability within a
        rounding error (one float32 unit) of 1 - p can fall on the other side of it and keep one
        token more or less than transformers would. That needs a cumulative probability to land
        within that unit of 1 - p: rare, but a review found such cases by searching for them.
        Which of equal scores fall at the boundary follows the tie order of torch's (unstable)
        sort of the whole row, which the survivors cannot reproduce; the caller then runs
        transformers' warper over the row.

        The survivors are sorted already, so the ascending sort is a flip; the cumulative
        probabilities only grow, so top-p removes a run of the smallest and keeps the rest.
        """
        import torch

        k = kept.shape[-1]
        cumulative = kept.flip(-1).softmax(dim=-1).cumsum(dim=-1)
        # the rest in NumPy on a CPU: torch compares a float32 tensor with a number in float32 too
        cpu = kept.device.type == "cpu" and kept.dtype == torch.float32 and not kept.requires_grad
        threshold = 1 - self.top_p.top_p
        removed = (
            (cumulative.numpy() <= np.float32(threshold)).sum(axis=-1) if cpu else (cumulative <= threshold).sum(dim=-1)
        ).tolist()
        if not any(removed):
            return kept
        keep_min = self.top_p.min_tokens_to_keep
        values = kept.numpy() if cpu else kept.tolist()
        out = None
        for row, count in enumerate(removed):
            count = min(count, k - keep_min)
            if count <= 0:
                continue
            if values[row][k - count] == values[row][k - count - 1]:  # a tie at the boundary
                return None
            if out is None:
                out = values.copy() if cpu else kept.clone()
            out[row, k - count :] = self.top_p.filter_value
        return kept if out is None else torch.from_numpy(out) if cpu else out

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        pooled = self.pool(input_ids, scores)
        if pooled is None:
            return self.top_p(input_ids, self._full_row(scores))
        return _spread(scores, *pooled)


_TOP_P_MARGIN = 1e-5
"""How near 1 - p NumPy's cumulative probability may come before torch's decides (the two
differ by a few float32 units, ~1e-7)."""


def _removed_one_row(kept: Array, threshold: float) -> list[int] | None:
    """``_top_p_numpy``'s count of removed tokens for a single row of survivors (largest first)
    in Python floats: [count], -1 when a cumulative probability lands within ``_TOP_P_MARGIN``
    of ``threshold`` (torch decides), or None when the row is not all finite numbers (NumPy's
    way). On ~50 entries right after a forward pass one pass in Python costs a fraction of
    NumPy's ten calls, each cold; float64 sums stay well within the margin of torch's."""
    import math

    row = kept[0].tolist()
    top = row[0]
    if not math.isfinite(top):
        return None
    exp = math.exp
    weights = [exp(v - top) for v in reversed(row)]
    total = sum(weights)
    if not math.isfinite(total):  # a NaN among the survivors
        return None
    high = threshold + _TOP_P_MARGIN
    low = threshold - _TOP_P_MARGIN
    cumulative, count = 0.0, 0
    for weight in weights:  # ascending: the cumulative probabilities only grow
        cumulative += weight
        share = cumulative / total
        if share > high:
            break
        if share >= low:
            return -1
        count += 1
    return [count]


def _spread(scores: Tensor, values: Tensor, ids: Tensor) -> Tensor:
    """A row of -inf the shape of ``scores`` with ``values`` at ``ids``."""
    import torch

    return torch.full_like(scores, -float("inf")).scatter_(-1, ids, values)


numpy_view = _numpy_view

__all__ = [
    "PoolWarper",
    "ProcessorChain",
    "StepCache",
    "TopK",
    "TopKThenTopP",
    "argmax",
    "numpy_view",
    "overflows_float32",
    "top_k",
    "top_k_lists",
]
