"""Scoring criteria, one module each, registered by name (see :mod:`tfprune.scores.registry`)."""

from tfprune.scores.registry import Scorer, available, get, register
from tfprune.scores.magnitude import magnitude
from tfprune.scores.random import random

__all__ = ["Scorer", "available", "get", "register", "magnitude", "random"]
