"""Layers quantized by Keras' own ``model.quantize(mode)``: their weights as the float layer's.

A quantized ``Dense``, ``EinsumDense`` or ``Embedding`` stores its kernel as integer codes (int8;
int4 packed two to a byte) next to scales, zero points and group indices, or, for ``float8``,
keeps a float kernel that it rounds to float8 in every call, next to scales and amax histories;
``gptq`` and ``awq`` store unsigned codes transposed, ``(outputs, inputs)``, with a zero point per
output and group (``awq`` also its per-input ``awq_scales``).
:func:`tfprune.profile` and :func:`tfprune.report` count such a layer as the float layer it came
from: the kernel in its float shape, non-zero where its dequantized value is non-zero (read here),
and the quantization state (:func:`is_state`) is not counted as parameters. MACs are the float
layer's (:mod:`tfprune.layers.mac_formulas` reads shapes through :func:`shape_of`).
"""

from __future__ import annotations

import math

import keras
import numpy as np

__all__ = ["COUNTED_MODES", "mode_of", "is_state", "shape_of", "dequantized_zero", "nonzero", "size_of"]

COUNTED_MODES = ("int8", "int4", "float8", "gptq", "awq")
_TRANSPOSED = ("gptq", "awq")  # modes whose kernel codes are (outputs, inputs)
_WEIGHTS = ("kernel", "embeddings")  # the weight Keras quantizes, by layer type
_FLOAT = ("bias",)  # weights a quantized layer keeps in float


def mode_of(layer):
    """The Keras quantization mode of ``layer`` (``"int8"``, ``"int4"``, …), or ``None``."""
    return getattr(layer, "quantization_mode", None)


def _check_counted(layer):
    mode = mode_of(layer)
    if mode is not None and mode not in COUNTED_MODES:
        raise ValueError(f"layer {layer.name!r} is quantized with mode {mode!r}; tfprune counts the weights of "
                         f"modes {COUNTED_MODES} only")
    return mode


def is_state(layer, variable):
    """Whether ``variable`` of a quantized ``layer`` is quantization state (a scale, zero point, group
    index or amax history, or the codes a gptq/awq layer outside the calibrated blocks leaves
    unused beside its float kernel), not a parameter of the float layer."""
    return mode_of(layer) is not None and (variable.name not in _WEIGHTS + _FLOAT or _unused_codes(layer, variable))


def _uncalibrated(layer):
    """A gptq/awq layer that calibration did not reach: it computes with its float kernel."""
    mode = mode_of(layer)
    return mode in _TRANSPOSED and not getattr(layer, f"is_{mode}_calibrated")


def _unused_codes(layer, variable):
    return _uncalibrated(layer) and variable is getattr(layer, "quantized_kernel", None)


def _is_quantized_weight(layer, variable):
    return mode_of(layer) in ("int8", "int4", *_TRANSPOSED) and variable.name in _WEIGHTS


def _float_kernel_shape(layer):
    """The float kernel shape of a ``gptq``/``awq`` layer (``EinsumDense`` keeps its rank)."""
    return tuple(getattr(layer, "original_kernel_shape", None) or layer.kernel_shape)


def shape_of(layer, variable):
    """The shape of ``variable`` in the float layer: an int4 kernel's unpacked shape, a gptq/awq
    kernel's float shape, else its own."""
    if mode_of(layer) in _TRANSPOSED and variable.name == "kernel":
        return _float_kernel_shape(layer)
    if _is_quantized_weight(layer, variable):
        return tuple(getattr(layer, variable.name).shape)  # Keras' property unpacks int4
    return tuple(variable.shape)


def size_of(layer, variable):
    """Number of entries of ``variable`` in the float layer."""
    return math.prod(shape_of(layer, variable))


def dequantized_zero(layer, variable):
    """A boolean array, in the float shape, true where the weight the layer computes with is zero.

    int8 and per-channel int4 codes are symmetric: zero where the code is 0. Grouped int4 codes
    have a zero point per group (``g_idx`` maps the grouped axis, the input axis of a kernel and the
    output axis of an embedding table, to groups): zero where the code equals it. float8 rounds the
    scaled float kernel to ``float8_e4m3fn`` in every call: zero where that rounding gives 0.
    gptq and awq codes ``(outputs, inputs)`` have a zero point per output and input group: zero
    where the code equals it (awq's division by ``awq_scales`` keeps a zero zero).
    A weight that is not quantized: zero where it is 0.

    Raises:
        ValueError: for a mode other than :data:`COUNTED_MODES`.
    """
    mode = _check_counted(layer)
    if mode == "float8" and variable.name in _WEIGHTS:
        scale = getattr(layer, f"{variable.name}_scale")
        rounded = keras.quantizers.quantize_and_dequantize(variable, scale, "float8_e4m3fn", "float32")
        return keras.ops.convert_to_numpy(rounded) == 0
    if not _is_quantized_weight(layer, variable):
        return keras.ops.convert_to_numpy(variable) == 0
    if _uncalibrated(layer):
        return keras.ops.convert_to_numpy(layer.kernel) == 0
    codes = keras.ops.convert_to_numpy(getattr(layer, variable.name)).astype(np.int32)
    if mode in _TRANSPOSED:
        points = np.take(keras.ops.convert_to_numpy(layer.kernel_zero).astype(np.int32),
                         keras.ops.convert_to_numpy(layer.g_idx).astype(np.int64), axis=1)
        return (codes == points).T.reshape(_float_kernel_shape(layer))
    zero = getattr(layer, f"{variable.name}_zero", None)
    if zero is None:
        return codes == 0
    axis = -1 if variable.name == "embeddings" else 0
    points = np.take(keras.ops.convert_to_numpy(zero).astype(np.int32),
                     keras.ops.convert_to_numpy(layer.g_idx).astype(np.int64), axis=axis)
    if points.size != codes.size:
        raise ValueError(f"cannot match the int4 zero points {tuple(zero.shape)} of layer {layer.name!r} to its "
                         f"kernel {codes.shape}")
    return codes == points.reshape(codes.shape)


def nonzero(layer, variable):
    """Non-zero entries of ``variable`` as the layer computes with it (dequantized)."""
    return int(np.count_nonzero(~dequantized_zero(layer, variable)))
