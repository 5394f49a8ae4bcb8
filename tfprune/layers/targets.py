"""The prunable weights of a model: one :class:`Target` per weight tensor."""

from __future__ import annotations

import dataclasses
import warnings

import keras
from keras import ops

from tfprune.layers import kinds, quantized, specs as layer_specs, policies
from tfprune.base import arguments, walk
from tfprune.layers.masked import MaskedLayer, SubstitutingWrapper

__all__ = ["Target", "prunable_weights", "is_wrapped", "unpruned_layers", "describe_unpruned", "warn_unpruned"]


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """One prunable weight tensor.

    Attributes:
        layer: The layer that owns ``variable`` (e.g. the ``Dense`` inside a wrapper or inside a
            ``MultiHeadAttention``).
        variable: The weight variable; for a wrapped model it holds the dense, unmasked values.
        kind: What the weight is, one of :data:`tfprune.layers.kinds.KINDS`.
        unit: The layer that :func:`tfprune.wrap` wraps as a whole (``layer`` itself for plain
            layers, the enclosing layer for weights of composite layers).
        wrapper: The :class:`MaskedLayer` around ``unit`` in a wrapped model, else ``None``.
    """

    layer: keras.layers.Layer
    variable: keras.Variable
    kind: str
    unit: keras.layers.Layer
    wrapper: MaskedLayer | None = None

    @property
    def name(self):
        """The variable's path, e.g. ``"conv2d/kernel"``."""
        return self.variable.path

    @property
    def shape(self):
        """The weight's shape in the float layer (a Keras-quantized int4 kernel unpacked)."""
        return quantized.shape_of(self.layer, self.variable)

    @property
    def size(self):
        """Number of entries."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def reduction_axis(self):
        """The axis the layer sums over (its input axis), non-negative, or ``None``.

        0 for a ``Dense`` kernel, the input-channel axis of a convolution kernel; ``None`` for
        biases, normalisation parameters, depthwise kernels and weights of kind ``"custom"``
        (see :class:`tfprune.layers.specs.WeightSpec`).
        """
        return _axes(self)[0]

    @property
    def unit_axis(self):
        """The axis of the layer's units (its output axis), non-negative, or ``None``."""
        return _axes(self)[1]

    @property
    def mask(self):
        """The mask variable in a wrapped model, else ``None``."""
        return None if self.wrapper is None else self.wrapper.mask_of(self.variable)

    @property
    def value(self):
        """The weight as the forward pass sees it: ``variable * mask`` when masked."""
        mask = self.mask
        return self.variable.value if mask is None else ops.multiply(self.variable.value, mask.value)


def _axes(target):
    """``(reduction axis, unit axis)`` of a target by its layer's spec, non-negative or ``None``."""
    spec = layer_specs.weight_spec(target.layer, target.variable)
    return (None, None) if spec is None else spec.axes(len(target.shape))


def is_wrapped(model):
    """True if any layer of ``model`` is a :class:`MaskedLayer`."""
    return any(isinstance(unit, MaskedLayer) for unit, _ in walk.units(model))


