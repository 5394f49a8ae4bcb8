"""Quantization of pruned models: Keras' own ``model.quantize`` checked for lost zeros
(:func:`quantize`), and pruning-preserving quantization-aware training (:func:`fake_quantize`).

Measured on Keras 3.15 (``docs/quantization.md``): ``int8`` and ``int4`` (per-group codes with
zero points) keep every zero of a stripped pruned model; ``float8`` rounds small weights to zero
(more zeros, none lost); ``gptq`` and ``awq`` keep them as 3.15.1 runs them (uncalibrated, round to
nearest), and GPTQ with its calibration running loses a few. :func:`quantize` warns with the count
when a mode loses zeros.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from tfprune import _compat
from tfprune.base import walk
from tfprune.layers import quantized
from tfprune.layers.masked import MaskedLayer
from tfprune.layers.targets import is_wrapped, prunable_weights
from tfprune.layers.wrapping import rebuild

__all__ = ["KERAS_MODES", "LostZerosWarning", "quantize", "FakeQuantMaskedLayer", "fake_quantize", "fake_quant_int8",
           "fake_quant_activation", "ACTIVATION_EMA_DECAY"]

KERAS_MODES = quantized.COUNTED_MODES


class LostZerosWarning(UserWarning):
    """A quantization mode made weights that were exactly zero non-zero."""


def _zeros(model, dequantized):
    """``{(id(layer), name): bool array}`` of the zeros of every weight Keras quantizes."""
    return {(id(layer), v.name): quantized.dequantized_zero(layer, v) if dequantized else v.numpy() == 0
            for layer in walk.leaves(model) for v in walk.own_variables(layer) if v.name in ("kernel", "embeddings")}


def quantize(model, mode, **kwargs):
    """Quantizes a stripped model with Keras' ``model.quantize(mode)`` and checks its zeros.

    Every weight that was exactly zero must stay zero once dequantized; a
    :class:`LostZerosWarning` names the mode and the number of zeros lost. Weights that
    quantization itself rounds to zero are not lost zeros (:func:`tfprune.profile` counts them).

    Args:
        model: A built, plain Keras 3 model (e.g. from :func:`tfprune.strip`).
        mode: ``"int8"``, ``"int4"``, ``"float8"``, ``"gptq"`` or ``"awq"`` (the last two need
            ``config=keras.quantizers.GPTQConfig(...)`` / ``AWQConfig(...)``).
        **kwargs: Passed to ``model.quantize`` (``config``, ``filters``).

    Returns:
        The number of zeros lost (0 for a mode that keeps them).

    Raises:
        ValueError: before anything changes, for a model still holding ``MaskedLayer``s or an
            unknown mode.

    Example:
        >>> plain = tfprune.strip(wrapped)
        >>> tfprune.quantize(plain, "int8")   # 0: every pruned weight is still exactly zero
        >>> tfprune.profile(plain)            # MACs of the float model, dequantized non-zeros
    """
    if mode not in KERAS_MODES:
        raise ValueError(f"mode must be one of {KERAS_MODES}, got {mode!r}")
    if is_wrapped(model):
        raise ValueError(f"model {model.name!r} still holds tfprune MaskedLayers: call tfprune.strip(model) first "
                         "and quantize the plain model it returns")
    walk.check_built(model)
    before = _zeros(model, dequantized=False)
    model.quantize(mode, **kwargs)
    after = _zeros(model, dequantized=True)
    lost = sum(int(np.count_nonzero(zero & ~after[key])) for key, zero in before.items() if key in after)
    if lost:
        warnings.warn(f"quantize: mode {mode!r} made {lost:,} weights that were exactly zero non-zero: the "
                      "pruned model is no longer as sparse", LostZerosWarning, stacklevel=2)
    return lost


def fake_quant_int8(weight):
    """``weight`` rounded to symmetric int8 per output channel (the last axis), with a
    straight-through gradient: ``w + stop_gradient(q(w) - w)``. A zero stays exactly zero.

    The scale of a channel is ``max|w| / 127`` (as TFLite's full-integer converter quantizes
    Dense and convolution weights); a channel of zeros stays zero.

    Example:
        >>> fake_quant_int8(keras.ops.convert_to_tensor([[0.0, 1.0], [0.5, -2.0]]))
    """
    axes = tuple(range(len(weight.shape) - 1))
    scale = ops.max(ops.abs(weight), axis=axes, keepdims=True) / 127.0
    scale = ops.where(scale > 0, scale, ops.ones_like(scale))
    rounded = ops.clip(ops.round(weight / scale), -127.0, 127.0) * scale
    return weight + ops.stop_gradient(rounded - weight)


ACTIVATION_EMA_DECAY = 0.999  # TF-MOT's MovingAverageQuantizer default


def fake_quant_activation(x, value_range):
    """``x`` fake-quantized to per-tensor asymmetric int8 over ``value_range = [low, high]`` (a range
    that holds 0), as TFLite's full-integer converter quantizes an activation: scale
    ``(high - low) / 255``, zero point ``round(-128 - low / scale)``, ``q = clip(round(x / scale) + zp,
    -128, 127)``, value ``(q - zp) * scale``. Gradients pass straight through inside the range.
    Uses :func:`keras.quantizers.fake_quant_with_min_max_vars` (TensorFlow's ``FakeQuantWithMinMaxVars``).

    Example:
        >>> fake_quant_activation(keras.ops.convert_to_tensor([-0.3, 0.1, 2.0]), [-0.5, 2.0])
    """
    return keras.quantizers.fake_quant_with_min_max_vars(x, value_range[0], value_range[1], num_bits=8)


@keras.saving.register_keras_serializable(package="tfprune")
class FakeQuantMaskedLayer(MaskedLayer):
    """A :class:`MaskedLayer` that trains as its int8 TFLite form will run: the forward pass uses
    ``fake_quant_int8(w * mask)`` (masked weights stay exactly zero, gradients pass straight through
    the rounding) and, with ``activations=True``, fake-quantizes its output (and with
    ``quantize_inputs=True`` its input) to per-tensor asymmetric int8 (:func:`fake_quant_activation`).

    Each quantized tensor has a non-trainable ``[low, high]`` range variable (``output_range``,
    ``input_range``), tracked as TF-MOT's ``MovingAverageQuantizer`` tracks it: in a training call the
    batch range ``[min(min x, 0), max(max x, 0)]`` is averaged in with decay
    :data:`ACTIVATION_EMA_DECAY` (the first training batch sets it), then used; other calls use the
    stored range. A range never tracked (``[0, 0]``) passes its tensor unquantized.

    Made by :func:`fake_quantize`; :func:`tfprune.strip` removes it like any MaskedLayer.

    Example:
        >>> layer = FakeQuantMaskedLayer(keras.layers.Dense(4), activations=True)
        >>> y = layer(np.ones((2, 3), "float32"), training=True)  # sets layer.output_range
    """

    def __init__(self, layer, masked_weights=None, activations=True, quantize_inputs=False, **kwargs):
        super().__init__(layer, masked_weights=masked_weights, **kwargs)
        self.activations = bool(activations)
        self.quantize_inputs = bool(quantize_inputs) and self.activations
        self.input_range = self.output_range = None
        if self.built:
            self._create_ranges()

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.output_range is None:
            self._create_ranges()

    def _create_ranges(self):
        if not self.activations:
            return
        if self.quantize_inputs:
            self.input_range = self.add_weight(name="input_range", shape=(2,), initializer="zeros", trainable=False)
        self.output_range = self.add_weight(name="output_range", shape=(2,), initializer="zeros", trainable=False)

    def substitutes(self):
        return [(v, fake_quant_int8(value)) for v, value in super().substitutes()]

    def call(self, inputs, *args, training=None, **kwargs):
        if self.input_range is not None:
            inputs = _tracked_fake_quant(inputs, self.input_range, training)
        outputs = super().call(inputs, *args, training=training, **kwargs)
        if self.output_range is None:
            return outputs
        return _tracked_fake_quant(outputs, self.output_range, training)

    def get_config(self):
        return {**super().get_config(), "activations": self.activations, "quantize_inputs": self.quantize_inputs}


def _tracked_fake_quant(x, range_variable, training):
    """``x`` fake-quantized over ``range_variable``, which a training call first updates."""
    value = ops.convert_to_tensor(range_variable)
    if training:
        batch = ops.stack([ops.minimum(ops.min(x), 0.0), ops.maximum(ops.max(x), 0.0)])
        averaged = ACTIVATION_EMA_DECAY * value + (1.0 - ACTIVATION_EMA_DECAY) * batch
        value = ops.stop_gradient(ops.where(_untracked(value), batch, averaged))
        range_variable.assign(value)
    return ops.cond(_untracked(value), lambda: x, lambda: fake_quant_activation(x, value))


def _untracked(value):
    return ops.logical_and(ops.equal(value[0], 0.0), ops.equal(value[1], 0.0))


def _first_masked(model):
    """Ids of the MaskedLayers of a graph model that no MaskedLayer precedes (they read the model's
    inputs, possibly through layers without weights), checked to take one tensor and give one."""
    graph = _compat.sequential_graph(model) if isinstance(model, keras.Sequential) else model
    by_depth = _compat.nodes_by_depth(graph)
    after_masked, first = set(), set()
    for node in (n for depth in sorted(by_depth, reverse=True) for n in by_depth[depth]):
        op = node.operation
        behind = any(id(parent) in after_masked for parent in node.parent_nodes)
        if isinstance(op, MaskedLayer):
            if len(node.input_tensors) != 1 or len(node.outputs) != 1:
                raise ValueError(f"activations=True fake-quantizes one input and one output tensor per masked layer; "
                                 f"layer {op.name!r} takes {len(node.input_tensors)} and gives {len(node.outputs)}: "
                                 "pass activations=False to fake-quantize only the weights")
            first |= set() if behind else {id(op)}
        elif isinstance(op, keras.Model) and walk.is_graph_model(op):
            inner = _first_masked(op)
            first |= set() if behind else inner
            behind = behind or is_wrapped(op)
        if behind or isinstance(op, MaskedLayer):
            after_masked.add(id(node))
    return first


def fake_quantize(model, activations=True):
    """A copy of a wrapped (pruned) model that trains as its full-integer int8 TFLite file will run.

    Pruning-preserving quantization-aware training: each :class:`MaskedLayer` becomes a
    :class:`FakeQuantMaskedLayer` around the same layer, with the same masks; the layers' weights
    are shared with ``model``. Weights are fake-quantized to symmetric int8 per output channel
    (masked weights stay exactly zero); with ``activations=True`` the output of every masked layer,
    and the input of the masked layers that read the model's inputs, are fake-quantized to
    per-tensor asymmetric int8 over ranges tracked during training. Fine-tune it, then
    :func:`tfprune.strip` it (a float model) and export with ``export.tflite(..., quantize="int8",
    representative_data=...)``: every masked weight is zero in the int8 file, whose converter
    calibrates the activation ranges again on ``representative_data``.

    Args:
        model: A wrapped Keras 3 graph model (:func:`tfprune.wrap`, :func:`tfprune.prune_at_init`).
        activations: Fake-quantize activations too (default), or only the weights (``False``).

    Returns:
        The new model (compile it before ``fit``).

    Raises:
        ValueError: before anything is made, if ``model`` holds no MaskedLayer (not wrapped: nothing
            would keep the zeros), is subclassed, or, with ``activations=True``, has a masked layer
            that takes or gives several tensors (``MultiHeadAttention``).

    Warns:
        UserWarning: if no mask zeros a weight (wrapped, not pruned): the copy is made, and trains
            as plain QAT.

    Example:
        >>> qat = tfprune.fake_quantize(pruned)
        >>> qat.compile("adam", "sparse_categorical_crossentropy"); qat.fit(x, y, epochs=2)
        >>> export.tflite(tfprune.strip(qat), "m.tflite", quantize="int8", representative_data=x[:300])
    """
    if not is_wrapped(model):
        raise ValueError(f"model {model.name!r} holds no tfprune MaskedLayer: wrap and prune it first "
                         "(tfprune.wrap, tfprune.prune_at_init); fake_quantize keeps the masks it finds")
    if not walk.is_graph_model(model):
        raise ValueError(f"fake_quantize rebuilds graph models (functional, Sequential); {model.name!r} is subclassed")
    first = _first_masked(model) if activations else set()
    if all(bool(np.all(t.mask.numpy())) for t in prunable_weights(model)):
        warnings.warn(f"fake_quantize: no mask of {model.name!r} zeros a weight (wrapped, not pruned): this is plain "
                      "quantization-aware training; prune first to keep zeros", UserWarning, stacklevel=2)

    def replace(layer):
        if not isinstance(layer, MaskedLayer) or isinstance(layer, FakeQuantMaskedLayer):
            return layer
        copy = FakeQuantMaskedLayer(layer.layer, masked_weights=layer.masked_weights, activations=activations,
                                    quantize_inputs=id(layer) in first, name=layer.name)
        for mask, value in zip(copy.masks, layer.masks):
            mask.assign(value)
        return copy

    return rebuild(model, replace)
