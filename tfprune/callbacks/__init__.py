"""Keras callbacks for pruning during ``fit``: :class:`GradualPruning` sets the masks on a
schedule, :class:`PruningSummaries` logs the sparsity to TensorBoard."""

from tfprune.callbacks.gradual import GradualPruning, MaskUpdate, active_pruning
from tfprune.callbacks.summaries import PruningSummaries

__all__ = ["GradualPruning", "MaskUpdate", "PruningSummaries", "active_pruning"]
