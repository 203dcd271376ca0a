"""Sampling warpers beyond temperature, top-k and top-p, each after its published definition.

From transformers' definitions (the same arithmetic, in NumPy): min-p (``MinPLogitsWarper``),
typical-p (``TypicalLogitsWarper``), epsilon and eta cutoff (``EpsilonLogitsWarper``,
``EtaLogitsWarper``), and top-p (``TopPLogitsWarper``, where it must run after a dynamic
temperature). They are rewritten rather than called because transformers' softmax and sort
the whole 51,200-entry row in torch every step (0.1-3 ms each, measured in
``tests/benchmarks/bench_samplers.py``), while these run on the few dozen tokens top-k or
min-p left (the *pool*), in microseconds; ``tests/unit/test_samplers.py`` checks each against
transformers' on crafted full rows.

Written here (transformers has none): top-n-sigma, XTC, dynamic temperature and mirostat v2
(this module), DRY and phrase bias (``kolyric.engine.penalties``).

A ``PoolWarper`` works on any candidate scores: a ``(rows, width)`` float array where -inf
marks a removed token, whose columns are the vocabulary (``ids`` None) or the pool's token
``ids``. It returns the array changed (removed tokens -inf, or rescaled scores); the draw
normalises. Called as a transformers processor ``(input_ids, scores)`` it works on the row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kolyric.engine.chain import PoolWarper

if TYPE_CHECKING:
    from torch import Tensor

Scores = NDArray[np.floating]
Ids = NDArray[np.int64]

_LOG2 = math.log(2.0)


def softmax(values: Scores) -> Scores:
    """Row-wise probabilities; a row with no finite score stays all zero."""
    top = values.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    with np.errstate(invalid="ignore", over="ignore"):
        weights = np.exp(values - top)
    total = weights.sum(axis=-1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)


def _keep_best(values: Scores, remove: NDArray[np.bool_]) -> Scores:
    """``values`` with ``remove`` set to -inf, never removing a row's best token (min_tokens_to_keep=1)."""
    best = values.argmax(axis=-1)
    remove[np.arange(len(values)), best] = False
    values[remove] = -np.inf
    return values


_PYTHON_WIDTH = 256
"""A single row of a pool at most this wide is cut in Python floats: one pass over ~50 entries
right after a forward pass costs less than NumPy's half a dozen calls, each cold."""


class MinP(PoolWarper):
    """transformers' ``MinPLogitsWarper(min_p)`` (Nguyen et al. 2024, "Turning Up the Heat:
    Min-p Sampling for Creative and Coherent LLM Outputs", arXiv:2407.01082): a token whose
    probability is below ``min_p`` times the most likely token's is removed."""

    truncates = True

    def __init__(self, min_p: float):
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p = min_p

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        if self.min_p <= 0:
            return values
        # p < min_p * p_max  <=>  score < best + log(min_p): no softmax over a whole row
        if values.shape[0] == 1 and values.shape[-1] <= _PYTHON_WIDTH:
            row = values[0].tolist()
            best = max(row)
            if all(v == v for v in row):  # no NaN (argmax's choice of best then differs from max's)
                # the same float32 (or float64) sum as NumPy's below; comparing it is exact in Python
                floor = float(values.dtype.type(best) + values.dtype.type(math.log(self.min_p)))
                first = row.index(best)
                drop = [j for j, v in enumerate(row) if v < floor and j != first]
                if drop:
                    values[0, drop] = -np.inf
                return values
        floor = values.max(axis=-1, keepdims=True) + values.dtype.type(math.log(self.min_p))
        with np.errstate(invalid="ignore"):  # a row of -inf only
            return _keep_best(values, values < floor)


class TypicalP(PoolWarper):
    """transformers' ``TypicalLogitsWarper(mass)`` (Meister et al. 2023, "Locally Typical
    Sampling", TACL): tokens are ranked by how far their surprise is from the distribution's
    entropy, and the closest are kept until their probability reaches ``mass``."""

    truncates = True

    def __init__(self, mass: float):
        if not 0 < mass <= 1:
            raise ValueError(f"typical_p must be in (0, 1], got {mass}")
        self.mass = mass

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        probs = softmax(values)
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = np.log(probs)
            entropy = -np.nansum(np.where(probs > 0, logp * probs, 0), axis=-1, keepdims=True)
            shifted = np.abs(-logp - entropy)
        order = np.argsort(shifted, axis=-1, kind="stable")
        sorted_shifted = np.take_along_axis(shifted, order, axis=-1)
        cumulative = np.cumsum(np.take_along_axis(probs, order, axis=-1), axis=-1)
        last = np.minimum((cumulative < self.mass).sum(axis=-1), values.shape[-1] - 1)
        limit = sorted_shifted[np.arange(len(values)), last][:, None]
        remove_sorted = sorted_shifted > limit
        remove_sorted[:, 0] = False
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        values[remove] = -np.inf
        return values


