"""Wanda (Sun, Liu, Bair and Kolter 2023): prune by weight times input-activation norm, per output.

The score of ``W_ij`` is ``|W_ij| · ‖X_j‖₂``, ``‖X_j‖₂`` the norm of input feature ``j`` over all
calibration tokens. Scores are compared within each output row: every row keeps exactly
``kept_count(density, inputs)`` of its weights (unstructured), or each group of ``m`` consecutive
inputs of a row keeps its ``n`` best (N:M). The kept weights are not changed. Ties go to the
lower input index, as everywhere in tfprune.
"""

from __future__ import annotations

import numpy as np

from tfprune.sparsity import masks, patterns

__all__ = ["scores", "prune_matrix"]


def scores(matrix, norms):
    """Wanda's scores ``|W_ij| · ‖X_j‖₂`` of ``W`` (outputs × inputs) for input norms ``‖X_j‖₂``.

    Example:
        >>> scores(np.array([[1., -2.]]), np.array([3., 1.]))
        array([[3., 2.]])
    """
    return np.abs(matrix) * norms[None, :]


def prune_matrix(matrix, statistics, density, pattern):
    """``(W ⊙ M, M)`` with Wanda's mask ``M``, compared within each output row.

    Args:
        matrix: ``W``, outputs × inputs.
        statistics: The layer's :class:`tfprune.posttraining.calibration.Statistics`.
        density: The kept fraction of each row (unstructured).
        pattern: :class:`tfprune.patterns.Unstructured` or :class:`~tfprune.patterns.NByM`.

    Example:
        >>> s = Statistics(2, gram=False); s.update(np.array([[3., 1.]]))
        >>> prune_matrix(np.array([[1., -2.]]), s, 0.5, patterns.Unstructured())[0]
        array([[1., 0.]])
    """
    width = matrix.shape[1]
    if isinstance(pattern, patterns.Unstructured):
        kept = masks.kept_count(density, width)
        if kept == 0:
            return np.zeros_like(matrix), np.zeros(matrix.shape, bool)
        pattern = patterns.NByM(kept, width)  # one group per row: the row keeps its `kept` best
    keep = masks.from_scores([scores(matrix, statistics.norms)], pattern=pattern, reduction_axes=[1])[0]
    return matrix * keep, keep
