"""SparseGPT (Frantar and Alistarh 2023): layer-wise optimal-brain-surgeon pruning with reconstruction.

For a layer ``W`` (outputs × inputs) and calibration inputs ``X`` it looks for the sparse ``Ŵ``
that keeps ``‖WX − ŴX‖²`` small. With ``H = 2XXᵀ`` (:attr:`Statistics.hessian
<tfprune.posttraining.calibration.Statistics.hessian>`) it goes through the input columns in order;
pruning column ``j``'s chosen weights leaves an error ``e = (w_j − q_j) / [H⁻¹]_jj`` that the
columns after ``j`` absorb, ``W[:, j:] −= e · H⁻¹[j, j:]``, where ``H⁻¹`` is the upper Cholesky
factor of the inverse Hessian (the paper's Algorithm 1). As in the paper:

* **damping**: ``H + λ · mean(diag H) · I`` (λ = ``damping``, 0.01 by default); inputs that are
  zero on every calibration token (``H_jj = 0``) get ``H_jj = 1`` and their weights are set to 0;
* **column blocks** of ``block_size`` (128) with **lazy batch updates**: the columns of a block
  update the block at once, and the error of the whole block updates the later columns in one
  matrix product;
* **adaptive mask selection**: the mask of a block is chosen when the block is reached, from the
  weights updated so far, keeping the largest ``w²/[H⁻¹]_jj²`` of the block; tfprune keeps an exact
  count per block (the blocks' counts sum to ``kept_count(density, size)`` of the layer, each
  within one of ``density ×`` its size), ties to the lower flat index;
* **N:M**: the mask of each group of ``m`` consecutive columns is chosen when its first column is
  reached, each row keeping its ``n`` largest ``w²/[H⁻¹]_jj²`` (so ``block_size`` must be a
  multiple of ``m``).

Everything runs in float64 NumPy.
"""

from __future__ import annotations

import numpy as np

from tfprune.sparsity import masks, patterns
from tfprune.sparsity.topk import top_k

__all__ = ["SingularHessianError", "prune_matrix", "inverse_cholesky"]


class SingularHessianError(ValueError):
    """A layer's Hessian ``2XXᵀ`` is singular and no damping was asked for: pass ``damping > 0``."""


def prune_matrix(matrix, statistics, density, pattern, *, damping=0.01, block_size=128, name="the layer"):
    """``(Ŵ, M)``: SparseGPT's pruned and updated ``W`` and its mask.

    Args:
        matrix: ``W``, outputs × inputs (float64).
        statistics: The layer's :class:`~tfprune.posttraining.calibration.Statistics` with its Gram matrix.
        density: The kept fraction (unstructured).
        pattern: :class:`tfprune.patterns.Unstructured` or :class:`~tfprune.patterns.NByM`.
        damping: λ: ``λ · mean(diag H)`` is added to the diagonal of ``H``; ``0`` for none.
        block_size: Columns per block (a multiple of ``m`` for N:M).
        name: The layer's name, for errors.

    Returns:
        ``Ŵ`` (pruned weights exactly 0, kept weights updated) and the boolean mask ``M``.

    Raises:
        SingularHessianError: if ``H`` (damped) is not positive definite.

    Example:
        >>> w, keep = prune_matrix(matrix, statistics, 0.5, patterns.Unstructured())
    """
    w = np.array(matrix, dtype=np.float64)
    hessian = np.array(statistics.hessian)
    dead = np.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    w[:, dead] = 0.0
    hessian[np.diag_indices_from(hessian)] += damping * np.mean(np.diag(hessian))
    inverse = inverse_cholesky(hessian, name, statistics.tokens)
    rows, columns = w.shape
    keep = np.zeros(w.shape, bool)
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        block_inverse = inverse[start:end, start:end]
        diagonal = np.diag(block_inverse)
        block = w[:, start:end].copy()
        if isinstance(pattern, patterns.Unstructured):
            count = masks.kept_count(density, rows * end) - masks.kept_count(density, rows * start)
            block_keep = top_k([((block / diagonal) ** 2).ravel()], count)[0].reshape(block.shape)
        else:
            block_keep = np.zeros(block.shape, bool)
        pruned, errors = np.zeros_like(block), np.zeros_like(block)
        for j in range(end - start):
            if not isinstance(pattern, patterns.Unstructured) and j % pattern.m == 0:
                group = slice(j, j + pattern.m)
                group_scores = (block[:, group] / diagonal[group]) ** 2
                block_keep[:, group] = masks.from_scores([group_scores], pattern=pattern, reduction_axes=[1])[0]
            column = block[:, j]
            pruned[:, j] = column * block_keep[:, j]
            errors[:, j] = (column - pruned[:, j]) / diagonal[j]
            block[:, j:] -= np.outer(errors[:, j], block_inverse[j, j:])
        w[:, start:end] = pruned
        w[:, end:] -= errors @ inverse[start:end, end:]
        keep[:, start:end] = block_keep
    return w, keep


def inverse_cholesky(hessian, name="the layer", tokens=None):
    """The upper Cholesky factor ``U`` of ``H⁻¹`` (``H⁻¹ = UᵀU``), SparseGPT's ``H⁻¹`` rows.

    Raises:
        SingularHessianError: if ``H`` is not numerically positive definite (a pivot of its
            Cholesky factorisation at or below ``width · ε · max diag H``).

    Example:
        >>> inverse_cholesky(np.array([[4., 0.], [0., 1.]]))
        array([[0.5, 0. ], [0. , 1. ]])
    """
    width = len(hessian)
    try:
        lower = np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        lower = None
    floor = width * np.finfo(np.float64).eps * np.max(np.diag(hessian))
    if lower is None or np.min(np.diag(lower)) ** 2 <= floor:
        seen = f" from {tokens} calibration tokens" if tokens is not None else ""
        raise SingularHessianError(
            f"the Hessian 2XXᵀ of {name}{seen} over its {width} input features is singular: its inputs span "
            "fewer dimensions than it has; pass damping > 0 (the paper's 0.01 adds 1 % of the mean diagonal) or "
            "more calibration data")
    inverse_lower = np.linalg.solve(lower, np.eye(width))
    return np.linalg.cholesky(inverse_lower.T @ inverse_lower).T
