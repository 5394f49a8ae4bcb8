"""Running a model with its non-linearities made positively homogeneous, or without its output activation.

SynFlow's argument (and tfprune's connectivity check) needs a network whose non-linearities are
positively homogeneous, ``σ(c·x) = c·σ(x)`` for ``c > 0``: ReLU, leaky ReLU, PReLU, the identity.
Other non-linearities saturate or flatten on an all-ones input — ReLU6 clips at 6, sigmoid and
hard-sigmoid gates at 1, and a softmax head makes the sum of the outputs constant — and then give
zero or all-equal scores. :func:`linearized` runs a model with

* capped or shifted ReLUs (ReLU6, ``ReLU(max_value=…)``, ``ReLU(threshold=…)``) made plain ReLUs;
* every other activation that tfprune does not know to be positively homogeneous (sigmoid,
  hard-sigmoid, swish/silu, hard-swish, gelu, tanh, elu, selu, softplus, softmax, a user's own
  function, …) made the identity; a softmax over masked positions becomes a multiplication by the
  mask (masked positions give 0, as before);

found in

* the ``activation`` of layers (Dense, convolutions, ``Activation``, RNN cells, …). The gates of
  LSTM and GRU cells (their ``recurrent_activation``) are kept: the cell multiplies by them
  inside its ``call``, and made linear they would raise the flow to a power of the sequence
  length; bounded in (0, 1) they keep it of degree 1 (saturated gates give their kernel columns
  small scores);
* the activation layers ``ReLU``, ``Softmax`` and ``ELU``, and ``Multiply`` layers;
* activation and product operation nodes of functional graphs (``keras.ops.sigmoid(x)``,
  ``keras.ops.relu6(x)``, ``x * y`` on Keras tensors), also in nested models;
* ``MultiHeadAttention``, whose softmax is made the identity: attention becomes
  ``(query·keyᵀ / √d)·value``, so query and key kernels get gradients.

Preprocessing layers are made positively homogeneous the same way: ``Rescaling`` drops its offset
and takes the absolute value of its scale, ``Normalization`` drops its mean (it divides by the
standard deviation alone, or multiplies by it when inverting). The all-ones input the SynFlow
paper defines then reaches the first weights as positive values — ``keras.applications``
MobileNetV3's ``Rescaling(1/127.5, offset=-1)`` would turn it into −0.99 and every score into 0.

Normalisations that divide by statistics of their own input (``LayerNormalization``,
``GroupNormalization``, ``UnitNormalization``, ``RMSNormalization``) are of degree 0: scaling
their input changes nothing, so the weights before them would get scores that sum to zero, and
the centring makes some negative. They become their scale and shift alone, ``γ ⊙ x + β``.
Batch normalisation in inference mode is already affine and is kept.

An element-wise product of two tensors of the graph — a gate ``x ⊙ σ(…)`` (squeeze-excitation,
hard-swish written as ``x * hard_sigmoid(x)``) once its ``σ`` is the identity — is of degree 2 in
the weights before it: every gated block would double the flow through them, and over the 16
gated blocks of an EfficientNet it overflows and ranks early layers far above late ones. Such a
product (a ``Multiply`` layer, or ``x * y`` / ``keras.ops.multiply`` of two graph tensors) becomes
the geometric mean ``(a ⊙ b)^(1/2)`` (``(Π aᵢ)^(1/n)`` for n inputs), which is positively
homogeneous of degree 1 and zero exactly where the product is. A product with a constant
(``x * (1/6)``) is unchanged.

Not reached: activations computed inline by a subclassed model's ``call`` or inside a ``Lambda``;
they run unchanged.

:func:`without_output_activation` changes only a final softmax or sigmoid, so the model outputs
its logits.

Both are context managers that change the model's layers for the enclosed calls only and restore
every change on exit, also on error. A ``tf.function`` should enter them *inside* the traced
function: every trace then sees the changed network, and between calls the model is unchanged.

Example:
    >>> with tfprune.autodiff.linearized.linearized(model):
    ...     flow = model(ones, training=False)
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfprune import _compat
from tfprune.base import walk
from tfprune.layers.changes import changed

__all__ = ["linearized", "without_output_activation"]

L = keras.layers

# Positively homogeneous activation functions: kept as they are.
_HOMOGENEOUS = {keras.activations.relu, keras.activations.linear, keras.activations.leaky_relu, keras.ops.relu,
                keras.ops.leaky_relu, tf.nn.relu, tf.nn.leaky_relu}
# Capped ReLUs: their homogeneous part is the ReLU.
_CAPPED_RELU = {keras.activations.relu6, keras.ops.relu6, tf.nn.relu6}
# Activations that turn logits into probabilities (what a loss "from logits" must not see).
_PROBABILITIES = {keras.activations.softmax, keras.activations.sigmoid, keras.ops.softmax, keras.ops.sigmoid,
                  tf.nn.softmax, tf.nn.sigmoid, tf.math.sigmoid}

# Element-wise (shape-keeping) activation operations of ``keras.ops``, by class name.
_ACTIVATION_OPS = {"Sigmoid", "SparseSigmoid", "HardSigmoid", "Silu", "HardSilu", "Gelu", "Tanh", "Elu", "Selu",
                   "Celu", "Softplus", "Softsign", "SoftShrink", "SparsePlus", "Squareplus", "LogSigmoid",
                   "TanhShrink", "HardTanh", "HardShrink", "Threshold", "Softmax", "LogSoftmax", "Sparsemax"}
_CAPPED_RELU_OPS = {"Relu6"}
_PROBABILITY_OPS = {"Softmax", "Sigmoid"}
# Normalisations that divide by statistics of their own input (positively homogeneous of degree 0).
_STATISTICS_NORMS = (L.LayerNormalization, L.GroupNormalization, L.UnitNormalization, L.RMSNormalization)


def _identity(inputs, mask=None, **kwargs):
    """The identity, masked like Keras's softmax: masked positions give 0."""
    return inputs if mask is None else inputs * ops.cast(mask, inputs.dtype)


