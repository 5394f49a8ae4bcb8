"""From scores to masks: exact top-k selection, global or local scope, ERK allocation.

A mask is a boolean NumPy array shaped like its weight: ``True`` keeps the weight, ``False``
removes it. Three numbers describe how much is kept, and each name means one thing only:

* ``density`` — the kept fraction, in (0, 1];
* ``sparsity`` — the removed fraction, ``1 - density``, in [0, 1);
* ``compression`` — ``1 / density``, at least 1 (the SynFlow papers write it as 10^x).

Selection is exact: keeping a density ``d`` of ``N`` weights keeps ``kept_count(d, N)`` =
``floor(d·N + 1/2)`` weights, also when many scores tie. Ties are broken by flat index (the
earlier entry of the concatenated, row-major flattened scores wins), so the same scores always give
the same mask.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
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
]

SCOPES = ("global", "local")
ALLOCATIONS = ("uniform", "erk")


def resolve_density(sparsity=None, compression=None):
    """Turns exactly one of ``sparsity`` or ``compression`` into a density.

    Args:
        sparsity: Fraction of weights removed, in [0, 1).
        compression: Ratio of all weights to kept weights, at least 1.

    Returns:
        The density (kept fraction) as a float in (0, 1].

    Raises:
        ValueError: if both or neither are given, or the value is out of range.

    Example:
        >>> resolve_density(sparsity=0.9)
        0.09999999999999998
        >>> resolve_density(compression=100)
        0.01
    """
    if sparsity is not None and compression is not None:
        raise ValueError(
            f"give either sparsity or compression, not both (got sparsity={sparsity}, "
            f"compression={compression}); compression = 1 / (1 - sparsity)"
        )
    if sparsity is None and compression is None:
        raise ValueError("give the amount to prune as sparsity=... (in [0, 1)) or compression=... (>= 1)")
    if sparsity is not None:
        s = float(sparsity)
        if not 0.0 <= s < 1.0 or math.isnan(s):
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        return 1.0 - s
    c = float(compression)
    if not c >= 1.0 or math.isinf(c):
        raise ValueError(f"compression must be a finite number >= 1, got {compression}")
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
    """
    arrays = [np.asarray(s) for s in scores]
    arrays = [a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64) for a in arrays]
    if not arrays:
        raise ValueError("no score tensors given")
    for i, a in enumerate(arrays):
        bad = ~np.isfinite(a)
        if bad.any():
            where = names[i] if names is not None else f"score tensor {i}"
            raise ValueError(
                f"scores of {where} contain {int(np.isnan(a).sum())} NaN and "
                f"{int(np.isinf(a).sum())} infinite values (of {a.size}); a scorer must return "
                "finite scores"
            )
    return arrays


def _top_k(flat, k, candidates=None):
    """Boolean vector keeping the ``k`` highest entries of ``flat``, ties to the lower index.

    Entries outside ``candidates`` (a boolean vector) are never kept. Linear time: one partition
    of the candidates' scores finds the threshold; the mask is then two comparisons over the whole
    vector, and only the entries equal to the threshold are ranked by index. Partitioning the
    candidates only makes iterative pruning cheaper as the network gets sparser, and keeps the
    pruned weights' scores away from NumPy's partition, which slows down badly on arrays full of
    one repeated value.
    """
    pool = flat if candidates is None else flat[np.flatnonzero(candidates)]
    if k == 0:
        return np.zeros(flat.shape, dtype=bool)
    if k >= pool.size:
        return np.ones(flat.shape, dtype=bool) if candidates is None else candidates.copy()
    threshold = np.partition(pool, pool.size - k)[pool.size - k]
    keep = flat > threshold
    ties = flat == threshold
    if candidates is not None:
        keep &= candidates
        ties &= candidates
    keep[np.flatnonzero(ties)[: k - np.count_nonzero(keep)]] = True
    return keep


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


