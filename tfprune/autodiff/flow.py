"""The network SynFlow scores, which the collapse check reuses: every parameter non-negative,
non-linearities positively homogeneous, an embedding reading every token, on an all-ones input.

:func:`flow_network` runs a model as that network without changing a variable (on the all-ones
input of :func:`tfprune.analysis.inputs.ones`); :func:`rescaled` keeps ``R = Σ outputs`` finite on
deep networks.
"""

import contextlib

import keras
from keras import ops

from tfprune import _compat
from tfprune.autodiff.gradients import substitute
from tfprune.autodiff.linearized import linearized

__all__ = ["flow_network", "rescaled"]

# Variables that shift a layer's output rather than scale it (zero in :func:`flow_network`'s
# ``zero_shifts`` mode): biases, normalisation β, batch-norm and ``Normalization`` means.
_SHIFTS = ("bias", "beta", "moving_mean", "mean")


@contextlib.contextmanager
def flow_network(model, targets, values, zero_shifts=False):
    """Runs the enclosed calls of ``model`` as the network SynFlow scores.

    Non-linearities are made positively homogeneous (:func:`tfprune.autodiff.linearized.linearized`), the
    targets' effective weights are ``values``, every other float variable is its absolute value,
    and every embedding lookup returns the sum of all rows of its (substituted) matrix — the
    all-ones one-hot input. No variable changes.

    Args:
        model: The model.
        targets: The targets whose values are given.
        values: One non-negative tensor per target (gradients flow to them).
        zero_shifts: Make biases, normalisation β and means zero instead of ``|·|``: then an output
            is non-zero exactly when a path of non-zero weights leads to it from the input.
    """
    embeddings = {id(layer.embeddings) for layer in _compat.nested_layers(model)
                  if isinstance(layer, keras.layers.Embedding)}
    substituted = {id(t.variable) for t in targets} | {id(t.mask) for t in targets if t.mask is not None}
    others = []
    for v in model.variables:
        if id(v) in substituted or not v.dtype.startswith("float"):
            continue
        value = ops.zeros(v.shape, v.dtype) if zero_shifts and v.name in _SHIFTS else ops.abs(v.value)
        others.append((v, _every_token(value) if id(v) in embeddings else value))
    values = [_every_token(v) if id(t.variable) in embeddings else v for t, v in zip(targets, values)]
    with linearized(model), substitute(targets, values, others):
        yield


def _every_token(matrix):
    """An embedding matrix whose every row is the sum of all rows: a lookup of any token then reads
    the all-ones one-hot input, and gradients reach every row."""
    return ops.broadcast_to(ops.sum(matrix, axis=0, keepdims=True), matrix.shape)


def rescaled(values, targets):
    """Each value times :func:`_fan_in_scale` (a positive constant per tensor)."""
    return [v * _fan_in_scale(v, t.kind) for v, t in zip(values, targets)]


def _fan_in_scale(value, kind):
    """``1 / mean fan-in sum of |w|`` (the sum over the kernel's input axes, averaged over its
    outputs; for depthwise kernels over the spatial axes only); 1 for an all-zero kernel."""
    axes = list(range(len(value.shape) - 2)) if kind == "depthwise" else list(range(len(value.shape) - 1))
    mean_sum = ops.mean(ops.sum(value, axis=axes)) if axes else ops.mean(value)
    return ops.where(mean_sum > 0, 1.0 / ops.maximum(mean_sum, 1e-30), 1.0)
