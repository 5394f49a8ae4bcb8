"""After pruning: which tensors were emptied, and whether the output is still connected to the input.

A mask that keeps no weight of a tensor empties it; that need not disconnect the network (a
residual branch can go while the shortcut carries the signal), and a network can be disconnected
with no tensor emptied (one layer keeps only units that the next layer no longer reads). The
output is *connected* when a path of kept weights leads from the input to it. That is checked
with the network SynFlow scores (:func:`tfprune.autodiff.flow.flow_network`): every weight
``|θ| ⊙ m`` (rescaled per tensor, which changes no zero), biases, normalisation β and means zero,
non-linearities made positively homogeneous, an all-ones input; an output is then non-zero
exactly when such a path reaches it.

Limits: a gate whose branch was emptied (squeeze-excitation) makes its product zero here, while
the real network multiplies by the constant ``σ(bias)``: such a block is reported as
disconnecting. Activations a subclassed model computes inline are not made homogeneous.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from tfprune.base import arguments, views
from tfprune.sparsity import masks as masks_lib
from tfprune.analysis import inputs as example_inputs
from tfprune.autodiff.flow import flow_network, rescaled
from tfprune.layers.targets import prunable_weights
from tfprune.layers.wrapping import get_masks

__all__ = ["CollapseWarning", "CollapseError", "ON_COLLAPSE", "check_on_collapse", "connected_outputs",
           "check_collapse"]

ON_COLLAPSE = ("warn", "raise", "ignore")


class CollapseWarning(UserWarning):
    """Pruning emptied a tensor (removed every weight of it) or cut the output off from the input."""


class CollapseError(ValueError):
    """Raised instead of :class:`CollapseWarning` with ``on_collapse="raise"``."""


def check_on_collapse(on_collapse):
    """Raises an :class:`~tfprune.base.arguments.ArgumentError` unless ``on_collapse`` is one of :data:`ON_COLLAPSE`."""
    arguments.choice("on_collapse", on_collapse, ON_COLLAPSE)


def connected_outputs(model, input_shape=None):
    """For each output of ``model``: whether a path of kept weights leads to it from the input.

    Args:
        model: A built model, wrapped (its masks count) or plain.
        input_shape: One example's shape without the batch axis, where the model does not know it
            (one per input: :mod:`tfprune.analysis.inputs`).

    Returns:
        A list of booleans, one per output (in ``keras.tree.flatten`` order).

    Raises:
        ValueError: if the model does not know its input shape and none is given.

    Example:
        >>> tfprune.analysis.connectivity.connected_outputs(pruned)
        [True]
    """
    return _connected(model, example_inputs.ones(model, input_shape))


def _connected(model, inputs):
    """Whether each output of ``model``'s flow network (zero shifts) on ``inputs`` is non-zero."""
    targets = prunable_weights(model)
    values = rescaled([ops.abs(t.value) for t in targets], targets)
    with flow_network(model, targets, values, zero_shifts=True):
        outputs = model(inputs, training=False)
    return [bool(np.any(views.array(o) != 0)) for o in keras.tree.flatten(outputs)]


def check_collapse(model, on_collapse="warn", input_shape=None):
    """Warns (or raises) naming every emptied tensor of a wrapped model, and says whether its
    output is still connected to its input.

    Args:
        model: A wrapped model.
        on_collapse: ``"warn"`` (a :class:`CollapseWarning`), ``"raise"`` (a
            :class:`CollapseError`) or ``"ignore"`` (nothing is checked).
        input_shape: One example's shape, for models that do not know it; without it such a model
            is checked for emptied tensors only.

    Raises:
        CollapseError: with ``on_collapse="raise"``, when a tensor is emptied or an output is
            disconnected.
        ValueError: for an unknown ``on_collapse``.

    Example:
        >>> tfprune.analysis.connectivity.check_collapse(pruned, "raise")
    """
    check_on_collapse(on_collapse)
    if on_collapse == "ignore":
        return
    targets = prunable_weights(model)
    emptied = [targets[i].name for i in masks_lib.collapsed_layers(get_masks(model))]
    try:
        inputs = example_inputs.ones(model, input_shape)
    except example_inputs.UnknownShapeError:  # the model does not know its input shape
        inputs = None
    connected = None if inputs is None else _connected(model, inputs)
    if not emptied and (connected is None or all(connected)):
        return
    message = _message(emptied, len(targets), connected)
    if on_collapse == "raise":
        raise CollapseError(message)
    warnings.warn(message, CollapseWarning, stacklevel=3)


def _message(emptied, total, connected):
    parts = []
    if emptied:
        parts.append(f"pruning emptied {len(emptied)} of {total} prunable tensors (every weight removed): "
                     f"{', '.join(emptied)}.")
    if connected is None:
        parts.append("Whether the output is still connected to the input was not checked: the model does not "
                     "know its input shape.")
    elif all(connected):
        parts.append("The output is still connected to the input through kept weights.")
    else:
        which = "The output is" if len(connected) == 1 else (
            f"Outputs {[i for i, c in enumerate(connected) if not c]} of {len(connected)} are")
        parts.append(f"{which} disconnected from the input: no path of kept weights leads from the input to "
                     "it, so it no longer depends on the input.")
    parts.append("Prune less, use scope='local' or more rounds, or another method; on_collapse='ignore' "
                 "skips this check.")
    return " ".join(parts)
