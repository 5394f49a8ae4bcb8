"""Keras callbacks for pruning during ``fit``: :class:`GradualPruning` sets the masks on a
schedule, :class:`DynamicSparse` trains sparse and moves connections (RigL, SET),
:class:`PruningSummaries` logs the sparsity to TensorBoard."""

from tfprune.callbacks.dynamic import DynamicSparse
from tfprune.callbacks.gradual import GradualPruning
from tfprune.callbacks.summaries import PruningSummaries
from tfprune.callbacks.updates import MaskUpdate, active_pruners, active_pruning

__all__ = ["DynamicSparse", "GradualPruning", "MaskUpdate", "PruningSummaries", "active_pruners", "active_pruning"]
