"""The layer registry: everything tfprune knows about a layer type, in one spec per type.

A :class:`LayerSpec` says which weights of a layer type tfprune knows, what kind each is and its
reduction (input) and unit (output) axis, the config key of the layer's unit count, how its
multiply-accumulates are counted, and its role in the channel graph of structured pruning.
:mod:`tfprune.kinds`, :mod:`tfprune.macs`, :mod:`tfprune.structured.graph`,
:mod:`tfprune.structured.remove` and :mod:`tfprune.structured.criteria` read it; nothing else
keeps a table of layer types.

Specs are found along a layer's method resolution order: a subclass of ``Dense`` gets ``Dense``'s
spec unless its own type is registered.

A custom layer opts in either way:

* :func:`register_layer` registers its type (pruning, MACs, structured removal);
* a method ``prunable_weights()`` (TF-MOT's name ``get_prunable_weights()`` works too) returns the
  variables of the layer itself to prune; their kinds and axes come from the layer's spec where
  it names them, else the kind is ``"custom"`` with no known axes. The method decides *which*
  weights are pruned, also for a registered type; an empty list opts out.

A layer with trainable weights of its own that does neither is not pruned, and
:func:`tfprune.prune_at_init`, :func:`tfprune.report` and :func:`tfprune.profile` warn, naming it.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Mapping
from typing import Callable

import keras

from tfprune import _compat
from tfprune.base import walk
from tfprune.layers import mac_formulas as F

__all__ = [
    "KINDS", "ROLES", "WeightSpec", "LayerSpec", "register_layer", "spec_of", "weights_of", "weight_spec",
    "prunable", "is_known", "unit_kernel", "KIND_AXES",
]

KINDS = ("dense", "conv", "conv_transpose", "depthwise", "pointwise", "embedding", "rnn",
         "rnn_recurrent", "attention", "bias", "norm", "custom")
ROLES = ("producer", "pass-through", "merge", "concatenate", "flatten", "reshape", "recurrent", "attention")
SIDES = ("in", "mid", "out", "gates")
_OPTIONAL_KINDS = ("bias", "norm", None)  # weights a layer may be built without (use_bias=False, center=False)
_PROTOCOL = ("prunable_weights", "get_prunable_weights")

# (reduction axis, unit axis) of a weight given by its kind alone, as in register_layer(weights={"w": "dense"}).
KIND_AXES = {
    "dense": (0, -1), "conv": (-2, -1), "conv_transpose": (-1, -2), "depthwise": (None, None),
    "pointwise": (-2, -1), "embedding": (0, -1), "rnn": (0, -1), "rnn_recurrent": (0, -1),
    "attention": (0, -1), "bias": (None, -1), "norm": (None, -1), "custom": (None, None),
}


def _check_axis(name, axis):
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise TypeError(f"{name} must be an integer axis or None, got {axis!r}")


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """What one weight of a layer type is, and which of its axes are which.

    Attributes:
        kind: One of :data:`KINDS`; ``"bias"`` and ``"norm"`` weights are pruned only when asked
            (``include_bias``, ``include_norm``). ``None`` for a weight that is never pruned but
            is sliced with its channel by structured removal (batch-norm moving statistics).
        reduction_axis: The axis the layer sums over, its input axis: 0 of a ``Dense`` kernel,
            the input-channel axis -2 of a convolution kernel. ``None`` where there is none
            (biases, depthwise kernels).
        unit_axis: The axis of the layer's units, its output axis: -1 of a ``Dense`` or
            convolution kernel, -2 of a transposed convolution's, the axis of a bias.
        channel_axes: For structured removal, ``((axis, side), ...)``: which axis follows which
            channels, side ``"in"`` (those the layer reads), ``"out"`` (those it writes, or its
            units), ``"mid"`` (those a separable convolution's pointwise kernel reads after the
            depthwise step) or ``"gates"`` (a recurrent layer's units once per gate, gate-major:
            index ``g·units + u``). Default: the reduction axis follows ``"in"``, the unit axis ``"out"``.

    Raises:
        ValueError: for an unknown kind or side. TypeError: for an axis that is not an integer.

    Example:
        >>> WeightSpec("dense", reduction_axis=0, unit_axis=1)
    """

    kind: str | None
    reduction_axis: int | None = None
    unit_axis: int | None = None
    channel_axes: tuple | None = None

    def __post_init__(self):
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; known kinds: {', '.join(KINDS)} (or None: never pruned)")
        _check_axis("reduction_axis", self.reduction_axis)
        _check_axis("unit_axis", self.unit_axis)
        if self.channel_axes is None:
            pairs = ((self.reduction_axis, "in"), (self.unit_axis, "out"))
            object.__setattr__(self, "channel_axes", tuple((a, s) for a, s in pairs if a is not None))
        for pair in self.channel_axes:
            if not (isinstance(pair, tuple) and len(pair) == 2 and pair[1] in SIDES):
                raise ValueError(f"channel_axes must be (axis, side) pairs with side in {SIDES}, got {pair!r}")
            _check_axis("a channel axis", pair[0])

    def axes(self, rank):
        """``(reduction axis, unit axis)`` as non-negative axes of a weight of ``rank`` (or ``None``)."""
        return tuple(None if a is None else a % rank for a in (self.reduction_axis, self.unit_axis))


def _weight_spec(name, value):
    """A :class:`WeightSpec` from a kind name (with that kind's default axes) or a WeightSpec."""
    if isinstance(value, WeightSpec):
        return value
    if isinstance(value, str):
        if value not in KINDS:
            raise ValueError(f"weight {name!r}: unknown kind {value!r}; known kinds: {', '.join(KINDS)}")
        return WeightSpec(value, *KIND_AXES[value])
    raise TypeError(f"weight {name!r} must be given by a kind name or a WeightSpec, got {type(value).__name__}")


def _check_formula(macs):
    if macs is None:
        return
    if not callable(macs):
        raise ValueError(f"macs must be a function (layer, call) -> MACs, or None, got {type(macs).__name__}")
    try:
        inspect.signature(macs).bind(None, None)
    except TypeError:
        raise ValueError(
            f"macs must be a function of two arguments (layer, call) returning [(variable or None, MACs)] "
            f"or an integer, got {getattr(macs, '__name__', macs)!r} with signature {inspect.signature(macs)}"
        ) from None
    except ValueError:  # a builtin without a signature: accepted as it is
        pass


@dataclasses.dataclass(frozen=True, eq=False)
class LayerSpec:
    """Everything tfprune knows about a layer type.

    Attributes:
        weights: ``{weight name: WeightSpec or kind name}`` for the layer's own weights (those it
            creates with ``add_weight``), or a function ``layer -> {name: WeightSpec}`` when the
            axes depend on the layer's configuration (``EinsumDense``'s equation).
        unit_key: The config key of the number of units, e.g. ``"units"``, ``"filters"``.
        macs: The MAC formula ``(layer, call) -> [(variable or None, MACs)]`` (see
            :mod:`tfprune.mac_formulas`), :func:`tfprune.layers.mac_formulas.no_macs` for weights that
            do no MACs, ``None`` if not counted (:func:`tfprune.profile` warns).
        role: The layer's role in structured pruning's channel graph, one of :data:`ROLES`:
            ``"producer"`` makes new channels along its kernels' unit axis (its reduction axis
            reads channels); ``"pass-through"`` keeps channel ``i`` as channel ``i`` (its weights'
            channel axes follow ``"in"``/``"out"``); ``"merge"`` joins its inputs' channels,
            ``"concatenate"`` lays them side by side on the last axis; ``"flatten"`` and
            ``"reshape"`` as Keras' layers; ``"recurrent"`` makes units whose weights are sliced on
            every gate (``"gates"`` side); ``"attention"`` makes units inside the layer (heads) that
            its output does not carry, and reads and writes channels it does not prune.
            ``None``: the graph does not follow the layer.
        multiplier_key: The attribute of a channel multiplier (``"depth_multiplier"``): a
            pass-through repeats each input channel that many times, a producer reads its input
            so repeated through the ``"mid"`` side.
        axis_key: The attribute naming the axis a pass-through works on (``"axis"`` of batch
            normalisation); the graph follows it only when that is the last axis.
        kind_inside: The kind of the ``"dense"`` kernels of the layers inside this one
            (``"attention"`` for ``MultiHeadAttention``).
        groups_key: The attribute and config key of a grouped layer's number of groups
            (``"groups"`` of a convolution). The graph follows a grouped layer only with one input
            channel per group, as a per-channel pass-through whose channel count and groups shrink
            together.
        counts_sublayers: Whether the MACs of the layers inside it are counted with its call, and
            it is profiled as one layer with them (an ``RNN`` and its cells).
        inner_weights: ``layer -> [(variable, WeightSpec)]``: weights of the layers inside this one
            that structured removal slices with its units (a recurrent layer's cell, an attention
            layer's projections); their kinds only describe them, pruning reads the inner layers'
            own specs. ``unit_key`` of a ``"pass-through"`` layer names its channel count, if its
            config keeps one.

    Raises:
        ValueError: for an unknown kind or role, a bad MAC formula, or a producer without
            ``unit_key`` or without a kernel that has a unit axis.

    Example:
        >>> spec = LayerSpec({"w": WeightSpec("dense", 0, 1), "b": "bias"}, unit_key="units",
        ...                  macs=tfprune.layers.mac_formulas.per_input_position("w"), role="producer")
        >>> tfprune.register_layer(Linear, spec)
    """

    weights: Mapping | Callable = dataclasses.field(default_factory=dict)
    unit_key: str | None = None
    macs: Callable | None = None
    role: str | None = None
    multiplier_key: str | None = None
    axis_key: str | None = None
    kind_inside: str | None = None
    groups_key: str | None = None
    counts_sublayers: bool = False
    inner_weights: Callable | None = None

    def __post_init__(self):
        if not callable(self.weights):
            if not isinstance(self.weights, Mapping):
                raise TypeError(f"weights must be a dict {{weight name: kind}}, got {type(self.weights).__name__}")
            coerced = {name: _weight_spec(name, value) for name, value in self.weights.items()}
            object.__setattr__(self, "weights", types.MappingProxyType(coerced))
        for key in ("unit_key", "multiplier_key", "axis_key", "groups_key"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value):
                raise TypeError(f"{key} must be a non-empty string or None, got {value!r}")
        _check_formula(self.macs)
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; known roles: {', '.join(ROLES)} (or None)")
        if self.kind_inside is not None and self.kind_inside not in KINDS:
            raise ValueError(f"unknown kind_inside {self.kind_inside!r}; known kinds: {', '.join(KINDS)}")
        if self.inner_weights is not None and not callable(self.inner_weights):
            raise TypeError(
                f"inner_weights must be a function layer -> [(variable, WeightSpec)], got {self.inner_weights!r}"
            )
        if self.role in ("recurrent", "attention") and (self.unit_key is None or self.inner_weights is None):
            raise ValueError(f'role="{self.role}" needs unit_key and inner_weights, the weights its units slice')
        if self.role == "producer":
            if self.unit_key is None:
                raise ValueError('role="producer" needs unit_key, the config key of its number of units (e.g. "units")')
            if not callable(self.weights) and _unit_kernel_name(self.weights) is None:
                raise ValueError(
                    'role="producer" needs a kernel weight with a unit axis (e.g. weights={"kernel": "dense"})'
                )


def _unit_kernel_name(weights):
    return next((n for n, w in weights.items() if w.kind not in _OPTIONAL_KINDS and w.unit_axis is not None), None)


# ---------------------------------------------------------------- the registry

_SPECS: dict[type, LayerSpec] = {}


def register_layer(layer_type, spec=None, *, weights=None, unit_key=None, macs=None, role=None, replace=False):
    """Tells tfprune how to prune a layer type, count its MACs and remove its units.

    Args:
        layer_type: The layer class, or a built layer of it: then the weight names, axes and
            ``unit_key`` are checked against that layer now; for a class they are checked the
            first time tfprune meets a layer of the type (a ``ValueError`` then, before anything
            changes).
        spec: A :class:`LayerSpec`, instead of the keywords below.
        weights: ``{weight name: kind or WeightSpec}``: the layer's own weights tfprune knows. A
            kind name (one of :data:`KINDS`) takes that kind's usual axes (``"dense"``: reduction
            axis 0, unit axis -1; ``"conv"``: -2, -1; ``"bias"``: unit axis -1); a
            :class:`WeightSpec` sets them. Kernels are pruned; ``"bias"``/``"norm"`` weights only
            with ``include_bias``/``include_norm``.
        unit_key: The config key of the number of units (``"units"``); needed for a producer.
        macs: The MAC formula ``(layer, call) -> [(variable or None, MACs)]`` or an integer (the
            MACs of the layer's only kernel), e.g. ``tfprune.layers.mac_formulas.per_input_position("w")``;
            ``None``: not counted (:func:`tfprune.profile` warns).
        role: ``"producer"`` to let structured pruning remove its units (its other weights must
            all be named in ``weights``, with their axes), ``"pass-through"`` for per-channel
            layers, or another of :data:`ROLES`; ``None`` (default): structured pruning treats
            it as unsupported and keeps the channels it reads.
        replace: Replace a spec registered for exactly this type (built-in types included).

    Returns:
        The registered :class:`LayerSpec`.

    Raises:
        TypeError: if ``layer_type`` is not a Keras layer class or layer, or both ``spec`` and
            keywords are given.
        ValueError: for an unknown kind or role, a bad MAC formula, a type already registered
            (without ``replace``), and, for a built layer, a weight name it does not have, an
            axis out of range for the weight's rank, or a ``unit_key`` missing from its config.

    Example:
        >>> class Linear(keras.layers.Layer):  # y = x @ w + b
        ...     def __init__(self, units, **kwargs):
        ...         super().__init__(**kwargs); self.units = units
        ...     def build(self, shape):
        ...         self.w = self.add_weight(shape=(shape[-1], self.units))
        ...         self.b = self.add_weight(shape=(self.units,))
        ...     def call(self, x):
        ...         return x @ self.w + self.b
        >>> tfprune.register_layer(Linear, weights={"w": "dense", "b": "bias"}, unit_key="units",
        ...                        macs=tfprune.layers.mac_formulas.per_input_position("w"), role="producer")
    """
    layer = layer_type if isinstance(layer_type, keras.layers.Layer) else None
    cls = type(layer_type) if layer is not None else layer_type
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise TypeError(f"register_layer needs a Keras 3 layer class or layer, got {layer_type!r}")
    if spec is None:
        spec = LayerSpec({} if weights is None else weights, unit_key=unit_key, macs=macs, role=role)
    elif not isinstance(spec, LayerSpec):
        raise TypeError(f"spec must be a LayerSpec, got {type(spec).__name__}")
    elif any(x is not None for x in (weights, unit_key, macs, role)):
        raise TypeError("give either spec or the keywords weights, unit_key, macs and role, not both")
    if cls in _SPECS and not replace:
        raise ValueError(f"layer type {cls.__name__} is already registered: pass replace=True to replace its spec")
    if layer is not None and layer.built:
        _check_layer(layer, spec, _resolve(layer, spec))
        if spec.unit_key is not None and spec.unit_key not in layer.get_config():
            raise ValueError(
                f"unit_key {spec.unit_key!r} is not in the config of layer {layer.name!r} ({cls.__name__}); "
                f"its config keys: {sorted(layer.get_config())}"
            )
    _SPECS[cls] = spec
    return spec


def spec_of(layer):
    """The :class:`LayerSpec` of a layer or layer type (along its method resolution order), or ``None``."""
    cls = layer if isinstance(layer, type) else type(layer)
    return next((_SPECS[c] for c in cls.__mro__ if c in _SPECS), None)


def _resolve(layer, spec):
    return spec.weights(layer) if callable(spec.weights) else spec.weights


def _check_layer(layer, spec, weights):
    """Raises a ValueError if ``weights`` names a kernel ``layer`` lacks or an axis out of range."""
    own = {v.name: v for v in walk.own_variables(layer)}
    where = f"layer {layer.name!r} ({type(layer).__name__})"
    for name, w in weights.items():
        variable = own.get(name)
        if variable is None:
            if w.kind in _OPTIONAL_KINDS:
                continue
            raise ValueError(
                f"{where} has no weight {name!r}, which its spec names as a {w.kind!r} weight; its own "
                f"weights: {sorted(own)}. Fix the names given to tfprune.register_layer"
            )
        rank = len(variable.shape)
        axes = [("reduction_axis", w.reduction_axis), ("unit_axis", w.unit_axis)]
        axes += [("channel axis", a) for a, _ in w.channel_axes]
        for label, axis in axes:
            if axis is not None and not -rank <= axis < rank:
                raise ValueError(
                    f"{label} {axis} of weight {name!r} of {where} is out of range for its rank {rank} "
                    f"(shape {tuple(variable.shape)}): use an axis in [{-rank}, {rank - 1}]"
                )
        reduction, unit = w.axes(rank)
        if reduction is not None and reduction == unit:
            raise ValueError(f"weight {name!r} of {where}: reduction_axis and unit_axis are the same axis {reduction}")


def weights_of(layer):
    """``{weight name: WeightSpec}`` of ``layer`` by its spec (empty without one).

    Raises:
        ValueError: if the spec names a kernel the layer does not have, or an axis out of range.
    """
    spec = spec_of(layer)
    if spec is None:
        return {}
    weights = _resolve(layer, spec)
    _check_layer(layer, spec, weights)
    return weights


def weight_spec(layer, variable):
    """The :class:`WeightSpec` of ``variable``, one of ``layer``'s own weights, or ``None``."""
    return weights_of(layer).get(variable.name)


def unit_kernel(layer):
    """The name of the kernel whose unit axis indexes ``layer``'s units (a producer's), or ``None``."""
    return _unit_kernel_name(weights_of(layer))


def _protocol(layer):
    """The layer's ``prunable_weights`` (or ``get_prunable_weights``) method and its name, or ``None``."""
    for name in _PROTOCOL:
        if callable(getattr(type(layer), name, None)):
            return getattr(layer, name), name
    return None


def _listed(layer, method, name, own):
    """Ids of the variables ``method()`` lists, after checking they are ``layer``'s own."""
    listed = method()
    where = f"{type(layer).__name__}.{name}() of layer {layer.name!r}"
    if isinstance(listed, (str, bytes, Mapping)) or not hasattr(listed, "__iter__"):
        raise TypeError(f"{where} must return a list of the layer's variables, got {type(listed).__name__}")
    ids = {id(v) for v in own}
    chosen = set()
    for v in listed:
        if not isinstance(v, keras.Variable):
            raise TypeError(f"{where} must return the layer's variables, got a {type(v).__name__}")
        if id(v) not in ids:
            raise ValueError(
                f"{where} returned {v.path!r}, which is not one of the layer's own weights "
                f"{[o.name for o in own]}: return only weights the layer creates itself with add_weight "
                "(the layers inside it are pruned by their own types)"
            )
        chosen.add(id(v))
    return chosen


def prunable(layer):
    """``(variable, kind)`` for each of ``layer``'s own weights that may be pruned, in creation order.

    Biases (kind ``"bias"``) and normalisation parameters (``"norm"``) are included; callers
    choose whether to prune them. With a ``prunable_weights()`` method, exactly the weights it
    lists (kinds from the spec where it names them, else ``"custom"``).

    Raises:
        ValueError, TypeError: for a spec or a ``prunable_weights()`` that does not fit the layer.
    """
    own = walk.own_variables(layer)
    weights = weights_of(layer)
    protocol = _protocol(layer)
    if protocol is None:
        return [(v, weights[v.name].kind) for v in own if v.name in weights and weights[v.name].kind is not None]
    chosen = _listed(layer, *protocol, own)
    return [(v, getattr(weights.get(v.name), "kind", None) or "custom") for v in own if id(v) in chosen]


def is_known(layer):
    """Whether ``layer``'s type has a spec (its own or a base type's) or the layer lists its
    prunable weights itself."""
    return spec_of(layer) is not None or _protocol(layer) is not None


# ---------------------------------------------------------------- the Keras layers tfprune knows

L = keras.layers
_BIAS = WeightSpec("bias", unit_axis=-1)
_NORM = WeightSpec("norm", unit_axis=0)
_STATISTIC = WeightSpec(None, unit_axis=0)
_DEPTHWISE = WeightSpec("depthwise", channel_axes=((-2, "in"),))


def _einsum_weights(layer):
    """``EinsumDense``: the kernel's summed and output indices, from the equation (the last of
    several: the innermost of the flattened axes)."""
    input_spec, rest = layer.equation.split(",")
    kernel_spec, output_spec = rest.split("->")
    summed = [i for i, c in enumerate(kernel_spec) if c in input_spec and c not in output_spec]
    kept = [i for i, c in enumerate(kernel_spec) if c in output_spec]
    kernel = WeightSpec("dense", summed[-1] if summed else None, kept[-1] if kept else None, channel_axes=())
    return {"kernel": kernel, "bias": _BIAS}


def _gated_weights(layer):
    """A recurrent layer's cell weights: the input kernel reads ``"in"``, the recurrent kernel's rows
    are the units (``"out"``); their columns and the bias hold every gate's units (``"gates"``)."""
    own = {v.name: v for v in walk.own_variables(layer.cell)}
    return [(own[name], spec) for name, spec in _GATED.items() if name in own]


_GATED = {
    "kernel": WeightSpec("rnn", 0, 1, channel_axes=((0, "in"), (1, "gates"))),
    "recurrent_kernel": WeightSpec("rnn_recurrent", 0, 1, channel_axes=((0, "out"), (1, "gates"))),
    "bias": WeightSpec("bias", unit_axis=-1, channel_axes=((-1, "gates"),)),
}


def _head_weights(layer):
    """``MultiHeadAttention``'s projections: the query, key and value kernels ``(in, heads, dim)``
    and biases ``(heads, dim)`` and the output kernel ``(heads, dim, out)`` have a head axis; the
    output bias is kept whole."""
    projections = [(d, _HEAD_SLICED) for d in (layer.query_dense, layer.key_dense, layer.value_dense)]
    projections.append((layer.output_dense, _HEAD_MERGED))
    return [(v, specs[v.name]) for dense, specs in projections for v in walk.own_variables(dense)]


_HEAD_SLICED = {  # query, key, value: (in, heads, dim) and (heads, dim)
    "kernel": WeightSpec("attention", 0, 1, channel_axes=((1, "out"),)),
    "bias": WeightSpec("bias", unit_axis=0, channel_axes=((0, "out"),)),
}
_HEAD_MERGED = {  # output: (heads, dim, out) and (out,), kept whole
    "kernel": WeightSpec("attention", None, 0, channel_axes=((0, "out"),)),
    "bias": WeightSpec(None, channel_axes=()),
}


def _conv_weights(layer):
    """A convolution's kernel and bias; a grouped one (``groups > 1``) is followed only with one
    input channel per group, like a depthwise convolution: its kernel's channels are on the last axis."""
    kernel = WeightSpec("conv", -2, -1, channel_axes=((-1, "out"),) if layer.groups > 1 else None)
    return {"kernel": kernel, "bias": _BIAS}


def _layer_scale_weights(layer):
    """ConvNeXt's ``LayerScale``: its one per-channel scale (Keras names it ``variable``, ``variable_1``, …)."""
    return {v.name: _NORM for v in walk.own_variables(layer)}


def _register_all(classes, spec):
    for cls in classes:
        _SPECS[cls] = spec


_register_all([L.Dense], LayerSpec(
    {"kernel": WeightSpec("dense", 0, 1), "bias": _BIAS}, unit_key="units",
    macs=F.per_input_position("kernel"), role="producer",
))
_register_all([L.EinsumDense], LayerSpec(_einsum_weights, macs=F.einsum_dense))
_register_all([L.Conv1D, L.Conv2D, L.Conv3D], LayerSpec(
    _conv_weights, unit_key="filters", macs=F.per_output_position("kernel"), role="producer", groups_key="groups",
))
_register_all([L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose], LayerSpec(
    {"kernel": WeightSpec("conv_transpose", -1, -2), "bias": _BIAS}, unit_key="filters",
    macs=F.per_input_position("kernel"), role="producer",
))
_register_all([L.DepthwiseConv1D, L.DepthwiseConv2D], LayerSpec(
    {"kernel": _DEPTHWISE, "bias": _BIAS}, macs=F.per_output_position("kernel"), role="pass-through",
    multiplier_key="depth_multiplier",
))
_register_all([L.SeparableConv1D, L.SeparableConv2D], LayerSpec(
    {"depthwise_kernel": _DEPTHWISE,
     "pointwise_kernel": WeightSpec("pointwise", -2, -1, channel_axes=((-2, "mid"), (-1, "out"))),
     "bias": _BIAS},
    unit_key="filters", macs=F.per_output_position("depthwise_kernel", "pointwise_kernel"), role="producer",
    multiplier_key="depth_multiplier",
))
_register_all([L.Embedding], LayerSpec(  # a producer of its output dimensions; its token axis reads nothing
    {"embeddings": WeightSpec("embedding", 0, 1, channel_axes=((1, "out"),))}, unit_key="output_dim",
    macs=F.no_macs, role="producer",
))
_register_all([L.SimpleRNNCell, L.LSTMCell, L.GRUCell], LayerSpec(
    {"kernel": WeightSpec("rnn", 0, 1), "recurrent_kernel": WeightSpec("rnn_recurrent", 0, 1), "bias": _BIAS},
    macs=F.per_time_step("kernel", "recurrent_kernel"),
))
_register_all([L.RNN], LayerSpec(counts_sublayers=True))
_register_all([L.SimpleRNN, L.LSTM, L.GRU], LayerSpec(
    unit_key="units", role="recurrent", counts_sublayers=True, inner_weights=_gated_weights,
))
_register_all([L.MultiHeadAttention], LayerSpec(
    unit_key="num_heads", macs=F.multi_head_attention, role="attention", kind_inside="attention",
    inner_weights=_head_weights,
))
_register_all([L.GroupQueryAttention], LayerSpec(macs=F.grouped_query_attention))
_register_all([L.BatchNormalization], LayerSpec(
    {"gamma": _NORM, "beta": _NORM, "moving_mean": _STATISTIC, "moving_variance": _STATISTIC},
    macs=F.no_macs, role="pass-through", axis_key="axis",
))
_register_all([L.LayerNormalization], LayerSpec(
    {"gamma": _NORM, "beta": _NORM}, macs=F.no_macs, role="pass-through", axis_key="axis",
))
_register_all([L.GroupNormalization], LayerSpec({"gamma": _NORM, "beta": _NORM}, macs=F.no_macs))
# Weights that are not pruned and do no MACs: scales, statistics, slopes.
_register_all([L.RMSNormalization, L.Normalization, L.PReLU], LayerSpec(macs=F.no_macs))
# Attention's optional scale: not pruned; its matmuls are not counted (profile warns).
_register_all([L.Attention], LayerSpec())
# Weightless layers that structured pruning follows.
_register_all([
    L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Softmax, L.Identity, L.ActivityRegularization,
    L.Dropout, L.AlphaDropout, L.GaussianDropout, L.GaussianNoise,
    L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
    L.AveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.AdaptiveMaxPooling1D, L.AdaptiveMaxPooling2D, L.AdaptiveMaxPooling3D,
    L.AdaptiveAveragePooling1D, L.AdaptiveAveragePooling2D, L.AdaptiveAveragePooling3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
], LayerSpec(role="pass-through"))
_register_all([_compat.convnext_layer_scale()], LayerSpec(
    _layer_scale_weights, unit_key="projection_dim", macs=F.no_macs, role="pass-through",
))
_register_all([L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average], LayerSpec(role="merge"))
# Operation nodes (keras.ops calls and operators on Keras tensors) that act entry by entry.
_register_all(_compat.operation_classes([
    "Abs", "Absolute", "Negative", "Sqrt", "Square", "Exp", "Log", "Log1p", "Expm1", "Tanh", "Sign", "Round",
    "Floor", "Ceil", "Clip", "Copy", "Reciprocal", "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSilu", "Silu",
    "Gelu", "Elu", "Selu", "Celu", "LeakyRelu", "Softplus", "Softsign", "HardTanh", "LogSigmoid",
]), LayerSpec(role="pass-through"))
_register_all(_compat.operation_classes([
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power",
]), LayerSpec(role="merge"))
_register_all([L.Concatenate], LayerSpec(role="concatenate"))
_register_all([L.Flatten], LayerSpec(role="flatten"))
_register_all([L.Reshape], LayerSpec(role="reshape"))