class EpsilonCutoff(PoolWarper):
    """transformers' ``EpsilonLogitsWarper(epsilon)`` (Hewitt et al. 2022, "Truncation Sampling
    as Language Model Desmoothing", arXiv:2210.15191): tokens with probability below ``epsilon``
    are removed, the most likely one always kept."""

    truncates = True

    def __init__(self, epsilon: float):
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
        self.epsilon = epsilon

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        return _keep_best(values, softmax(values) < values.dtype.type(self.epsilon))


class EtaCutoff(PoolWarper):
    """transformers' ``EtaLogitsWarper(epsilon)`` (Hewitt et al. 2022, as epsilon): the cutoff
    is ``min(eta, sqrt(eta) * exp(-entropy))``, lower where the distribution is flat."""

    truncates = True

    def __init__(self, eta: float):
        if not 0 < eta < 1:
            raise ValueError(f"eta must be in (0, 1), got {eta}")
        self.eta = eta

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        probs = softmax(values)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(probs > 0, probs * np.log(probs), 0).sum(axis=-1, keepdims=True)
        cutoff = np.minimum(self.eta, math.sqrt(self.eta) * np.exp(-entropy)).astype(values.dtype)
        return _keep_best(values, probs < cutoff)


class TopP(PoolWarper):
    """transformers' ``TopPLogitsWarper(top_p)`` (Holtzman et al. 2020, "The Curious Case of
    Neural Text Degeneration"): the most likely tokens are kept until their probability
    reaches ``top_p``. Used where it must follow a dynamic temperature."""

    truncates = True

    def __init__(self, top_p: float):
        self.top_p = top_p

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        order = np.argsort(values, axis=-1, kind="stable")  # ascending, as transformers sorts
        ascending = np.take_along_axis(values, order, axis=-1)
        cumulative = np.cumsum(softmax(ascending), axis=-1)
        remove_sorted = cumulative <= (1 - self.top_p)
        remove_sorted[:, -1] = False
        remove = np.zeros_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        values[remove] = -np.inf
        return values


class TopNSigma(PoolWarper):
    """Top-nσ (Tang et al. 2024, "Top-nσ: Not All Logits Are You Need", arXiv:2411.07641, as in
    llama.cpp's ``top_n_sigma`` sampler): keep the tokens whose score is within ``n`` standard
    deviations of the best, the deviation taken over every finite score of the row. It reads
    the whole row, so it runs before top-k; the result does not depend on the temperature."""

    truncates = True

    def __init__(self, n: float):
        if not n >= 0:
            raise ValueError(f"top_n_sigma must be >= 0, got {n}")
        self.n = n

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        for row in values:
            finite = row[np.isfinite(row)]
            if len(finite) < 2:
                continue
            row[row < finite.max() - self.n * finite.std()] = -np.inf
        return values


class SigmaFloor:
    """Top-nσ ahead of a top-k: records each row's floor ``best - n * sd`` from the whole row and
    leaves the scores as they are; ``SigmaCut`` behind the top-k then removes the survivors below
    it. Both are "keep the scores above a line", so top-k's survivors cut at the floor are exactly
    top-nσ then top-k, without a row of -inf that top-k could not prune."""

    def __init__(self, n: float):
        self.sigma = TopNSigma(n)
        self.floors: list[float] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        rows = scores.detach().float().cpu().numpy()
        self.floors = []
        for row in rows:
            finite = row[np.isfinite(row)]
            self.floors.append(float(finite.max() - self.sigma.n * finite.std()) if len(finite) > 1 else -math.inf)
        return scores


class SigmaCut(PoolWarper):
    """The second half of ``SigmaFloor``: the pool's scores below the floor (divided by the
    temperature the top-k applied to its survivors) are removed."""

    truncates = True

    def __init__(self, floor: SigmaFloor, temperature: float = 1.0):
        self.floor = floor
        self.temperature = temperature

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        floors = np.array(self.floor.floors[: len(values)], dtype=np.float64)[:, None] / self.temperature
        if floors.shape[0] != len(values):
            return values
        return _keep_best(values, values < floors.astype(values.dtype))


