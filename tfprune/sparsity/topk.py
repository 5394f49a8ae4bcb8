"""Exact top-k over several score tensors taken together, in linear time.

:func:`top_k` keeps the ``k`` highest entries of a sequence of 1-D score arrays, ranked as if
they were concatenated, ties to the lower index of that concatenation, never keeping an entry
outside the candidates. It never concatenates them: every pass (comparisons, counts) runs over
each array in place, on all CPU cores once the arrays are long, and only a band of entries
around the threshold is partitioned. NumPy's partition is slow on long vectors and on vectors
full of one repeated value (the scores of pruned weights); the band avoids both.

Over 14.7M random float32 scores (VGG-16's count) the band selection took 24 ms on 2 cores,
against about 100 ms for a partition of them all (``docs/benchmarks.md``;
``benchmarks/scoring_benchmark.py`` times the whole masking in context).
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["top_k", "map_parts"]

# Arrays holding fewer entries than this in all are partitioned directly and on one thread (where
# the band and the threads would cost more than they save); more are narrowed to a band around the
# threshold estimated from a strided sample of about _SAMPLE entries.
_PARTITION_BELOW = 1 << 20
_SAMPLE = 1 << 15


def top_k(parts, k, candidates=None, available=None):
    """Boolean arrays keeping the ``k`` highest entries over all ``parts``, ties to the lower index.

    Args:
        parts: Sequence of 1-D float arrays (NaN-free), ranked as their concatenation.
        k: Number of entries to keep, at most the number of candidates.
        candidates: Optional sequence of 1-D boolean arrays shaped like ``parts``; entries they
            leave out are never kept.
        available: The number of candidates, if the caller has counted them already.

    Returns:
        A list of 1-D boolean arrays, one per part.

    Example:
        >>> [m.tolist() for m in top_k([np.array([3., 1.]), np.array([2., 3.])], 2)]
        [[True, False], [False, True]]
    """
    candidates = [None] * len(parts) if candidates is None else list(candidates)
    size = sum(p.size for p in parts)
    if k == 0:
        return [np.zeros(p.shape, dtype=bool) for p in parts]
    if available is None:
        available = size if candidates[0] is None else sum(map_parts(np.count_nonzero, candidates, size=size))
    if k >= available:
        return [np.ones(p.shape, dtype=bool) if c is None else c.copy() for p, c in zip(parts, candidates)]
    threshold = _kth_highest(parts, k, candidates, available, size)
    keep = map_parts(lambda p, c: _at_least(p, threshold, c), parts, candidates, size=size)
    excess = sum(map_parts(np.count_nonzero, keep, size=size)) - k
    for p, m in zip(reversed(parts), reversed(keep)):  # ties at the threshold: the highest indices go
        if excess <= 0:
            break
        tied = np.flatnonzero(m & (p == threshold))
        dropped = tied[max(0, tied.size - excess):]
        m[dropped] = False
        excess -= dropped.size
    return keep


def _at_least(part, value, candidates):
    """``part >= value`` within ``candidates``."""
    out = part >= value
    if candidates is not None:
        out &= candidates
    return out


def _kth_highest(parts, k, candidates, available, size):
    """The ``k``-th highest candidate value, exactly: from a band around a sampled estimate, or
    (short arrays, or a band that misses) a partition of all candidates."""
    if size >= _PARTITION_BELOW:
        found = _band_kth_highest(parts, k, candidates, available, size)
        if found is not None:
            return found
    pool = np.concatenate([p if c is None else p[c] for p, c in zip(parts, candidates)])
    return np.partition(pool, pool.size - k)[pool.size - k]


def _band_kth_highest(parts, k, candidates, available, size):
    """:func:`_kth_highest` from a band: ``None`` when the band does not hold the threshold.

    A strided sample of the candidates brackets the threshold with a margin of six standard
    deviations of the sample quantile; one pass per array counts the candidates at or above the
    bracket's low end and gathers those inside it, and only that band (a few percent of the
    entries) is partitioned.
    """
    stride = max(1, size // _SAMPLE)
    sample = np.concatenate([p[::stride] if c is None else p[::stride][c[::stride]] for p, c in zip(parts, candidates)])
    if not sample.size:
        return None
    rank = (1.0 - k / available) * sample.size  # of the threshold within the sorted sample
    margin = 3.0 * math.sqrt(sample.size)
    low_i = int(max(0.0, rank - margin))
    high_i = int(min(sample.size - 1.0, rank + margin + 1.0))
    bounds = np.partition(sample, (low_i, high_i))
    low = bounds[low_i] if low_i > 0 else -np.inf  # a bracket reaching the sample's end stays open
    high = bounds[high_i] if high_i < sample.size - 1 else np.inf

    def band(part, cand):
        inside = _at_least(part, low, cand)
        at_least_low = int(np.count_nonzero(inside))
        inside &= part <= high
        return at_least_low, part[inside]

    counted = map_parts(band, parts, candidates, size=size)
    at_least_low = sum(n for n, _ in counted)
    values = np.concatenate([b for _, b in counted])
    if not at_least_low - values.size < k <= at_least_low:  # the threshold lies outside the band
        return None
    return np.partition(values, at_least_low - k)[at_least_low - k]


def map_parts(fn, parts, *others, size=None):
    """``[fn(part, *other) ...]`` over the parts, on a thread per CPU core once they hold
    ``size`` (default: their total size) >= 2^20 entries; NumPy releases the interpreter lock in
    its passes over arrays.

    Example:
        >>> map_parts(np.count_nonzero, [np.ones(3), np.zeros(2)])
        [3, 0]
    """
    size = sum(np.size(p) for p in parts) if size is None else size
    items = list(zip(parts, *others))
    if size < _PARTITION_BELOW or len(items) < 2 or (os.cpu_count() or 1) < 2:
        return [fn(*item) for item in items]
    return list(_pool(os.getpid()).map(lambda item: fn(*item), items))


@functools.cache
def _pool(pid):
    """One thread per CPU core, made on first use in process ``pid`` and kept (a forked child,
    whose copy of its parent's pool has no threads, makes its own)."""
    return ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="tfprune-topk")
