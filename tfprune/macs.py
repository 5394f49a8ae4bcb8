"""Multiply-accumulates (MACs) of weight layers, from one symbolic pass of the model.

Counted for one example (batch 1) and only for multiplications by weights — ``Dense``,
``EinsumDense``, convolutions, RNN cells — plus the two activation matmuls of attention layers
(most pruning papers call these counts "FLOPs"). Bias additions, normalisation, activations,
pooling, merges and embedding look-ups count zero.

Shapes come from tracing the model once symbolically on one example — nothing is computed and no
state changes — so a layer called several times counts every call.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import warnings

import keras
from tfprune import _compat, walk
from tfprune.layers import MaskedLayer

__all__ = ["UnknownShapeError", "size", "owners", "warn_uncounted", "trace_calls", "kernel_macs"]

L = keras.layers


class UnknownShapeError(ValueError):
    """The shape of an example cannot be found, so MACs cannot be counted: pass ``input_shape``."""


def size(variable):
    """Number of entries of a variable."""
    return _prod(variable.shape)


# Layer types with weights whose MACs are zero by definition: look-ups and element-wise scaling.
_NO_MACS = (
    L.Embedding, L.BatchNormalization, L.LayerNormalization, L.GroupNormalization,
    L.RMSNormalization, L.Normalization, L.PReLU,
)
_ATTENTION = (L.MultiHeadAttention, L.GroupQueryAttention)
_RNN_CELLS = (L.SimpleRNNCell, L.LSTMCell, L.GRUCell)


def owners(model):
    """``(layer, variables)`` for every layer with weights and every attention layer, in model order.

    An RNN layer owns its cells' weights; a :class:`MaskedLayer`'s masks are not weights (the
    layer inside it is listed instead).
    """
    inside_rnn = set()
    found = []
    for layer in walk.leaves(model):
        if id(layer) in inside_rnn or isinstance(layer, MaskedLayer):
            continue
        if isinstance(layer, L.RNN):
            inside = walk.leaves(layer)
            inside_rnn.update(id(sub) for sub in inside)
            variables = [v for sub in inside for v in walk.own_variables(sub)]
        else:
            variables = walk.own_variables(layer)
        if variables or isinstance(layer, _ATTENTION):
            found.append((layer, variables))
    return found


def warn_uncounted(layer_owners):
    uncounted = [
        f"{layer.name} ({type(layer).__name__})"
        for layer, _ in layer_owners
        if _formula(layer) is None and not isinstance(layer, _NO_MACS)
    ]
    if uncounted:
        warnings.warn(f"MACs of these layers are not counted (0): {', '.join(uncounted)}", stacklevel=3)


# ---------------------------------------------------------------- MAC formulas, one call each
# Each takes the layer and one recorded call, and returns [(kernel or None, MACs)]. The example's
# batch is 1; a layer that sees a larger batch dimension (e.g. time folded into the batch by
# TimeDistributed) does that much more work, so the batch dimension is counted too.


def _kernel(layer, name):
    """The layer's own variable called ``name`` (``layer.kernel`` may be a computed tensor)."""
    return next(v for v in walk.own_variables(layer) if v.name == name)


def _prod(dims):
    out = 1
    for d in dims:
        out *= d
    return out


def _positions(shape, data_format):
    """Positions of a convolution's input or output: all dimensions but the channels."""
    return _prod(shape[:-1] if data_format == "channels_last" else (shape[0], *shape[2:]))


def _dense(layer, call):
    kernel = _kernel(layer, "kernel")
    return [(kernel, size(kernel) * _prod(call.input[:-1]))]


def _einsum_dense(layer, call):
    # Every combination of the equation's indices is one multiply-accumulate; "..." stands for
    # the input's leading (broadcast) dimensions.
    kernel = _kernel(layer, "kernel")
    input_spec, rest = layer.equation.split(",")
    kernel_spec = rest.split("->")[0]
    before, ellipsis, after = input_spec.partition("...")
    shape = call.input
    sizes = dict(zip(before, shape))
    sizes.update(zip(after[::-1], shape[::-1]))
    sizes.update(zip(kernel_spec, kernel.shape))
    broadcast = shape[len(before): len(shape) - len(after)] if ellipsis else ()
    return [(kernel, _prod(sizes.values()) * _prod(broadcast))]


def _conv(layer, call):
    kernel = _kernel(layer, "kernel")
    return [(kernel, size(kernel) * _positions(call.output, layer.data_format))]


def _separable_conv(layer, call):
    positions = _positions(call.output, layer.data_format)
    kernels = (_kernel(layer, "depthwise_kernel"), _kernel(layer, "pointwise_kernel"))
    return [(kernel, size(kernel) * positions) for kernel in kernels]


def _conv_transpose(layer, call):
    kernel = _kernel(layer, "kernel")
    return [(kernel, size(kernel) * _positions(call.input, layer.data_format))]


def _rnn_cells(layer):
    return [cell for cell in walk.leaves(layer.cell) if walk.own_variables(cell)]


def _rnn(layer, call):
    steps = call.input[0] * call.input[1]
    return [
        (kernel, size(kernel) * steps)
        for cell in _rnn_cells(layer)
        for kernel in (_kernel(cell, "kernel"), _kernel(cell, "recurrent_kernel"))
    ]


def _key_shape(call):
    return call.inputs.get("key", call.inputs["value"])