def _relu(inputs, **kwargs):
    return ops.relu(inputs)


def _geometric_mean(factors, **kwargs):
    """``sign(Π fᵢ)·(Π |fᵢ|)^(1/n)`` element-wise (broadcasting), computed in log space so that it
    neither overflows nor has infinite gradients, and exactly 0 where a factor is 0."""
    nonzero = None
    log_sum, sign = 0.0, 1.0
    for f in factors:
        is_nonzero = ops.not_equal(f, 0)
        nonzero = is_nonzero if nonzero is None else ops.logical_and(nonzero, is_nonzero)
        log_sum = log_sum + ops.where(is_nonzero, ops.log(ops.where(is_nonzero, ops.abs(f), 1.0)), 0.0)
        sign = sign * ops.sign(f)
    return ops.where(nonzero, sign * ops.exp(log_sum / len(factors)), 0.0)


def _product(x1, x2):
    """``x1 * x2`` of an operation node: the geometric mean of two tensors, a plain product with a constant."""
    if tf.is_tensor(x1) and tf.is_tensor(x2):
        return _geometric_mean([x1, x2])
    return ops.multiply(x1, x2)


def _homogeneous_part(fn):
    """``fn`` if it is positively homogeneous, the ReLU for a capped ReLU, else the identity."""
    if fn is None or fn in _HOMOGENEOUS:
        return fn
    return keras.activations.relu if fn in _CAPPED_RELU else keras.activations.linear


def _scale_and_shift(layer):
    """A ``call`` for a normalisation that divides by statistics of its input (layer, group, RMS
    normalisation): only its scale ``γ`` and shift ``β``, along the last axis. Where they do not
    lie along the last axis alone it runs the layer's own ``call``."""
    by_name = {v.name: v for v in layer.weights}
    scale, shift = by_name.get("gamma", by_name.get("scale")), by_name.get("beta")
    own_call = type(layer).call

    def call(inputs, *args, **kwargs):
        params = [v for v in (scale, shift) if v is not None]
        if any(tuple(v.shape) != (inputs.shape[-1],) for v in params):
            return own_call(layer, inputs, *args, **kwargs)
        outputs = inputs if scale is None else inputs * scale.value
        return outputs if shift is None else outputs + shift.value

    return call


def _keras_op_name(operation):
    """The class name of an operation node (``keras.ops.sigmoid(x)`` makes a ``Sigmoid``), or
    ``None`` for a layer."""
    if isinstance(operation, L.Layer) or not isinstance(operation, keras.Operation):
        return None
    return type(operation).__name__