def from_scores(
    scores,
    *,
    sparsity=None,
    compression=None,
    scope="global",
    allocation="uniform",
    candidates=None,
    names=None,
    block=None,
):
    """Keeps the highest scores: one boolean mask per score tensor.

    Args:
        scores: Sequence of score tensors (array-likes), one per prunable weight; higher is kept.
        sparsity: Fraction of all weights to remove, in [0, 1). Give this or ``compression``.
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
        block: ``(1, b)`` keeps or removes whole blocks of ``b`` consecutive entries along the
            input axis of each kernel (axis -2 of a Keras kernel: ``b`` inputs of one output
            unit), TFLite's 1×4 (float) and 1×16 (int8) blocks for fully connected layers. A
            block's score is the sum of its members' scores and the exact-count rule applies to
            blocks: ``kept_count(d, number of blocks)`` of them are kept. A kernel whose input
            axis is not a multiple of ``b`` ends in a shorter block; 1-D tensors (biases) stay
            element-wise. With candidates, a block is a candidate only if all its members are.

    Returns:
        A list of boolean NumPy arrays shaped like ``scores``.

    Raises:
        ValueError: on a bad amount, scope, allocation or block, NaN/inf scores, mismatched
            candidates, or when the candidates keep fewer weights than asked for.

    Example:
        >>> masks = from_scores([np.array([3., 1.]), np.array([2., 0.])], sparsity=0.5)
        >>> [m.tolist() for m in masks]
        [[True, False], [True, False]]
    """
    arrays = check_scores(scores, names)
    if block is not None:
        size = _block_size(block)
        block_candidates = None if candidates is None else [
            _to_blocks(np.asarray(c, dtype=bool), size, np.all, True) for c in candidates]
        kept = from_scores([_to_blocks(a, size, np.sum, 0) for a in arrays], sparsity=sparsity,
                           compression=compression, scope=scope, allocation=allocation,
                           candidates=block_candidates, names=names)
        return [_from_blocks(m, a.shape, size) for m, a in zip(kept, arrays)]
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    per_tensor = not isinstance(allocation, str)
    if not per_tensor and allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS} or a sequence of densities, got {allocation!r}")
    if scope == "global" and allocation != "uniform":
        raise ValueError(
            f"allocation={allocation!r} sets per-tensor budgets: use it with scope='local'"
        )
    if per_tensor:
        if sparsity is not None or compression is not None:
            raise ValueError("per-tensor densities in `allocation` replace sparsity/compression; give only one")
        layer_densities = [float(d) for d in allocation]
        if len(layer_densities) != len(arrays):
            raise ValueError(f"allocation has {len(layer_densities)} densities for {len(arrays)} score tensors")
        for i, d in enumerate(layer_densities):
            if not 0.0 <= d <= 1.0:
                raise ValueError(f"density of tensor {i} in allocation must be in [0, 1], got {d}")
    else:
        target = resolve_density(sparsity, compression)

    if candidates is not None:
        candidates = [np.asarray(c).astype(bool, copy=False) for c in candidates]
        if len(candidates) != len(arrays) or any(c.shape != a.shape for c, a in zip(candidates, arrays)):
            raise ValueError(
                "candidates must be one mask per score tensor with the same shapes; got shapes "
                f"{[c.shape for c in candidates]} for scores {[a.shape for a in arrays]}"
            )

    sizes = [a.size for a in arrays]
    if scope == "global":
        flat = np.concatenate([a.ravel() for a in arrays])
        cand = None if candidates is None else np.concatenate([c.ravel() for c in candidates])
        k = kept_count(target, flat.size)
        _check_enough(k, cand, "all tensors")
        keep = _top_k(flat, k, cand)
        return [m.reshape(a.shape) for m, a in zip(np.split(keep, np.cumsum(sizes)[:-1]), arrays)]

    if per_tensor:
        counts = _local_counts(sizes, layer_densities, None)
    elif allocation == "erk":
        counts = _local_counts(sizes, erk_densities([a.shape for a in arrays], target), kept_count(target, sum(sizes)))
    else:
        counts = _local_counts(sizes, [target] * len(arrays), None)
    masks = []
    for i, (a, k) in enumerate(zip(arrays, counts)):
        cand = None if candidates is None else candidates[i].ravel()
        _check_enough(k, cand, names[i] if names is not None else f"tensor {i}")
        masks.append(_top_k(a.ravel(), k, cand).reshape(a.shape))
    return masks


def _block_size(block):
    """The ``b`` of a ``(1, b)`` block."""
    if not (isinstance(block, (tuple, list)) and len(block) == 2 and block[0] == 1
            and isinstance(block[1], (int, np.integer)) and block[1] >= 1):
        raise ValueError(
            f"block must be (1, b): b consecutive input entries of one output unit, as TFLite's "
            f"(1, 4) and (1, 16) blocks; got {block!r}"
        )
    return int(block[1])


def _to_blocks(a, size, reduce, fill):
    """Groups axis -2 of ``a`` into blocks of ``size`` (padding with ``fill``), reduced by ``reduce``."""
    if a.ndim < 2:
        return a
    axis = a.ndim - 2
    pad = -a.shape[axis] % size
    if pad:
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, pad)
        a = np.pad(a, widths, constant_values=fill)
    grouped = a.reshape(a.shape[:axis] + (a.shape[axis] // size, size) + a.shape[axis + 1:])
    return reduce(grouped, axis=axis + 1)


def _from_blocks(mask, shape, size):
    """Expands a block mask back to the weight's ``shape``."""
    if len(shape) < 2:
        return mask
    axis = len(shape) - 2
    return np.repeat(mask, size, axis=axis)[(slice(None),) * axis + (slice(0, shape[axis]),)]


def _check_enough(k, candidates, where):
    if candidates is not None and int(candidates.sum()) < k:
        raise ValueError(
            f"cannot keep {k} weights of {where}: the current masks keep only "
            f"{int(candidates.sum())}; pruning continues from the current masks and cannot "
            "grow them (reset the masks to prune to a lower sparsity)"
        )


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