def _multi_head_attention(layer, call):
    # QKᵀ and AV over the attention axes; the other axes (batch and any extra) are independent.
    query, key = call.inputs["query"], _key_shape(call)
    axes = {a % (len(query) + 1) for a in layer.attention_axes}
    independent = _prod(d for i, d in enumerate(query[:-1]) if i not in axes)
    pairs = _prod(query[a] for a in axes) * _prod(key[a] for a in axes)
    return [(None, independent * pairs * layer.num_heads * (layer.key_dim + layer.value_dim))]


def _grouped_query_attention(layer, call):
    query, key = call.inputs["query"], _key_shape(call)
    return [(None, 2 * query[0] * query[1] * key[1] * layer.num_query_heads * layer.head_dim)]


_FORMULAS = [
    (L.Dense, _dense),
    (L.EinsumDense, _einsum_dense),
    ((L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D), _conv),
    ((L.SeparableConv1D, L.SeparableConv2D), _separable_conv),
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), _conv_transpose),
    (L.RNN, _rnn),
    (L.MultiHeadAttention, _multi_head_attention),
    (L.GroupQueryAttention, _grouped_query_attention),
]


def _formula(layer):
    """The MAC formula for ``layer``, or ``None`` if its type is not counted."""
    if isinstance(layer, L.RNN) and not all(isinstance(c, _RNN_CELLS) for c in _rnn_cells(layer)):
        return None  # e.g. ConvLSTM2D
    return next((formula for classes, formula in _FORMULAS if isinstance(layer, classes)), None)


# ---------------------------------------------------------------- shapes, by symbolic tracing


@dataclasses.dataclass(frozen=True)
class _Call:
    """One call of a layer: when it began, the shapes of its tensor arguments by name, and the
    shape of its first output."""

    index: int
    inputs: dict
    output: tuple

    @property
    def input(self):
        """Shape of the first tensor argument."""
        return next(iter(self.inputs.values()))


def kernel_macs(layer, calls):
    """Dense MACs per example of ``layer`` over its ``calls``: ``[(kernel or None, MACs)]``."""
    formula = _formula(layer)
    if formula is None:
        return []
    totals = {}
    for call in calls:
        _check_known(layer, call)
        for kernel, macs in formula(layer, call):
            totals[id(kernel)] = (kernel, totals.get(id(kernel), (kernel, 0))[1] + int(macs))
    return list(totals.values())


def _trace(model, layers, example):
    """The calls of each of ``layers``, ``{id(layer): [_Call]}``, as ``model`` runs symbolically
    on ``example`` (nothing is computed, no state changes)."""
    calls = {id(layer): [] for layer in layers}
    counter = itertools.count()
    for layer in layers:  # an instance attribute, past Keras's attribute tracking
        object.__setattr__(layer, "call", _recording(layer.call, calls[id(layer)], counter))
    try:
        _compat.compute_output_spec(lambda x: model(x, training=False), example)
    finally:
        for layer in layers:
            object.__delattr__(layer, "call")
    return calls


def _recording(call, sink, counter):
    signature = inspect.signature(call)

    @functools.wraps(call)
    def recording(*args, **kwargs):
        index = next(counter)
        outputs = call(*args, **kwargs)
        arguments = signature.bind(*args, **kwargs).arguments
        shapes = {name: tuple(value.shape) for name, value in arguments.items() if hasattr(value, "shape")}
        sink.append(_Call(index, shapes, tuple(keras.tree.flatten(outputs)[0].shape)))
        return outputs

    return recording


def _check_known(layer, call):
    shapes = [call.output, *call.inputs.values()]
    if any(d is None for shape in shapes for d in shape):
        raise UnknownShapeError(
            f"the shapes of layer {layer.name!r} ({', '.join(map(str, shapes))}) are not fully known: "
            "pass input_shape (the shape of one example, without the batch dimension)"
        )


def _example(model, input_shape):
    """Symbolic inputs of one example (batch 1): of ``input_shape``, else of the recorded shape."""
    if input_shape is not None:
        return keras.tree.map_shape_structure(lambda s: _one_example(model, (None, *s)), input_shape)
    if walk.is_graph_model(model):
        recorded = model.inputs[0] if isinstance(model, keras.Sequential) else _compat.inputs_struct(model)
        return keras.tree.map_structure(lambda x: _one_example(model, x.shape, x.dtype), recorded)
    shapes = _compat.build_shapes(model)
    if len(shapes) != 1:
        raise UnknownShapeError(
            f"cannot find the input shape of model {model.name!r}: pass input_shape (the shape of "
            "one example, without the batch dimension)"
        )
    return keras.tree.map_shape_structure(lambda s: _one_example(model, s), next(iter(shapes.values())))


def _one_example(model, shape, dtype="float32"):
    """A symbolic batch of one for a recorded ``shape`` (its batch dimension is replaced)."""
    if any(d is None for d in shape[1:]):
        raise UnknownShapeError(
            f"model {model.name!r} takes inputs of shape {tuple(shape)}, with unknown dimensions: "
            "pass input_shape (the shape of one example, without the batch dimension)"
        )
    return keras.KerasTensor((1, *shape[1:]), dtype)


def trace_calls(model, layers, input_shape=None):
    """The calls of each of ``layers`` as ``model`` runs symbolically on one example.

    Args:
        model: A built model.
        layers: The layers whose calls to record (e.g. the first items of :func:`owners`).
        input_shape: Shape of one example without the batch dimension; default the model's
            recorded input shape.

    Returns:
        ``{id(layer): [call, ...]}``; each call has ``index`` (call order), ``inputs`` (shapes by
        argument name), ``input`` and ``output`` shapes.

    Raises:
        UnknownShapeError: if the example's shape cannot be found and ``input_shape`` is not given.
    """
    return _trace(model, layers, _example(model, input_shape))