@contextlib.contextmanager
def _changed(changes, attention_layers=()):
    """Applies ``(object, attribute, value)`` changes and explicit attention scores for the enclosed block."""
    with contextlib.ExitStack() as stack:
        for layer in attention_layers:
            stack.enter_context(_compat.explicit_attention_scores(layer))
        stack.enter_context(changed(changes))
        yield


def _operations(layer):
    """The operation nodes of a functional graph (layers and ``keras.ops`` nodes); none otherwise."""
    return list(getattr(layer, "operations", None) or ()) if walk.is_graph_model(layer) else []


def _linearizing_changes(layer):
    """The changes that make ``layer``'s own non-linearities positively homogeneous."""
    fn = vars(layer).get("activation")
    if callable(fn) and _homogeneous_part(fn) is not fn:
        yield layer, "activation", _homogeneous_part(fn)
    if isinstance(layer, L.ReLU) and (layer.max_value is not None or layer.threshold != 0):
        yield layer, "max_value", None
        yield layer, "threshold", 0.0
    if isinstance(layer, (L.Softmax, L.ELU)):
        yield layer, "call", _identity
    if isinstance(layer, L.Multiply):
        yield layer, "call", _geometric_mean
    if isinstance(layer, _STATISTICS_NORMS):
        yield layer, "call", _scale_and_shift(layer)
    if isinstance(layer, L.Rescaling):
        yield layer, "scale", np.abs(np.asarray(layer.scale, dtype="float32"))
        yield layer, "offset", 0.0
    if isinstance(layer, L.Normalization) and layer.mean is not None:
        yield layer, "mean", ops.zeros_like(layer.mean)
    for operation in _operations(layer):
        name = _keras_op_name(operation)
        if name in _ACTIVATION_OPS:
            yield operation, "call", _identity
        elif name in _CAPPED_RELU_OPS:
            yield operation, "call", _relu
        elif name == "Multiply":
            yield operation, "call", _product


def linearized(model):
    """A context manager that runs ``model`` with its non-linearities made positively homogeneous.

    See the module docstring for what is changed and where. ReLU networks are unchanged.

    Args:
        model: A Keras 3 model or layer (wrapped or not).

    Returns:
        A context manager; inside it, calls of ``model`` (and of the layers it holds) use the
        changed network. Every change is undone on exit, also on error.

    Example:
        >>> with linearized(model):
        ...     flow = ops.sum(model(ones, training=False))
    """
    layers = _compat.nested_layers(model)
    changes = [change for layer in layers for change in _linearizing_changes(layer)]
    attention = [layer for layer in layers if isinstance(layer, L.MultiHeadAttention)]
    return _changed(changes, attention)


def _output_operations(model):
    """The operations (inner layers of wrappers and nested models) that produce ``model``'s outputs."""
    try:
        outputs = list(model.outputs or ())
    except (AttributeError, ValueError):  # a subclassed model has no graph
        return []
    found = []
    for tensor in outputs:
        operation = _compat.keras_history_operation(tensor)
        while isinstance(operation, L.Wrapper):
            operation = operation.layer
        found.extend(_output_operations(operation) if walk.is_graph_model(operation) else [operation])
    return found


def _head_changes(operation):
    fn = vars(operation).get("activation")
    if callable(fn) and fn in _PROBABILITIES:
        yield operation, "activation", keras.activations.linear
    if isinstance(operation, L.Softmax) or _keras_op_name(operation) in _PROBABILITY_OPS:
        yield operation, "call", _identity


def without_output_activation(model):
    """A context manager that runs ``model`` without a final softmax or sigmoid: it outputs logits.

    Looks through the graph of functional and Sequential models (also nested ones and wrapped
    layers) for the operation that makes each output: the ``activation`` of its last layer, an
    ``Activation``/``Softmax`` layer, or a ``keras.ops.softmax``/``sigmoid`` node. A subclassed model
    has no graph to look through and runs unchanged.

    Args:
        model: A Keras 3 model (wrapped or not).

    Returns:
        A context manager; the change is undone on exit, also on error.

    Example:
        >>> with without_output_activation(model):
        ...     logits = model(x, training=False)
    """
    return _changed([change for op in _output_operations(model) for change in _head_changes(op)])
