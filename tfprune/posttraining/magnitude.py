"""Magnitude pruning of a layer, the baseline of both papers: keep the largest ``|W_ij|`` of the layer."""

from __future__ import annotations

import numpy as np

from tfprune.sparsity import masks, patterns

__all__ = ["prune_matrix"]


def prune_matrix(matrix, statistics, density, pattern):
    """``(W ⊙ M, M)``: ``M`` keeps the largest ``|W_ij|`` of the whole matrix (unstructured: exactly
    ``kept_count(density, size)`` of them) or of each group of ``m`` consecutive inputs (N:M).

    Args:
        matrix: ``W``, outputs × inputs.
        statistics: Unused (magnitude reads no data); ``None``.
        density: The kept fraction.
        pattern: :class:`tfprune.patterns.Unstructured` or :class:`~tfprune.patterns.NByM`.

    Example:
        >>> prune_matrix(np.array([[1., -3.], [2., 0.5]]), None, 0.5, patterns.Unstructured())[1]
        array([[False,  True], [ True, False]])
    """
    del statistics
    amount = 1.0 - density if isinstance(pattern, patterns.Unstructured) else None
    keep = masks.from_scores([np.abs(matrix)], sparsity=amount, pattern=pattern, reduction_axes=[1])[0]
    return matrix * keep, keep
