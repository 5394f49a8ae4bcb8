"""tfprune: pruning for Keras 3 and TensorFlow.

The data flows one way — model → prunable weights → scores → masks → masked model → train →
strip → export — and each arrow is one module. This file only re-exports the public API.
"""

from tfprune import (autoprune, callbacks, data, export, masks, models, patterns, policies, schedules, scores,
                     structured, sweep, training)
from tfprune.collapse import collapse_sweep
from tfprune.connectivity import CollapseError, CollapseWarning
from tfprune.layer_specs import register_layer
from tfprune.layers import MaskedLayer
from tfprune.profile import profile, report
from tfprune.pruning import prune_at_init
from tfprune.targets import Target, is_wrapped, prunable_weights
from tfprune.wrapping import apply_masks, get_masks, strip, unwrap, wrap

__version__ = "0.1.0"

__all__ = [
    "CollapseError",
    "CollapseWarning",
    "MaskedLayer",
    "Target",
    "apply_masks",
    "autoprune",
    "callbacks",
    "collapse_sweep",
    "data",
    "export",
    "get_masks",
    "is_wrapped",
    "masks",
    "models",
    "patterns",
    "policies",
    "profile",
    "prunable_weights",
    "prune_at_init",
    "register_layer",
    "report",
    "schedules",
    "scores",
    "strip",
    "structured",
    "sweep",
    "training",
    "unwrap",
    "wrap",
]
