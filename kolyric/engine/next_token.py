"""The model's next-token distribution at one decoding step, read without a softmax over the
vocabulary where it can be (``NextToken``).

The loop needs three things from the distribution: each row's top alternatives with their
probabilities (the inspector), the probability of the token chosen, and (only for the whole-word
look-ahead) the full rows. A probability is ``exp(logit - logsumexp(logits))``, so the first two
need only the row's log-sum-exp and its top logits: an ONNX Runtime step graph gives both
(``onnx_graph.NEXT_OUTPUTS``), and on a CPU elsewhere NumPy finds them in one pass. After a
forward pass every pass over the 51,200 entries runs cold (~100-200 µs for a softmax and a top-k
of its result), which this avoids. The full softmax (torch's, as before) is made where the rows
themselves are read, where NumPy does not apply (a GPU, a small vocabulary, NaN) and where a graph
lacks the outputs and NumPy cannot stand in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from kolyric.engine import processors as lean

if TYPE_CHECKING:
    import torch
    from numpy.typing import NDArray

    from kolyric.engine.onnx_decoder import NextTop


class NextToken:
    """One step's next-token distribution over ``logits`` (rows, vocab), float32.

    ``top``: the graph's (log-sum-exp, top logits, ids) of these logits, or None. ``full``: make
    the torch probabilities now (the look-ahead reads and updates them in place as ``probs``).
    ``view``: the logits' NumPy view, where the caller has it.
    Processors may change ``logits`` in place afterwards: call ``keep`` before they run."""

    def __init__(
        self,
        logits: torch.Tensor,
        top: NextTop | None = None,
        full: bool = False,
        view: NDArray[np.float32] | None = None,
    ):
        self.logits = logits
        self.probs: torch.Tensor | None = None
        """The full probabilities (torch), where they are made."""
        self.view = None if full else view if view is not None else lean.numpy_view(logits)
        self.lse: list[float] | None = None
        """Each row's log-sum-exp of the logits, once ``alternatives`` has found it."""
        self.top = top if self.view is not None else None
        self.original: NDArray[np.float32] | None = None
        self._cache = lean.StepCache()
        if self.view is None:
            self._softmax()

    def _softmax(self) -> None:
        import torch

        self.view = self.top = None
        self.probs = torch.softmax(self.logits, dim=-1)

    @property
    def exact(self) -> bool:
        """Whether the full probabilities are made (and the lists come from them)."""
        return self.probs is not None

    def alternatives(self, k: int) -> tuple[list[list[float]], list[list[int]]]:
        """Each row's ``k`` most likely tokens, most likely first: (probabilities, ids). Call
        before the processors change the logits."""
        if self.probs is None:
            # Python floats from here: after a forward pass each first NumPy call runs cold (~50 µs)
            top = self.top
            lse = top.lse.tolist() if top is not None and top.values.shape[-1] >= k else None
            if lse is not None and all(map(math.isfinite, lse)):
                values, ids = top.values[:, :k].tolist(), top.ids[:, :k].tolist()
            else:
                self.top = None
                found = lean._top_k_numpy(self.logits, k)
                if found is None:  # NaN, or a flat row (mostly -inf): torch's way
                    self._softmax()
                    return self.alternatives(k)
                lse = _logsumexp(self.view).tolist()
                if not all(map(math.isfinite, lse)):
                    self._softmax()
                    return self.alternatives(k)
                values, ids = found[0].tolist(), found[1].tolist()
            self.lse = lse
            exp = math.exp
            return [[exp(v - norm) for v in row] for row, norm in zip(values, lse)], ids
        return lean.top_k_lists(self.probs, k, self._cache)

    def top_ids(self) -> list[int] | None:
        """Each row's most likely token from the graph's top logits (argmax's choice: the lower
        id of equal logits), or None where the graph gave none."""
        return self.top.ids[:, 0].tolist() if self.top is not None else None

    def bound(self) -> tuple[NDArray[np.float32], NDArray[np.int64]] | None:
        """The graph's top logits and their ids (``chain.StepCache.bound``), where it gave them."""
        return (self.top.values, self.top.ids) if self.top is not None else None

    def keep(self, into: NDArray[np.float32] | None = None) -> None:
        """Keep the logits as they are now, for ``prob``: processors change them in place next.
        ``into``: an array of the logits' shape to copy them to (the loop's own, reused every
        step: no fresh 200 KB a step to allocate and fault in)."""
        if self.probs is None and self.original is None:
            view = self.view
            if into is not None and into.shape == view.shape and into.dtype == view.dtype:
                np.copyto(into, view)
                self.original = into
            else:
                self.original = view.copy()

    def prob(self, row: int, token_id: int) -> float:
        """The model's probability of ``token_id`` in ``row`` (before any processor)."""
        if self.probs is not None:
            cache = self._cache
            view = cache.view if cache.scores is self.probs else lean.numpy_view(self.probs)
            return float(view[row, token_id]) if view is not None else float(self.probs[row, token_id])
        logits = self.original if self.original is not None else self.view
        return math.exp(float(logits[row, token_id]) - self.lse[row])

    def row(self, i: int) -> torch.Tensor | None:
        """Row ``i`` of the full probabilities, where they are made."""
        return self.probs[i] if self.probs is not None else None


def _logsumexp(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    """log(sum(exp(row))) of each row, computed as a softmax's normaliser is (from its maximum)."""
    top = rows.max(axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        return top + np.log(np.exp(rows - top[:, None]).sum(axis=-1))


__all__ = ["NextToken"]
