"""Keras' own quantization (``model.quantize``) of a pruned model, checked for lost zeros.

Measured on Keras 3.15 (``docs/quantization.md``): ``int8`` and ``int4`` (per-group codes with
zero points) keep every zero of a stripped pruned model; ``float8`` rounds small weights to zero
(more zeros, none lost). :func:`quantize` says so when a mode loses zeros.
"""

from __future__ import annotations

import warnings

import numpy as np

from tfprune.base import walk
from tfprune.layers import quantized
from tfprune.layers.targets import is_wrapped

__all__ = ["KERAS_MODES", "LostZerosWarning", "quantize"]

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
