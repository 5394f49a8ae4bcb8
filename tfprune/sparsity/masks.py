"""From scores to masks: exact top-k selection, global or local scope, ERK allocation.

A mask is a boolean NumPy array shaped like its weight: ``True`` keeps the weight, ``False``
removes it. Three numbers describe how much is kept, and each name means one thing only:

* ``density`` — the kept fraction, in (0, 1];
* ``sparsity`` — the removed fraction, ``1 - density``, in [0, 1);
* ``compression`` — ``1 / density``, at least 1 (the SynFlow papers write it as 10^x).

Selection is exact: keeping a density ``d`` of ``N`` weights keeps ``kept_count(d, N)`` =
``floor(d·N + 1/2)`` weights, also when many scores tie. Ties are broken by flat index (the
earlier entry of the concatenated, row-major flattened scores wins), so the same scores always give
the same mask. Which entries may be kept together — any, whole blocks, N of every M — is the
sparsity pattern's business (:mod:`tfprune.patterns`); a :class:`Budget` ranks the units it gives.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tfprune.base import arguments, views
from tfprune.base.deprecation import renamed
from tfprune.sparsity import patterns
from tfprune.sparsity.topk import map_parts, top_k

__all__ = [
    "Budget",
    "from_scores",
    "resolve_density",
    "kept_count",
    "erk_densities",
    "density",
    "densities",
    "sparsity",
    "compression",
    "collapsed_layers",
    "check_scores",
    "FiniteScores",
]

SCOPES = ("global", "local")
MAX_COMPRESSION = 1e15  # from about 1.8e16 on, 1 - 1/compression is 1.0 in float64
ALLOCATIONS = ("uniform", "erk")


def resolve_density(sparsity=None, compression=None):
    """Turns exactly one of ``sparsity`` or ``compression`` into a density.

    Args:
        sparsity: Fraction of weights removed, in [0, 1).
        compression: Ratio of all weights to kept weights, at least 1.

    Returns:
        The density (kept fraction) as a float in (0, 1].

    Raises:
        ArgumentError: if both or neither are given, or the value is not a number or out of range
            (naming the one given); a compression above ``MAX_COMPRESSION`` (1e15) is out of range.

    Example:
        >>> resolve_density(sparsity=0.9)
        0.09999999999999998
        >>> resolve_density(compression=100)
        0.01
    """
    if sparsity is not None and compression is not None:
        raise arguments.ArgumentError(
            f"give either sparsity or compression, not both (got sparsity={sparsity}, "
            f"compression={compression}); compression = 1 / (1 - sparsity)"
        )
    if sparsity is None and compression is None:
        raise arguments.ArgumentError("give the amount to prune as sparsity=... (in [0, 1)) or compression=... (>= 1)")
    if sparsity is not None:
        return 1.0 - arguments.number("sparsity", sparsity, 0, 1, high_open=True)
    c = arguments.number("compression", compression, 1)
    if c > MAX_COMPRESSION:
        raise arguments.ArgumentError(
            f"compression must be at most {MAX_COMPRESSION:.0e}, got {compression}: beyond that the sparsity "
            "1 - 1/compression rounds to 1.0 in floating point (and a network keeps no weight at all once "
            "compression exceeds twice its number of prunable weights)"
        )
    return 1.0 / c


def kept_count(density, n):
    """Number of weights kept out of ``n`` at ``density``: ``floor(density·n + 1/2)``.

    ``density·n`` is first rounded to 6 decimals, so that floating-point error in the density
    does not move a count that lies exactly half-way: ``1 - 0.9`` is ``0.0999…98`` in floating
    point, and 5 weights at ``sparsity=0.9`` keep 1, as with ``compression=10``.

    Args:
        density: Kept fraction in [0, 1].
        n: Number of weights.

    Returns:
        An int in [0, n].

    Example:
        >>> kept_count(0.25, 10)
        3
    """
    return int(min(n, max(0, math.floor(round(density * n, 6) + 0.5))))


class FiniteScores(list):
    """Score arrays that the scorer has already found finite: :func:`check_scores` passes them on
    without checking every entry again (a full pass over the scores per pruning round).

    Return it only with a proof of finiteness, e.g. ``isfinite(sum(s))`` for every tensor ``s``,
    computed where the scores are (a NaN or ±inf entry makes the sum NaN or ±inf).

    Args:
        arrays: Floating-point NumPy arrays, one per weight tensor.

    Example:
        >>> scores = FiniteScores([np.array([0.5, 2.0])])
    """


def check_scores(scores, names=None):
    """Converts scores to floating-point NumPy arrays and rejects NaN or infinite entries.

    Floating-point scores keep their precision (converting float32 to float64 changes no
    order, and would double the memory and the time of the selection); others become float64.

    Args:
        scores: Sequence of array-likes (NumPy arrays or tensors), one per weight tensor.
        names: Optional names of the weight tensors, used in error messages.

    Returns:
        A list of floating-point NumPy arrays.

    Raises:
        ValueError: if ``scores`` is empty or a score tensor holds NaN or ±inf; the message names it.
            :class:`FiniteScores` are not searched for NaN or ±inf.
    """
    arrays = [views.array(s) for s in scores]
    arrays = [a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64) for a in arrays]
    if not arrays:
        raise ValueError("no score tensors given")
    if isinstance(scores, FiniteScores):
        return arrays
    for i, finite in enumerate(map_parts(lambda a: bool(np.isfinite(a).all()), arrays)):
        if not finite:
            a = arrays[i]
            where = names[i] if names is not None else f"score tensor {i}"
            raise ValueError(
                f"scores of {where} contain {int(np.isnan(a).sum())} NaN and "
                f"{int(np.isinf(a).sum())} infinite values (of {a.size}); a scorer must return "
                "finite scores"
            )
    return arrays


def erk_densities(shapes, density):
    """Erdős–Rényi-Kernel densities per tensor with total kept fraction ``density``.

    The density of tensor ``l`` is ``ε · sum(shape_l) / prod(shape_l)``; tensors that would exceed
    density 1 are kept dense and ε is solved again over the others, until none exceeds 1.

    Args:
        shapes: Shapes of the weight tensors.
        density: Overall kept fraction in (0, 1].

    Returns:
        A list of densities in [0, 1], one per shape, with ``Σ d_l·N_l = density·Σ N_l``.

    Example:
        >>> erk_densities([(100, 10), (10, 10)], 0.5)  # ε = 550 / 130
        [0.4653..., 0.8461...]
    """
    sizes = np.array([float(np.prod(s)) for s in shapes])
    raw = np.array([float(np.sum(s)) for s in shapes]) / sizes
    budget = density * sizes.sum()
    dense = np.zeros(len(shapes), dtype=bool)
    while not dense.all():
        eps = (budget - sizes[dense].sum()) / (raw[~dense] * sizes[~dense]).sum()
        over = (~dense) & (eps * raw > 1.0)
        if not over.any():
            break
        dense |= over
    return [1.0 if d else float(eps * r) for d, r in zip(dense, raw)]


def _local_counts(sizes, layer_densities, total):
    """Per-tensor kept counts; with ``total`` given, largest remainders make the sum exact."""
    if total is None:
        return [kept_count(d, n) for d, n in zip(layer_densities, sizes)]
    exact = np.array([d * n for d, n in zip(layer_densities, sizes)])
    counts = np.minimum(np.floor(exact).astype(np.int64), sizes)
    order = np.argsort(-(exact - counts), kind="stable")
    short = total - int(counts.sum())
    for i in order:
        if short <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            short -= 1
    return [int(c) for c in counts]


class Budget:
    """How many weights to keep and how they are shared out: an amount, a scope, an allocation.

    Called on score tensors, it keeps their highest entries under that budget with the exact
    top-k rule of this module. A sparsity pattern (:mod:`tfprune.patterns`) calls it on the units
    it ranks: entries, blocks.

    Args:
        sparsity: Fraction of all weights to remove, in [0, 1); or give ``compression``, or
            neither when a pattern fixes the amount or ``allocation`` gives per-tensor densities.
        compression: Ratio of all weights to kept weights (>= 1).
        scope: ``"global"`` or ``"local"`` (see :func:`from_scores`).
        allocation: ``"uniform"``, ``"erk"`` or a sequence of per-tensor densities (local scope).

    Attributes:
        density: The kept fraction asked for, or ``None`` when no amount was given.
        scope: As given.
        allocation: As given; per-tensor densities as a tuple of floats.

    Raises:
        ValueError: on a bad amount, scope or allocation, or an amount given together with
            per-tensor densities.

    Example:
        >>> Budget(sparsity=0.5)([np.array([3., 1.]), np.array([2., 0.])])[0]
        array([ True, False])
    """

    def __init__(self, sparsity=None, compression=None, scope="global", allocation="uniform"):
        arguments.choice("scope", scope, SCOPES)
        if not isinstance(allocation, (list, tuple, np.ndarray)):
            arguments.choice("allocation", allocation, ALLOCATIONS, advice="or a sequence of per-tensor densities")
        else:
            if sparsity is not None or compression is not None:
                raise ValueError("per-tensor densities in `allocation` replace sparsity/compression; give only one")
            allocation = tuple(arguments.number(f"allocation[{i}]", d, 0, 1) for i, d in enumerate(allocation))
        if scope == "global" and allocation != "uniform":
            raise ValueError(f"allocation={allocation!r} sets per-tensor budgets: use it with scope='local'")
        given = sparsity is not None or compression is not None
        self.density = resolve_density(sparsity, compression) if given else None
        self.scope, self.allocation = scope, allocation

    def __call__(self, scores, candidates=None, names=None):
        """Masks keeping the highest ``scores`` (NumPy arrays) within ``candidates`` (boolean arrays)."""
        per_tensor = isinstance(self.allocation, tuple)
        if per_tensor and len(self.allocation) != len(scores):
            raise ValueError(f"allocation has {len(self.allocation)} densities for {len(scores)} score tensors")
        if self.density is None and not per_tensor:
            resolve_density(sparsity=None, compression=None)  # raises: no amount was given
        target = self.density
        sizes = [a.size for a in scores]
        if self.scope == "global":
            cand = None if candidates is None else [c.ravel() for c in candidates]
            k = kept_count(target, sum(sizes))
            available = _available(k, cand, "all tensors")
            keep = top_k([a.ravel() for a in scores], k, cand, available)
            return [m.reshape(a.shape) for m, a in zip(keep, scores)]

        if per_tensor:
            counts = _local_counts(sizes, self.allocation, None)
        elif self.allocation == "erk":
            erk = erk_densities([a.shape for a in scores], target)
            counts = _local_counts(sizes, erk, kept_count(target, sum(sizes)))
        else:
            counts = _local_counts(sizes, [target] * len(scores), None)
        masks = []
        for i, (a, k) in enumerate(zip(scores, counts)):
            cand = None if candidates is None else [candidates[i].ravel()]
            available = _available(k, cand, names[i] if names is not None else f"tensor {i}")
            masks.append(top_k([a.ravel()], k, cand, available)[0].reshape(a.shape))
        return masks


@renamed(block="pattern")
def from_scores(
    scores,
    *,
    sparsity=None,
    compression=None,
    scope="global",
    allocation="uniform",
    candidates=None,
    names=None,
    pattern=None,
    reduction_axes=None,
):
    """Keeps the highest scores: one boolean mask per score tensor.

    Args:
        scores: Sequence of score tensors (array-likes), one per prunable weight; higher is kept.
        sparsity: Fraction of all weights to remove, in [0, 1). Give this or ``compression``
            (neither with per-tensor densities in ``allocation``, or with a pattern that fixes the
            density, such as ``"2:4"``).
        compression: Ratio of all weights to kept weights (>= 1). Give this or ``sparsity``.
        scope: ``"global"`` ranks all weights together (the papers' default); ``"local"`` gives
            every tensor its own budget, as set by ``allocation``.
        allocation: For local scope: ``"uniform"`` (every tensor keeps ``kept_count(d, N_l)``),
            ``"erk"`` (Erdős–Rényi-Kernel densities, rounded so the total is exactly
            ``kept_count(d, N)``), or a sequence of per-tensor densities (then leave out
            ``sparsity`` and ``compression``).
        candidates: Optional masks (same shapes); weights they remove are never kept, so
            pruning continues from them (iterative pruning).
        names: Optional names of the tensors for error messages.
        pattern: The sparsity pattern (:mod:`tfprune.patterns`): ``None``/``"unstructured"``,
            ``"1x4"`` or ``(1, 4)`` (whole blocks of 4 consecutive inputs, ranked by their summed
            scores), ``"2:4"`` (every 4 consecutive inputs keep their 2 best; the density is
            then 1/2 and ``scope`` does not matter), or a :class:`tfprune.patterns.Pattern`.
        reduction_axes: Optional reduction (input) axis of each tensor, an int or ``None``, along
            which patterns group entries; default axis -2 of tensors with two or more axes and
            none for 1-D tensors (see :func:`tfprune.patterns.reduction_axes`).

    Returns:
        A list of boolean NumPy arrays shaped like ``scores``.

    Raises:
        ValueError: on a bad amount, scope, allocation, pattern or axis, NaN/inf scores,
            mismatched candidates, a sparsity the pattern contradicts, or when the candidates
            keep fewer weights than asked for.

    Example:
        >>> masks = from_scores([np.array([3., 1.]), np.array([2., 0.])], sparsity=0.5)
        >>> [m.tolist() for m in masks]
        [[True, False], [True, False]]
    """
    arrays = check_scores(scores, names)
    chosen = patterns.get(pattern)
    budget = Budget(sparsity, compression, scope, allocation)
    if candidates is not None:
        candidates = [np.asarray(c).astype(bool, copy=False) for c in candidates]
        if len(candidates) != len(arrays) or any(c.shape != a.shape for c, a in zip(candidates, arrays)):
            raise ValueError(
                "candidates must be one mask per score tensor with the same shapes; got shapes "
                f"{[c.shape for c in candidates]} for scores {[a.shape for a in arrays]}"
            )
    axes = patterns.reduction_axes([a.shape for a in arrays], reduction_axes)
    return chosen.select(arrays, budget, candidates=candidates, reduction_axes=axes, names=names)


def _available(k, candidates, where):
    """The number of ``candidates`` (boolean arrays; ``None``: all, not counted); raises if they
    hold fewer than ``k``."""
    if candidates is None:
        return None
    available = sum(map_parts(np.count_nonzero, candidates))
    if available < k:
        raise ValueError(
            f"cannot keep {k} weights of {where}: the current masks keep only {available}; pruning continues "
            "from the current masks and cannot grow them (reset the masks to prune to a lower sparsity)"
        )
    return available


def densities(masks):
    """Kept fraction of each mask.

    Args:
        masks: Sequence of boolean or 0/1 arrays.

    Returns:
        A list of floats.
    """
    return [float(np.count_nonzero(m)) / np.size(m) for m in masks]


def density(masks):
    """Kept fraction over all masks together (a weighted mean of their densities).

    Args:
        masks: Sequence of boolean or 0/1 arrays.

    Returns:
        A float in [0, 1].

    Example:
        >>> density([np.array([1, 0, 0, 0]), np.array([1, 1, 1, 1])])
        0.625
    """
    total = sum(np.size(m) for m in masks)
    return float(sum(np.count_nonzero(m) for m in masks)) / total


def sparsity(masks):
    """Removed fraction over all masks together: ``1 - density(masks)``."""
    return 1.0 - density(masks)


def compression(masks):
    """All weights over kept weights: ``1 / density(masks)`` (``inf`` when nothing is kept)."""
    d = density(masks)
    return math.inf if d == 0 else 1.0 / d


def collapsed_layers(masks: Sequence) -> list:
    """Indices of the masks that keep no weight: their layers cut every input-output path.

    Args:
        masks: Sequence of boolean or 0/1 arrays, one per prunable weight.

    Returns:
        Sorted list of indices whose mask is all zero (empty when the network has not collapsed).

    Example:
        >>> collapsed_layers([np.ones(3), np.zeros(2)])
        [1]
    """
    return [i for i, m in enumerate(masks) if not np.any(m)]
