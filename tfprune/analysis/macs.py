"""Multiply-accumulates (MACs) of weight layers, from one symbolic pass of the model.

Counted for one example (batch 1) and only for multiplications by weights — ``Dense``,
``EinsumDense``, convolutions, RNN cells — plus the two activation matmuls of attention layers
(most pruning papers call these counts "FLOPs"). Bias additions, normalisation, activations,
pooling, merges and embedding look-ups count zero. Each layer type's formula is in its spec
(:mod:`tfprune.layer_specs`; the formulas themselves in :mod:`tfprune.mac_formulas`).

Shapes come from tracing the model once symbolically on one example — nothing is computed and no
state changes — so a layer called several times counts every call.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import numbers

import keras
from tfprune import _compat
from tfprune.analysis import inputs as example_inputs
from tfprune.analysis.inputs import UnknownShapeError
from tfprune.layers import quantized, specs as layer_specs
from tfprune.base import walk
from tfprune.layers.masked import MaskedLayer
from tfprune.layers.mac_formulas import no_macs, size

__all__ = ["UnknownShapeError", "size", "owners", "uncounted", "trace_calls", "kernel_macs"]


def _counted_inside(layer):
    """The layers inside ``layer`` with weights, for a layer whose spec counts its sub-layers."""
    return [sub for sub in walk.leaves(layer)[1:] if walk.own_variables(sub)]


def _formula(spec):
    return None if spec is None else spec.macs


def owners(model):
    """``(layer, variables)`` for every layer with weights and every layer whose own formula
    counts MACs without weights of its own (attention), in model order.

    A layer whose spec counts its sub-layers (an RNN) owns their weights; a :class:`MaskedLayer`'s
    masks are not weights (the layer inside it is listed instead).
    """
    absorbed = set()
    found = []
    for layer in walk.leaves(model):
        if id(layer) in absorbed or isinstance(layer, MaskedLayer):
            continue
        spec = layer_specs.spec_of(layer)
        variables = walk.own_variables(layer)
        if spec is not None and spec.counts_sublayers:
            inside = walk.leaves(layer)[1:]
            absorbed.update(id(sub) for sub in inside)
            variables = variables + [v for sub in inside for v in walk.own_variables(sub)]
        if variables or _formula(spec) not in (None, no_macs):
            found.append((layer, variables))
    return found


def _counts(layer):
    """Whether the MACs of ``layer`` are counted (zero by definition counts)."""
    spec = layer_specs.spec_of(layer)
    if spec is not None and spec.counts_sublayers:
        return all(_counts(sub) for sub in _counted_inside(layer))
    return _formula(spec) is not None


def uncounted(layer_owners):
    """The layers of ``layer_owners`` (from :func:`owners`) whose MACs are not counted: their
    types have no MAC formula (register one with :func:`tfprune.register_layer`)."""
    return [layer for layer, _ in layer_owners if not _counts(layer)]


def _parts(layer, call):
    """``[(kernel or None, MACs)]`` of one call of ``layer`` by its spec's formula."""
    spec = layer_specs.spec_of(layer)
    if spec.counts_sublayers:
        return [part for sub in _counted_inside(layer) for part in _parts(sub, call)]
    parts = spec.macs(layer, call)
    if isinstance(parts, numbers.Integral) and not isinstance(parts, bool):
        return [(_only_kernel(layer), parts)]
    if not isinstance(parts, (list, tuple)) or not all(isinstance(p, tuple) and len(p) == 2 for p in parts):
        raise TypeError(
            f"the MAC formula of {type(layer).__name__} returned {parts!r} for layer {layer.name!r}: a formula "
            "returns [(variable or None, MACs)] or one integer"
        )
    return parts


def _only_kernel(layer):
    kernels = [v for v, kind in layer_specs.prunable(layer) if kind not in ("bias", "norm")]
    if len(kernels) != 1:
        raise TypeError(
            f"the MAC formula of {type(layer).__name__} returned one integer for layer {layer.name!r}, which has "
            f"{len(kernels)} prunable kernels: return [(variable, MACs)] for each kernel instead"
        )
    return kernels[0]


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
    if not _counts(layer):
        return []
    totals = {}
    for call in calls:
        _check_known(layer, call)
        for kernel, macs in _parts(layer, call):
            totals[id(kernel)] = (kernel, totals.get(id(kernel), (kernel, 0))[1] + int(macs))
    return list(totals.values())


def _trace(model, layers, example):
    """The calls of each of ``layers``, ``{id(layer): [_Call]}``, as ``model`` runs symbolically
    on ``example`` (nothing is computed, no state changes)."""
    calls = {id(layer): [] for layer in layers}
    counter = itertools.count()
    for layer in layers:  # an instance attribute, past Keras's attribute tracking
        method = _called(layer)
        recording = _recording(getattr(layer, method), inspect.signature(layer.call), calls[id(layer)], counter)
        object.__setattr__(layer, method, recording)
    try:
        _compat.compute_output_spec(lambda x: model(x, training=False), example)
    finally:
        for layer in layers:
            object.__delattr__(layer, _called(layer))
    return calls


def _called(layer):
    """The method Keras runs for ``layer``: ``quantized_call`` once ``model.quantize`` quantized it."""
    return "call" if quantized.mode_of(layer) is None else "quantized_call"


def _recording(call, signature, sink, counter):
    """``call``, recording the shapes of its arguments (named by ``signature``, that of the layer's
    ``call``: ``quantized_call`` takes ``*args``) and of its first output in ``sink``."""
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


def trace_calls(model, layers, input_shape=None):
    """The calls of each of ``layers`` as ``model`` runs symbolically on one example.

    Args:
        model: A built model.
        layers: The layers whose calls to record (e.g. the first items of :func:`owners`).
        input_shape: Shape of one example without the batch dimension (one per input: a dict by
            input name or a list; :mod:`tfprune.analysis.inputs`); default the model's recorded
            input shapes.

    Returns:
        ``{id(layer): [call, ...]}``; each call has ``index`` (call order), ``inputs`` (shapes by
        argument name), ``input`` and ``output`` shapes.

    Raises:
        UnknownShapeError: if the example's shape cannot be found and ``input_shape`` is not given.
    """
    return _trace(model, layers, example_inputs.symbolic(model, input_shape))
