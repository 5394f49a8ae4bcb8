"""A ``Dense`` or ``EinsumDense`` kernel seen as the matrix ``W`` (outputs × inputs) of both papers.

Wanda and SparseGPT work on a linear layer ``y = W x``: ``W`` has one row per output and one
column per input feature. A ``Dense`` kernel ``(in, out)`` is ``Wᵀ``. An ``EinsumDense`` kernel
has one or more *summed* axes (indices in the input and the kernel but not in the output: the
input features, flattened in the kernel's order) and *output* axes (the others); the attention
projections of KerasHub models (``"abc,cde->abde"``, ``"bquh,uhm->bqm"``) are such layers. The
innermost summed axis is the kernel's reduction axis (as for :mod:`tfprune.patterns`), so N:M
groups of consecutive columns of ``W`` are groups along that axis.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.base import views

__all__ = ["Linear", "is_linear"]


def is_linear(target):
    """Whether a :class:`tfprune.Target` is the kernel of a ``Dense`` or ``EinsumDense`` layer."""
    return isinstance(target.layer, (keras.layers.Dense, keras.layers.EinsumDense)) and target.variable.name == "kernel"


class Linear:
    """The kernel of one ``Dense``/``EinsumDense`` layer as a matrix, read and written in float64.

    Args:
        target: A :class:`tfprune.Target` for which :func:`is_linear` holds; in a wrapped model
            its mask is read (the matrix is ``kernel * mask``) and written with the new mask.

    Raises:
        ValueError: for a quantized layer, or an ``EinsumDense`` whose kernel shares an index with
            both its input and its output (a batch of matrices, not one).

    Example:
        >>> linear = Linear(target)            # a Dense(3) on 4 inputs
        >>> linear.matrix().shape, linear.width
        ((3, 4), 4)
    """

    def __init__(self, target):
        self.target = target
        self.layer = target.layer
        if getattr(self.layer, "quantization_mode", None):
            raise ValueError(f"layer {self.layer.name!r} is quantized ({self.layer.quantization_mode}): prune the "
                             "float model first, then quantize it")
        shape = target.shape
        if isinstance(self.layer, keras.layers.EinsumDense):
            self._in_axes, self._out_axes, self._input_axes = _einsum_axes(self.layer)
        else:
            self._in_axes, self._out_axes, self._input_axes = [0], [1], [-1]
        self._order = self._in_axes + self._out_axes
        self.width = int(np.prod([shape[a] for a in self._in_axes]))
        """The number of input features: the columns of ``W``."""
        self.group_width = shape[self._in_axes[-1]]
        """The length of the innermost summed axis: N:M groups must not cross it."""
        self.rows = int(np.prod([shape[a] for a in self._out_axes]))

    @property
    def name(self):
        return self.target.name

    def features(self, inputs):
        """The layer's input as ``X``, one row per token and one column per input feature (float64).

        Args:
            inputs: The tensor the layer was called on.
        """
        x = keras.ops.convert_to_numpy(inputs).astype(np.float64)
        summed = [a % x.ndim for a in self._input_axes]
        others = [a for a in range(x.ndim) if a not in summed]
        return np.transpose(x, others + summed).reshape(-1, self.width)

    def matrix(self):
        """``W`` (rows × width, float64) as the forward pass sees it (masked in a wrapped model)."""
        kernel = views.view(self.target.variable).astype(np.float64)
        if self.target.mask is not None:
            kernel = kernel * views.view(self.target.mask)
        return np.transpose(kernel, self._order).reshape(self.width, self.rows).T

    def write(self, matrix, keep):
        """Assigns ``matrix`` (rows × width) to the kernel, and ``keep`` to the mask of a wrapped model."""
        self.target.variable.assign(self._to_kernel(matrix).astype(self.target.variable.dtype))
        if self.target.mask is not None:
            self.target.mask.assign(self._to_kernel(keep).astype(self.target.mask.dtype))

    def _to_kernel(self, matrix):
        shape = self.target.shape
        grouped = np.asarray(matrix).T.reshape([shape[a] for a in self._order])
        return np.transpose(grouped, np.argsort(self._order))


def _einsum_axes(layer):
    """``(kernel summed axes, kernel output axes, input summed axes)`` of an ``EinsumDense``'s equation;
    summed axes in the kernel's order, input axes negative where the input spec has an ellipsis."""
    inputs, rest = layer.equation.replace(" ", "").split(",")
    kernel, output = rest.split("->")
    shared = [c for c in kernel if c in inputs and c in output]
    summed = [c for c in kernel if c in inputs and c not in output]
    if shared or not summed:
        problem = f"its kernel shares {''.join(shared)!r} with input and output" if shared else "it sums no input axis"
        raise ValueError(f"EinsumDense layer {layer.name!r} ({layer.equation!r}) is not one matrix product: {problem}; "
                         "leave it out with policy=tfprune.policies.ExcludeLayers(names=[...])")
    if "..." in inputs:
        before, after = inputs.split("...")
        position = {c: i for i, c in enumerate(before)} | {c: i - len(after) for i, c in enumerate(after)}
    else:
        position = {c: i for i, c in enumerate(inputs)}
    return ([kernel.index(c) for c in summed], [i for i, c in enumerate(kernel) if c not in summed],
            [position[c] for c in summed])
