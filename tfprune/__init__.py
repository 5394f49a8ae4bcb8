"""tfprune: pruning for Keras 3 and TensorFlow.

The data flows one way — model → prunable weights → scores → masks → masked model → train →
strip → export — and each arrow is one module. This file only re-exports the public API.
"""

from tfprune import autoprune, callbacks, export, posttraining, scores, structured, training
from tfprune.analysis.connectivity import CollapseError, CollapseWarning
from tfprune.analysis.profile import profile, report
from tfprune.base.arguments import ArgumentError
from tfprune.base.deprecation import alias_modules, moved_attribute
from tfprune.experiments import data, models, sweep
from tfprune.experiments.collapse import collapse_sweep
from tfprune.layers import policies
from tfprune.layers.masked import MaskedLayer
from tfprune.layers.specs import register_layer
from tfprune.layers.targets import Target, is_wrapped, prunable_weights
from tfprune.layers.wrapping import apply_masks, get_masks, strip, unwrap, wrap
from tfprune.pruning import prune_at_init
from tfprune.quantization import LostZerosWarning, fake_quantize, quantize
from tfprune.sparsity import masks, patterns, schedules

# Modules of 0.1 that moved into sub-packages. The public ones keep their short path for good; the
# others answer at the old path for one release, with a DeprecationWarning naming the new one.
_PUBLIC_PATHS = {"masks": "sparsity.masks", "patterns": "sparsity.patterns", "schedules": "sparsity.schedules",
                 "policies": "layers.policies", "data": "experiments.data", "models": "experiments.models",
                 "sweep": "experiments.sweep"}
_MOVED_PATHS = {"walk": "base.walk", "views": "base.views", "files": "base.files", "distribute": "base.distribute",
                "layer_specs": "layers.specs", "kinds": "layers.kinds", "mac_formulas": "layers.mac_formulas",
                "layer_changes": "layers.changes", "targets": "layers.targets", "wrapping": "layers.wrapping",
                "topk": "sparsity.topk", "batch_norm": "autodiff.batch_norm", "linearized": "autodiff.linearized",
                "scores.gradients": "autodiff.gradients", "profile": "analysis.profile", "macs": "analysis.macs",
                "connectivity": "analysis.connectivity", "datachecks": "analysis.datachecks",
                "collapse": "experiments.collapse", "grid": "experiments.grid", "demo": "experiments.demo",
                "cli": "experiments.cli"}
alias_modules({f"tfprune.{old}": (f"tfprune.{new}", False) for old, new in _PUBLIC_PATHS.items()})
alias_modules({f"tfprune.{old}": (f"tfprune.{new}", True) for old, new in _MOVED_PATHS.items()})


def __getattr__(name):
    return moved_attribute(__name__, name)


__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "CollapseError",
    "CollapseWarning",
    "LostZerosWarning",
    "MaskedLayer",
    "Target",
    "apply_masks",
    "autoprune",
    "callbacks",
    "collapse_sweep",
    "data",
    "export",
    "fake_quantize",
    "get_masks",
    "is_wrapped",
    "masks",
    "models",
    "patterns",
    "policies",
    "posttraining",
    "profile",
    "prunable_weights",
    "prune_at_init",
    "quantize",
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