def prunable_weights(model, policy=None, include_bias=False, include_norm=False):
    """Lists the prunable weights of a Keras 3 model.

    Works for Sequential, functional, nested and subclassed models. For a wrapped model (see
    :func:`tfprune.wrap`) it lists exactly the masked weights, in the same order that
    :func:`tfprune.get_masks` and :func:`tfprune.apply_masks` use.

    Args:
        model: A built Keras 3 model.
        policy: Which layers to prune: ``None`` (all supported), ``"skip_first_last"``, a
            :class:`tfprune.policies.Policy` or a callable ``(layers, model) -> layers``. On a
            wrapped model it chooses among the masked layers (whose masks it lists).
        include_bias: Also list biases (kind ``"bias"``).
        include_norm: Also list γ and β of normalisation layers (kind ``"norm"``).

    Returns:
        A list of :class:`Target` in model order.

    Raises:
        ArgumentError: if ``model`` is not a Keras 3 model, or a flag is not a bool.
        ValueError: if the model is unbuilt, has no prunable weights, or the policy names a layer
            type or name the model does not have.

    Example:
        >>> targets = tfprune.prunable_weights(model, policy="skip_first_last")
        >>> [(t.layer.name, t.kind, t.shape) for t in targets]
    """
    arguments.keras_model(model)
    walk.check_built(model)
    include_bias = arguments.flag("include_bias", include_bias)
    include_norm = arguments.flag("include_norm", include_norm)
    if is_wrapped(model):
        if include_bias or include_norm:
            raise ValueError(
                f"model {model.name!r} is already wrapped: its prunable weights are the masked "
                "ones; include_bias and include_norm apply when wrapping"
            )
        found = [
            Target(leaf, variable, kind, unit.layer, unit)
            for unit, _ in walk.units(model)
            if isinstance(unit, MaskedLayer)
            for leaf, variable, kind in _masked_candidates(unit)
        ]
        return found if policy is None else _selected(model, found, policy)
    found = [
        Target(leaf, variable, kind, unit)
        for unit, _ in walk.units(model)
        for leaf, variable, kind in kinds.candidate_weights(unit, include_bias, include_norm)
    ]
    return _selected(model, found, policy)


def _selected(model, found, policy):
    """The targets among ``found`` whose layers ``policy`` chooses; raises if there are none."""
    layers = list({id(t.layer): t.layer for t in found}.values())
    chosen = {id(layer) for layer in policies.get(policy)(layers, model)}
    targets = [t for t in found if id(t.layer) in chosen]
    if not targets:
        names = [u.name for u, _ in walk.units(model)]
        reason = "the policy selected none of them" if found else "none of its layers has a supported weight"
        raise ValueError(
            f"model {model.name!r} has no prunable weights ({reason}); layers: {names}. "
            f"Supported kinds: {', '.join(kinds.KINDS)}"
        )
    return targets


def unpruned_layers(model):
    """The layers of ``model`` with trainable weights of their own that tfprune does not know.

    Their type has no spec (:func:`tfprune.register_layer`) and they have no ``prunable_weights()``
    method, so none of their weights is pruned. tfprune's own wrappers are left out.
    """
    return [
        leaf
        for unit, _ in walk.units(model)
        for leaf in walk.leaves(unit)
        if not isinstance(leaf, SubstitutingWrapper)
        and any(v.trainable for v in walk.own_variables(leaf))
        and not layer_specs.is_known(leaf)
    ]


def describe_unpruned(layers):
    """A sentence naming ``layers`` (from :func:`unpruned_layers`) and saying how to opt them in."""
    names = ", ".join(
        f"{layer.name} ({type(layer).__name__}: {[v.name for v in walk.own_variables(layer) if v.trainable]})"
        for layer in layers
    )
    first = layers[0]
    weight = next(v.name for v in walk.own_variables(first) if v.trainable)
    return (
        f"the weights of these layers are not pruned, because tfprune does not know their types: {names}. "
        f"To prune them, register the type, e.g. tfprune.register_layer({type(first).__name__}, "
        f"weights={{{weight!r}: 'dense'}}), "
        "or give the layer a prunable_weights() method that returns the variables to prune"
    )


def warn_unpruned(model, stacklevel=3):
    """Warns (``UserWarning``) naming the layers of :func:`unpruned_layers`, if there are any."""
    layers = unpruned_layers(model)
    if layers:
        text = describe_unpruned(layers)
        warnings.warn(text[0].upper() + text[1:], UserWarning, stacklevel=stacklevel)


def _masked_candidates(wrapper):
    """``(leaf, variable, kind)`` for the masked weights of a wrapper, in mask order."""
    everything = kinds.candidate_weights(wrapper.layer, include_bias=True, include_norm=True)
    by_variable = {id(v): (leaf, v, kind) for leaf, v, kind in everything}
    out = []
    for variable, _ in wrapper.masked_variables:
        leaf, _, kind = by_variable.get(id(variable), (_owner(wrapper.layer, variable), variable, "other"))
        out.append((leaf, variable, kind))
    return out


def _owner(unit, variable):
    for leaf in walk.leaves(unit):
        if any(v is variable for v in walk.own_variables(leaf)):
            return leaf
    return unit
