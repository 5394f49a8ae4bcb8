"""Optional dependencies: imported where used, with an error naming the extra that installs them.

The base install (``pip install tfprune``) covers pruning, training, profiling, structured pruning,
AutoPrune, export and ``tfprune demo``. The rest come with extras declared in ``setup.cfg``:
``[tfmot]`` (tf_keras and TF-MOT, for :mod:`tfprune.tfmot`), ``[datasets]`` (tensorflow-datasets,
for downloads in :mod:`tfprune.data`) and ``[plots]`` (matplotlib, for the sweep and collapse
figures) and ``[litert]`` (ai-edge-litert, the TFLite runtime :func:`tfprune.export.tflite` checks
with when installed); ``[all]`` brings every one.
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "MissingExtraError", "require"]

# importable module name -> the extra of setup.cfg that installs it
EXTRAS = {
    "tf_keras": "tfmot",
    "tensorflow_model_optimization": "tfmot",
    "tensorflow_datasets": "datasets",
    "matplotlib": "plots",
    "ai_edge_litert": "litert",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str, purpose: str):
    """Imports an optional dependency, or says which extra to install.

    Args:
        module: The module to import, a key of ``EXTRAS`` (``"matplotlib"``, …) or a submodule of
            one (``"matplotlib.pyplot"``).
        purpose: What needs it, for the message (e.g. ``"tfprune.tfmot"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: the module (or one it needs) is not installed; the message names
            ``pip install "tfprune[EXTRA]"``.
        KeyError: ``module`` belongs to no extra (a bug in the caller).

    Example:
        >>> plt = require("matplotlib.pyplot", "SweepResult.plot")
    """
    extra = EXTRAS[module.split(".")[0]]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which could not be imported ({error}); "
            f'install it with: pip install "tfprune[{extra}]"'
        ) from error
