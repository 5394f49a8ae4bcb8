"""MAC formulas: the multiply-accumulates of one call of a layer, one formula per family of layers.

A formula is a function ``(layer, call) -> [(variable or None, MACs)]``: for one recorded call of
``layer`` (see :func:`tfprune.analysis.macs.trace_calls`; ``call.input`` is the shape of the first tensor
argument, ``call.inputs`` the shapes by argument name, ``call.output`` the shape of the first
output, all with the example's batch of 1), the MACs done through each kernel (``None`` for
products of two activations, such as attention's). A kernel's share is what its density scales in
effective MACs. :mod:`tfprune.layer_specs` gives each layer type its formula; a user's own formula
is any such function (it may also return one integer, the MACs of the layer's only kernel).
Kernel sizes are read through :func:`tfprune.layers.quantized.size_of`, so a layer quantized by
Keras' ``model.quantize`` counts the MACs of the float layer, not of its packed storage.

A layer that sees a larger batch dimension (e.g. time folded into the batch by
``TimeDistributed``) does that much more work, so the batch dimension is counted too.
"""

from __future__ import annotations

from tfprune.base import walk
from tfprune.layers.quantized import shape_of, size_of

__all__ = [
    "size", "own_weight", "no_macs", "per_input_position", "per_output_position", "per_time_step", "einsum_dense",
    "multi_head_attention", "grouped_query_attention",
]


def _prod(dims):
    out = 1
    for d in dims:
        out *= d
    return out


def size(variable):
    """Number of entries of a variable."""
    return _prod(variable.shape)


def own_weight(layer, name):
    """The layer's own variable called ``name`` (``layer.kernel`` may be a computed tensor)."""
    return next(v for v in walk.own_variables(layer) if v.name == name)


def _positions(shape, data_format):
    """Positions of a tensor: all dimensions but the channels (the batch of 1 included)."""
    return _prod(shape[:-1] if data_format == "channels_last" else (shape[0], *shape[2:]))


def no_macs(layer, call):
    """The formula of layers whose weights do no multiply-accumulates: look-ups, element-wise scaling."""
    return []


def per_input_position(*names):
    """A formula: each entry of each named kernel is one MAC per position of the input.

    ``Dense`` (``in·out`` per position) and transposed convolutions (``k·C_in·C_out`` per *input*
    position). Positions are all the input's dimensions but the channels (``data_format`` says
    which those are; channels last for layers without one).

    Example:
        >>> tfprune.register_layer(MyDense, weights={"w": "dense"}, macs=per_input_position("w"))
    """
    def formula(layer, call):
        positions = _positions(call.input, getattr(layer, "data_format", "channels_last"))
        return [(kernel, size_of(layer, kernel) * positions) for kernel in (own_weight(layer, n) for n in names)]

    return formula


def per_output_position(*names):
    """A formula: each entry of each named kernel is one MAC per position of the output.

    Convolutions (``k·(C_in/groups)·C_out`` per output position), depthwise (``k·C·multiplier``)
    and separable convolutions (the depthwise plus the pointwise kernel).
    """
    def formula(layer, call):
        positions = _positions(call.output, getattr(layer, "data_format", "channels_last"))
        return [(kernel, size_of(layer, kernel) * positions) for kernel in (own_weight(layer, n) for n in names)]

    return formula


def per_time_step(*names):
    """A formula for recurrent cells: each entry of each named kernel is one MAC per time step.

    Called with the call of the ``RNN`` layer that runs the cell (input ``(batch, T, features)``):
    ``SimpleRNN``/``LSTM``/``GRU`` do ``T·(input_dim + units)·units·gates`` (gates 1/4/3).
    """
    def formula(cell, call):
        steps = call.input[0] * call.input[1]
        return [(kernel, size_of(cell, kernel) * steps) for kernel in (own_weight(cell, n) for n in names)]

    return formula


def einsum_dense(layer, call):
    """``EinsumDense``: the product of the sizes of all the equation's indices (``...`` stands for
    the input's leading, broadcast dimensions)."""
    kernel = own_weight(layer, "kernel")
    input_spec, rest = layer.equation.split(",")
    kernel_spec = rest.split("->")[0]
    before, ellipsis, after = input_spec.partition("...")
    shape = call.input
    sizes = dict(zip(before, shape))
    sizes.update(zip(after[::-1], shape[::-1]))
    sizes.update(zip(kernel_spec, shape_of(layer, kernel)))
    broadcast = shape[len(before): len(shape) - len(after)] if ellipsis else ()
    return [(kernel, _prod(sizes.values()) * _prod(broadcast))]


def _key_shape(call):
    return call.inputs.get("key", call.inputs["value"])


def multi_head_attention(layer, call):
    """``MultiHeadAttention``'s two activation matmuls, ``heads·T_q·T_k·(key_dim + value_dim)`` over
    the attention axes (the other axes are independent); its projections are ``EinsumDense``
    layers, counted on their own."""
    query, key = call.inputs["query"], _key_shape(call)
    axes = {a % (len(query) + 1) for a in layer.attention_axes}
    independent = _prod(d for i, d in enumerate(query[:-1]) if i not in axes)
    pairs = _prod(query[a] for a in axes) * _prod(key[a] for a in axes)
    return [(None, independent * pairs * layer.num_heads * (layer.key_dim + layer.value_dim))]


def grouped_query_attention(layer, call):
    """``GroupQueryAttention``'s two activation matmuls, ``2·T_q·T_k·query_heads·head_dim``."""
    query, key = call.inputs["query"], _key_shape(call)
    return [(None, 2 * query[0] * query[1] * key[1] * layer.num_query_heads * layer.head_dim)]
