"""Structured pruning: remove whole neurons and filters, so that the model itself gets smaller."""

from tfprune.structured.graph import DependencyGraph, Group, dependency_graph
from tfprune.structured.remove import remove

__all__ = ["DependencyGraph", "Group", "dependency_graph", "remove"]
