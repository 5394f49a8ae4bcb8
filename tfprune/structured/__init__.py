"""Structured pruning: remove whole neurons and filters, so that the model itself gets smaller."""

from tfprune.structured import criteria
from tfprune.structured.graph import DependencyGraph, Group, dependency_graph
from tfprune.structured.prune import PruneResult, PruneStep, counts, minimum_counts, prune
from tfprune.structured.remove import remove

__all__ = ["DependencyGraph", "Group", "PruneResult", "PruneStep", "counts", "criteria", "dependency_graph",
           "minimum_counts", "prune", "remove"]
