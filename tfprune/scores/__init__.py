"""Scoring criteria, one module each, registered by name (see :mod:`tfprune.scores.registry`).

========== ======================================================================================
name       criterion
========== ======================================================================================
magnitude  ``|θ ⊙ m|``
random     seeded N(0, 1)
snip       ``|w ⊙ ∂L/∂w|`` (Lee et al. 2019), normalised
iter_snip  SNIP over rounds, pruned weights stay pruned (default 60 rounds)
force      ``|θ ⊙ ∂L/∂w|`` at the masked network, may revive weights (de Jorge et al. 2021; 60 rounds)
grasp      ``θ ⊙ H g``, keep the highest (Wang et al. 2020)
synflow    ``|w| ⊙ ∂R/∂|w|`` on an all-ones input, data-free (Tanaka et al. 2020; 100 rounds)
========== ======================================================================================
"""

from tfprune.base.deprecation import moved_attribute
from tfprune.scores.registry import Scorer, available, get, register
from tfprune.scores.magnitude import magnitude
from tfprune.scores.random import random
from tfprune.scores.snip import iter_snip, snip
from tfprune.scores.force import force
from tfprune.scores.grasp import grasp
from tfprune.scores.synflow import synflow

__all__ = ["Scorer", "available", "get", "register", "magnitude", "random", "snip", "iter_snip", "force",
           "grasp", "synflow"]


def __getattr__(name):
    return moved_attribute(__name__, name)
