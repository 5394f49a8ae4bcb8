"""Quantization of pruned models: Keras' own ``model.quantize`` checked for lost zeros
(:func:`quantize`), and pruning-preserving quantization-aware training (:func:`fake_quantize`).

Measured on Keras 3.15 (``docs/quantization.md``): ``int8`` and ``int4`` (per-group codes with
zero points) keep every zero of a stripped pruned model; ``float8`` rounds small weights to zero
(more zeros, none lost). :func:`quantize` says so when a mode loses zeros.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from tfprune.base import walk
from tfprune.layers import quantized
from tfprune.layers.masked import MaskedLayer
from tfprune.layers.targets import is_wrapped
from tfprune.layers.wrapping import rebuild

__all__ = ["KERAS_MODES", "LostZerosWarning", "quantize", "FakeQuantMaskedLayer", "fake_quantize", "fake_quant_int8"]

KERAS_MODES = ("int8", "int4", "float8", "gptq", "awq")


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
        mode: ``"int8"``, ``"int4"`` or ``"float8"`` (checked); ``"gptq"`` and ``"awq"`` are
            passed on unchecked, with a warning.
        **kwargs: Passed to ``model.quantize`` (``config``, ``filters``).

    Returns:
        The number of zeros lost (0 for a mode that keeps them), ``None`` when unchecked.

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
    checked = mode in quantized.COUNTED_MODES
    before = _zeros(model, dequantized=False) if checked else None
    model.quantize(mode, **kwargs)
    if not checked:
        warnings.warn(f"quantize: mode {mode!r} is not checked for lost zeros (tfprune reads modes "
                      f"{quantized.COUNTED_MODES})", UserWarning, stacklevel=2)
        return None
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


@keras.saving.register_keras_serializable(package="tfprune")
class FakeQuantMaskedLayer(MaskedLayer):
    """A :class:`MaskedLayer` whose forward pass uses ``fake_quant_int8(w * mask)``: training sees
    the int8 weights the file will hold, masked weights stay exactly zero, and gradients pass
    straight through the rounding. Made by :func:`fake_quantize`; :func:`tfprune.strip` removes it
    like any MaskedLayer."""

    def substitutes(self):
        return [(v, fake_quant_int8(value)) for v, value in super().substitutes()]


def fake_quantize(model):
    """A copy of a wrapped (pruned) model that trains with fake-quantized int8 weights.

    Pruning-preserving quantization-aware training: each :class:`MaskedLayer` becomes a
    :class:`FakeQuantMaskedLayer` around the same layer, with the same masks; the layers' weights
    are shared with ``model``. Fine-tune it, then :func:`tfprune.strip` it and export with
    ``export.tflite(..., quantize="int8", representative_data=...)``: every masked weight is zero in
    the int8 file. Activations are not fake-quantized (the converter calibrates them).

    Args:
        model: A wrapped Keras 3 graph model (:func:`tfprune.wrap`, :func:`tfprune.prune_at_init`).

    Returns:
        The new model (compile it before ``fit``).

    Raises:
        ValueError: if ``model`` holds no MaskedLayer (not wrapped: nothing would keep the zeros),
            before anything is made.

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

    def replace(layer):
        if not isinstance(layer, MaskedLayer) or isinstance(layer, FakeQuantMaskedLayer):
            return layer
        copy = FakeQuantMaskedLayer(layer.layer, masked_weights=layer.masked_weights, name=layer.name)
        for mask, value in zip(copy.masks, layer.masks):
            mask.assign(value)
        return copy

    return rebuild(model, replace)