class Temperature(PoolWarper):
    """transformers' ``TemperatureLogitsWarper``: the scores divided by ``temperature`` (the same
    float32 division), where it must run on a pool."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        with np.errstate(over="ignore"):
            values /= values.dtype.type(self.temperature)
        return values


class DynamicTemperature(PoolWarper):
    """Dynamic temperature (kalomaze's DynaTemp, as llama.cpp's ``temp_ext``): the scores are
    divided by a temperature between ``temperature - range`` (at least 0) and ``temperature +
    range``, placed by the candidates' entropy over its most, ``log(candidates)``, raised to
    ``exponent``: a confident step is sampled cooler, a flat one hotter. The entropy is taken
    over the candidates top-k left (all tokens without top-k)."""

    def __init__(self, temperature: float, spread: float, exponent: float = 1.0):
        self.low = max(0.0, temperature - spread)
        self.high = temperature + spread
        self.exponent = exponent
        self.last: list[float] = []
        """Each row's temperature at the last call (for tests and the benchmark)."""

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        probs = softmax(values)
        self.last = []
        for r, row in enumerate(values):
            count = int(np.isfinite(row).sum())
            if count < 2:
                self.last.append(self.high)
                continue
            p = probs[r][probs[r] > 0]
            entropy = float(-(p * np.log(p)).sum())
            normalised = min(1.0, max(0.0, entropy / math.log(count)))
            temperature = self.low + (self.high - self.low) * normalised**self.exponent
            self.last.append(temperature)
            if temperature <= 1e-3:  # the limit of a temperature going to 0: the best token
                best = row.argmax()
                keep = row[best]
                row[:] = -np.inf
                row[best] = keep
            else:
                row /= row.dtype.type(temperature)
        return values


class XTC(PoolWarper):
    """Exclude Top Choices (p-e-w, text-generation-webui PR #6335; llama.cpp's ``xtc``): with
    chance ``probability`` at each step, every token with probability at least ``threshold``
    except the least likely of them is removed, when there are two or more. The chance is drawn
    from the row's own generator (seeded from the settings' seed), so a seed gives the same text."""

    truncates = True

    def __init__(self, probability: float, threshold: float, seed: int, rows: int = 16):
        self.probability = probability
        self.threshold = threshold
        self.seed = seed
        # row i draws from seed + i, as its token draws do: candidate i is the same alone or in a batch
        self.rngs = [np.random.default_rng((seed + row) % 2**32) for row in range(rows)]

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        while len(self.rngs) < len(values):
            self.rngs.append(np.random.default_rng((self.seed + len(self.rngs)) % 2**32))
        probs = softmax(values)
        for r, row in enumerate(values):
            if self.rngs[r].random() >= self.probability:
                continue
            above = np.flatnonzero(probs[r] >= self.threshold)
            if len(above) < 2:
                continue
            keep = above[np.argmin(probs[r][above])]
            row[above[above != keep]] = -np.inf
        return values


class MirostatV2(PoolWarper):
    """Mirostat 2.0 (Basu et al. 2021, "Mirostat: A Neural Text Decoding Algorithm that Directly
    Controls Perplexity", ICLR, Algorithm 2; as llama.cpp's ``mirostat_v2``): tokens whose
    surprise ``-log2 p`` exceeds ``mu`` are removed (the best always kept); after the draw,
    ``mu -= eta * (surprise of the chosen token - tau)``, the surprise measured in the
    truncated, renormalised distribution. ``mu`` starts at ``2 * tau``.

    The chosen token is read from the next call's sequences (their last column), as the
    incremental processors read theirs; a row whose sequence is not the previous one plus a
    token (a new generation, a token taken back) keeps its ``mu`` without an update.
    """

    truncates = True

    def __init__(self, tau: float, eta: float):
        self.tau = tau
        self.eta = eta
        self.mu: list[float] = []
        self._last: list[dict[int, float]] = []
        self._length = -1

    def _feedback(self, input_ids: Tensor) -> None:
        shape = getattr(input_ids, "shape", None)
        if shape is None or len(shape) != 2:
            return
        rows, length = int(shape[0]), int(shape[1])
        if len(self.mu) != rows:
            self.mu = [2 * self.tau] * rows
            self._last = [{} for _ in range(rows)]
        elif length == self._length + 1 and self._last:
            chosen = input_ids[:, -1].tolist()  # type: ignore[index]
            for r, token in enumerate(chosen):
                p = self._last[r].get(int(token))
                if p:
                    self.mu[r] -= self.eta * (-math.log(p) / _LOG2 - self.tau)
        self._length = length

    def warp(self, values: Scores, ids: Ids | None, input_ids: Tensor) -> Scores:
        self._feedback(input_ids)
        probs = softmax(values)
        for r, row in enumerate(values):
            mu = self.mu[r] if r < len(self.mu) else 2 * self.tau
            with np.errstate(divide="ignore"):
                surprise = -np.log2(probs[r])
            remove = surprise > mu
            best = int(row.argmax())
            remove[best] = False
            row[remove] = -np.inf
            kept = np.flatnonzero(~remove & (probs[r] > 0))
            mass = probs[r][kept]
            token_ids = kept if ids is None else ids[r][kept]
            if r < len(self._last):
                self._last[r] = dict(zip(token_ids.tolist(), (mass / mass.sum()).tolist()))
        return values


__all__ = [
    "XTC",
    "DynamicTemperature",
    "EpsilonCutoff",
    "EtaCutoff",
    "MinP",
    "MirostatV2",
    "SigmaCut",
    "SigmaFloor",
    "Temperature",
    "TopNSigma",
    "TopP",
    "TypicalP",
    "softmax",
]
