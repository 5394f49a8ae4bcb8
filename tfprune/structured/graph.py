"""The channel dependency graph of a model: which output channels must be removed together.

Removing output channel ``i`` of a layer also removes everything that only channel ``i`` feeds:
its bias, the per-channel weights of the layers it passes through (batch normalisation, depthwise
convolutions), and the input slice of the layers that read it. Layers joined by a residual add
share one *channel space* — channel ``i`` of every branch is summed into one channel — so their
channel ``i`` goes together. A :class:`Group` is one such space: the layers that produce it, its
size, and whether it may be pruned.

The graph is read from the nodes of a functional or Sequential model. Each layer is followed by
the role its spec gives it (:mod:`tfprune.layer_specs`; a subclass takes its base type's unless
registered itself, and a custom type gets one with :func:`tfprune.register_layer`); channels last.
The built-in roles:

* producers (their output channel ``i`` is channel ``i`` of a new space; their kernel's input
  slice is removed with the channels they read): ``Dense``, ``Conv1D/2D/3D`` with ``groups=1``,
  ``SeparableConv1D/2D`` (the pointwise part), ``Conv1D/2D/3DTranspose``, ``Embedding`` (its
  output dimensions);
* recurrent producers (``SimpleRNN``, ``LSTM``, ``GRU``): a unit takes its column of every gate in
  the kernel, recurrent kernel and bias, and its recurrent-kernel row;
* ``MultiHeadAttention``: a producer of its heads (the head slices of the query, key and value
  kernels and biases and of the output kernel; ``num_heads`` drops); the channels it reads and
  writes are not pruned, and heads whose attention scores it returns are not either;
* per-channel pass-through (channel ``i`` in is channel ``i`` out, the channel's weights go with
  it): ``BatchNormalization`` and ``LayerNormalization`` over the last axis, ``DepthwiseConv1D/2D``
  and convolutions with one input channel per group (input channel ``c`` becomes outputs
  ``c·m … c·m + m − 1`` for depth multiplier ``m``), ConvNeXt's ``LayerScale``;
* weightless pass-through: activations (``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``,
  ``Softmax``), dropout and noise, ``Identity``, pooling (local, global, adaptive), padding,
  cropping, up-sampling, ``Reshape`` whose target keeps the channels last (removal rewrites its
  ``target_shape``), and ``Flatten``, which orders an ``(H, W, C)`` tensor position-major: feature
  ``p·C + c`` is channel ``c`` at position ``p``;
* merges: ``Add``, ``Subtract``, ``Multiply``, ``Maximum``, ``Minimum``, ``Average`` join the
  spaces of their inputs, also a broadcast ``(1, 1, C)`` gate with the ``(H, W, C)`` tensor it
  scales (an input of one channel that broadcasts is left alone);
  ``Concatenate`` on the last axis lays its inputs' channels side by side (a channel of the
  output belongs to the space it came from, at that input's offset), on another axis it joins
  them like an add;
* operation nodes (``keras.ops`` calls and operators on Keras tensors): element-wise ones pass
  channels through (``relu6(s + 3.0) * (1 / 6)``: a constant operand is left alone) or join them
  like the merge layers;
* nested functional and Sequential models: followed layer by layer, as if their layers were
  called directly (their layers keep their names).

Layer normalisation and softmax over the channels renormalise over the channels that are left,
so removing a channel there is not exact even when its consumers ignore it.

Any other layer (no spec, or a spec without a role) or operation is *unsupported*: the graph
names it, and no channel it reads or writes may be removed. Channels that reach a model output
are never removed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import keras
import numpy as np

from tfprune import _compat
from tfprune.layers import specs as layer_specs
from tfprune.base import arguments, walk
from tfprune.layers.masked import SubstitutingWrapper

__all__ = ["Group", "DependencyGraph", "dependency_graph"]

L = keras.layers


# ---------------------------------------------------------------- layouts of a tensor's last axis


class _Segment(NamedTuple):
    """``size`` channels of one space; each repeated ``repeat`` times in a row (depth multiplier)."""

    space: int
    size: int
    repeat: int = 1


class _Block(NamedTuple):
    """Segments side by side, the whole repeated at ``positions`` positions (after Flatten)."""

    positions: int
    segments: tuple


def _channels(space, size):
    """The layout of a tensor whose last axis is one space."""
    return (_Block(1, (_Segment(space, size),)),)


def _width(block):
    return sum((s.size or 0) * s.repeat for s in block.segments)


def _concat(layouts):
    """Layouts side by side on the last axis; neighbouring blocks without positions fuse."""
    out = []
    for block in (b for layout in layouts for b in layout):
        if out and out[-1].positions == 1 and block.positions == 1:
            out[-1] = _Block(1, out[-1].segments + block.segments)
        else:
            out.append(block)
    return tuple(out)


def _expand(layout, multiplier):
    """The layout after a depthwise step: each channel repeated ``multiplier`` times."""
    return tuple(
        _Block(1, tuple(_Segment(s.space, s.size, s.repeat * multiplier) for s in b.segments)) for b in layout
    )


def _structure(layout):
    return [(b.positions, [(s.size, s.repeat) for s in b.segments]) for b in layout]


def _spaces_in(layout):
    return [s.space for b in layout for s in b.segments]


def dropped_indices(layout, removal, find):
    """Indices along the last axis of a ``layout`` that ``removal`` (``{root space: units}``) drops."""
    parts, base = [], 0
    for block in layout:
        width, offset = _width(block), 0
        for seg in block.segments:
            units = removal.get(find(seg.space))
            if units:
                idx = (
                    base
                    + np.arange(block.positions)[:, None, None] * width
                    + offset
                    + np.asarray(sorted(units))[None, :, None] * seg.repeat
                    + np.arange(seg.repeat)[None, None, :]
                )
                parts.append(idx.ravel())
            offset += (seg.size or 0) * seg.repeat
        base += block.positions * width
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=int)


# ---------------------------------------------------------------- channel spaces (union-find)


class _Spaces:
    """Channel spaces, joined by union-find; each root keeps its producers and blocking reasons."""

    def __init__(self):
        self.parent, self.size, self.producers, self.reasons = [], [], [], []

    def new(self, size, producer=None, reason=None):
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.producers.append([producer] if producer else [])
        self.reasons.append([reason] if reason else [])
        return len(self.parent) - 1

    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.producers[a] += self.producers[b]
            self.reasons[a] += [r for r in self.reasons[b] if r not in self.reasons[a]]

    def block(self, s, reason):
        reasons = self.reasons[self.find(s)]
        if reason not in reasons:
            reasons.append(reason)


class _Unsupported(Exception):
    """A layer the graph cannot follow; the message says why."""


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How removal changes one layer with weights: the layouts of the channels each axis follows."""

    kind: str  # "producer", "pass-through", "reshape" or "model" (a nested model: "input0", … its inputs)
    layouts: dict  # "in" / "mid" / "out" -> layout
    space: int | None = None  # a producer's output space


# ---------------------------------------------------------------- public API


@dataclasses.dataclass(frozen=True)
class Group:
    """One channel space: channels removed together from every layer that touches them.

    Attributes:
        index: Position in :attr:`DependencyGraph.groups`.
        producers: Names of the layers whose output channel ``i`` is channel ``i`` of this space,
            in model order (several when a residual add joins branches).
        size: Number of channels (units of a recurrent layer, heads of an attention layer).
        prunable: Whether channels may be removed.
        reason: Why not, as a verb phrase: ``"reaches the model output (layer 'fc')"``, ``"is read
            by unsupported layer 'lam' (...)"``; empty if prunable.
        passthrough: Layers whose per-channel weights are removed with the channel (batch and
            layer normalisation, depthwise convolutions).
        consumers: Layers whose kernel reads the space; the slice that reads a removed channel is
            removed (also through Flatten and Concatenate).
    """

    index: int
    producers: tuple
    size: int
    prunable: bool
    reason: str
    passthrough: tuple = ()
    consumers: tuple = ()

    @property
    def max_removable(self):
        """How many channels may be removed at most: all but one, none if not prunable."""
        return self.size - 1 if self.prunable else 0


class DependencyGraph:
    """The channel spaces of a model; see :func:`dependency_graph`.

    Attributes:
        groups: The :class:`Group` of every space made by a producer, in model order.
        unsupported: Names of the layers (and operations) that the graph cannot follow.
        reasons: ``{name: why}`` for each unsupported layer.
    """

    def __init__(self, model, groups, unsupported, reasons, plans, spaces, roots):
        self.model_name = model.name
        self._types = {layer.name: type(layer).__name__ for layer, _ in walk.units(model)}
        self.groups = groups
        self.unsupported = unsupported
        self.reasons = reasons
        self._plans = plans
        self._spaces = spaces
        self._roots = roots  # group index -> root space

    def group_of(self, layer_name):
        """The :class:`Group` of the channels that layer ``layer_name`` produces.

        Raises:
            ValueError: if no producer has that name.
        """
        plan = self._plans.get(layer_name)
        if plan is None or plan.kind != "producer":
            producers = [name for name, p in self._plans.items() if p.kind == "producer"]
            kind = self._types.get(layer_name)
            what = (f"no layer named {layer_name!r}" if kind is None
                    else f"layer {layer_name!r} ({kind}) does not produce channels")
            raise ValueError(
                f"{what} in model {self.model_name!r}: name one of its producers (layers whose "
                f"output channels are removed): {producers}"
            )
        root = self._spaces.find(plan.space)
        return next(g for g in self.groups if self._roots[g.index] == root)

    def units(self, prunable_only=True):
        """Every removable unit as ``(group, channel)`` pairs, group by group.

        Args:
            prunable_only: Leave out the groups that may not be pruned.
        """
        return [(g, c) for g in self.groups if g.prunable or not prunable_only for c in range(g.size)]

    def removal(self, pairs):
        """The ``units`` argument of :func:`tfprune.structured.remove` for ``(group, channel)`` pairs.

        Each group is named by its first producer; channels come out sorted and once.

        Example:
            >>> worst = sorted(graph.units(), key=score)[:10]
            >>> smaller = remove(model, graph.removal(worst))
        """
        out = {}
        for group, channel in pairs:
            out.setdefault(group.producers[0], set()).add(int(channel))
        return {name: sorted(channels) for name, channels in out.items()}

    def dropped(self, removal):
        """``{layer name: {"in"/"mid"/"out": indices}}`` for ``removal`` = ``{group index: units}``;
        only layers that lose something are listed."""
        by_root = {self._roots[i]: set(units) for i, units in removal.items() if units}
        out = {}
        for name, plan in self._plans.items():
            drops = {
                side: dropped_indices(layout, by_root, self._spaces.find)
                for side, layout in plan.layouts.items()
            }
            if any(len(d) for d in drops.values()):
                out[name] = drops
        return out

    def __str__(self):
        lines = [f"channel groups of model {self.model_name!r}:"]
        for g in self.groups:
            state = "prunable" if g.prunable else f"not prunable: {g.reason}"
            lines.append(f"  {g.index}: {', '.join(g.producers)} ({g.size} channel{'s' * (g.size != 1)}) {state}")
        lines += [f"  unsupported {name!r}: {why}" for name, why in self.reasons.items()]
        return "\n".join(lines)


def dependency_graph(model):
    """Finds which output channels of a model's layers must be removed together.

    Args:
        model: A built functional or Sequential Keras 3 model, without tfprune wrappers; nested
            functional and Sequential models are followed through.

    Returns:
        A :class:`DependencyGraph`: its ``groups`` (channel spaces, with their producers, size and
        whether they are prunable) and the ``unsupported`` layers.

    Raises:
        ValueError: for a subclassed model, a wrapped model (call :func:`tfprune.strip` first),
            an unbuilt one, or one whose nested models repeat a layer name.

    Example:
        >>> graph = dependency_graph(tfprune.models.resnet_cifar(20))
        >>> graph.group_of("block1_1_conv2").producers  # the whole first residual stream
        ('conv1', 'block1_1_conv2', 'block1_2_conv2', 'block1_3_conv2')
    """
    check_model(model)
    spaces, plans, reasons = _Spaces(), {}, {}
    outputs = _trace(model, None, spaces, plans, reasons)
    for t, layout in outputs:
        for s in _spaces_in(layout):
            spaces.block(s, f"reaches the model output (layer {_compat.keras_history_operation(t).name!r})")
    return _finish(model, spaces, plans, reasons)


def _layer_graph(model):
    """The functional graph of a functional or Sequential model."""
    return _compat.sequential_graph(model) if isinstance(model, keras.Sequential) else model


def _trace(model, input_layouts, spaces, plans, reasons):
    """Follows ``model``'s nodes, inputs before the layers that read them, recording each layer's
    plan and each unsupported one's reason; returns ``[(output tensor, layout)]``.

    ``input_layouts``: the layouts of the inputs of a nested model, in the order of its inputs;
    ``None`` for the outer model, whose inputs are new spaces that may not be pruned.
    """
    graph = _layer_graph(model)
    by_depth = _compat.nodes_by_depth(graph)
    nodes = [n for depth in sorted(by_depth, reverse=True) for n in by_depth[depth]]
    calls = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1

    layouts = {}
    if input_layouts is not None:
        layouts = {id(t): layout for t, layout in zip(keras.tree.flatten(graph.inputs), input_layouts)}
    for node in nodes:
        op = node.operation
        if node.is_input or isinstance(op, L.InputLayer):
            for t in node.outputs:
                if id(t) not in layouts:
                    why = f"is joined with the model input {op.name!r}"
                    layouts[id(t)] = _channels(spaces.new(t.shape[-1], reason=why), t.shape[-1])
            continue
        inputs = [layouts[id(t)] for t in node.input_tensors]
        what = "layer" if isinstance(op, L.Layer) else "operation"
        try:
            if calls[id(op)] > 1 and getattr(op, "weights", None):
                raise _Unsupported(f"a {what} with weights called {calls[id(op)]} times (shared)")
            if isinstance(op, keras.Model) and walk.is_graph_model(op):
                out = [layout for _, layout in _trace(op, inputs, spaces, plans, reasons)]
                plans[op.name] = _Plan("model", {f"input{i}": layout for i, layout in enumerate(inputs)})
            else:
                out, plan = _follow(op, node, inputs, spaces)
                if plan is not None:
                    plans[op.name] = plan
        except _Unsupported as e:
            reasons[op.name] = str(e)
            for s in (s for layout in inputs for s in _spaces_in(layout)):
                spaces.block(s, f"is read by unsupported {what} {op.name!r} ({e})")
            why = f"is written by unsupported {what} {op.name!r} ({e})"
            out = [_channels(spaces.new(t.shape[-1], reason=why), t.shape[-1]) for t in node.outputs]
        for t, layout in zip(node.outputs, out):
            layouts[id(t)] = layout
    return [(t, layouts[id(t)]) for t in keras.tree.flatten(graph.outputs)]


def check_model(model):
    """Raises a ValueError unless ``model`` is a built, plain functional or Sequential model."""
    arguments.keras_model(model)
    if not walk.is_graph_model(model):
        raise ValueError(
            f"model {model.name!r} is a subclassed model ({type(model).__name__}): structured removal "
            "needs a functional or Sequential model, because it reads the layer graph to find which "
            "channels must be removed together (a residual add ties its branches, a concatenation "
            "offsets them). Build the same layers with the functional API, e.g. "
            "inputs = keras.Input(shape); model = keras.Model(inputs, block(inputs)), and copy the "
            "weights over with set_weights"
        )
    walk.check_built(model)
    if isinstance(model, keras.Sequential) and _compat.sequential_graph(model) is None:
        raise ValueError(
            f"Sequential model {model.name!r} has no layer graph: start it with keras.Input(shape) "
            "or call model.build(input_shape)"
        )
    for unit, _ in walk.units(model):
        if isinstance(unit, SubstitutingWrapper):
            raise ValueError(
                f"model {model.name!r} is wrapped by tfprune (layer {unit.name!r} is a "
                f"{type(unit).__name__}): call tfprune.strip(model) first and remove channels from "
                "the plain model it returns"
            )
    seen = {}
    for layer, parent in walk.units(model):
        if layer.name in seen and seen[layer.name] is not layer:
            raise ValueError(
                f"model {model.name!r} has two layers named {layer.name!r} (one in {parent.name!r}): structured "
                "removal names layers across nested models, so give them distinct names"
            )
        seen[layer.name] = layer


# ---------------------------------------------------------------- following one layer


def _data_format(layer):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _Unsupported(f"data_format={layer.data_format!r}; only channels_last is supported")


def weight_axes(layer):
    """``{variable path: ((axis, side), ...)}``: which axes of ``layer``'s weights (its own and those
    its spec's ``inner_weights`` names) follow which channels (``"in"`` those read, ``"mid"`` those
    read after a separable convolution's depthwise step, ``"out"`` those written or its units,
    ``"gates"`` its units once per gate), from the layer's spec."""
    spec = layer_specs.spec_of(layer)
    own = layer_specs.weights_of(layer)
    axes = {v.path: own[v.name].channel_axes for v in walk.own_variables(layer) if v.name in own}
    if spec is not None and spec.inner_weights is not None:
        axes.update((v.path, w.channel_axes) for v, w in spec.inner_weights(layer))
    return axes


def _check_weights(layer):
    known = weight_axes(layer)
    unknown = [v.path for v in layer.weights if v.path not in known]
    if unknown:
        raise _Unsupported(f"weights {unknown} that removal cannot slice")


def _check_constants(node):
    """Raises _Unsupported if an operation has a constant operand with a channel axis (it would keep
    the removed channels); scalars and operands that broadcast over the channels are fine."""
    args = node.arguments
    for value in keras.tree.flatten((args.args, args.kwargs)):
        shape = getattr(value, "shape", ())
        if not isinstance(value, keras.KerasTensor) and len(shape) and shape[-1] != 1:
            raise _Unsupported(f"a constant operand of shape {tuple(shape)}, whose channels removal cannot slice")


def _single(inputs, node):
    if len(inputs) != 1 or len(node.outputs) != 1:
        raise _Unsupported(f"{len(inputs)} inputs and {len(node.outputs)} outputs; one of each is supported")
    return inputs[0]


def _last_axis(axis, rank):
    return all(a % rank == rank - 1 for a in (axis if isinstance(axis, (list, tuple)) else [axis]))


def _follow(op, node, inputs, spaces):
    """The layouts of ``op``'s outputs and its removal plan (``None`` for weightless layers), by the
    role its spec gives it.

    Raises:
        _Unsupported: for what the graph cannot follow.
    """
    spec = layer_specs.spec_of(op)
    if not isinstance(op, L.Layer):
        if spec is None or spec.role is None:
            raise _Unsupported(f"{type(op).__name__} operations are not supported; use a Keras layer")
        _check_constants(node)
        return _ROLES[spec.role](op, spec, node, inputs, spaces)
    if spec is None or spec.role is None:
        raise _Unsupported(f"{type(op).__name__} layers are not supported")
    _data_format(op)
    _check_weights(op)
    return _ROLES[spec.role](op, spec, node, inputs, spaces)


def _producer(op, spec, node, inputs, spaces):
    groups = 1 if spec.groups_key is None else getattr(op, spec.groups_key)
    if groups != 1:
        return _channelwise(op, spec, node, inputs, groups)
    layout = _single(inputs, node)
    size = _unit_count(op)
    space = spaces.new(size, producer=op.name)
    layouts = {"in": layout, "out": _channels(space, size)}
    if spec.multiplier_key is not None:
        layouts["mid"] = _expand(layout, getattr(op, spec.multiplier_key))
    return [layouts["out"]], _Plan("producer", layouts, space)


def _channelwise(op, spec, node, inputs, groups):
    """A grouped producer with one input channel per group: channel ``c`` in becomes channels
    ``c·m … c·m + m − 1`` out (``m`` = units / groups), like a depthwise convolution."""
    layout = _single(inputs, node)
    units = _unit_count(op)
    if node.input_tensors[0].shape[-1] != groups or units % groups:
        raise _Unsupported(
            f"{spec.groups_key}={groups} with {node.input_tensors[0].shape[-1]} input channels and {units} units; "
            "only one input channel per group (a depthwise layer) is supported"
        )
    out = _expand(layout, units // groups)
    return [out], _Plan("pass-through", {"in": layout, "out": out})


def _unit_count(layer):
    """The number of units of a producer: its config's value under its spec's ``unit_key``.

    Raises:
        ValueError: if the config has no such key.
    """
    key = layer_specs.spec_of(layer).unit_key
    config = layer.get_config()
    if key not in config:
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no {key!r} in its config, the unit_key its "
            f"spec names; its config keys: {sorted(config)}. Fix the unit_key given to tfprune.register_layer"
        )
    return config[key]


def _pass_through(op, spec, node, inputs, spaces):
    layout = _single(inputs, node)
    if spec.axis_key is not None:
        axis = getattr(op, spec.axis_key)
        if not _last_axis(axis, len(node.outputs[0].shape)):
            raise _Unsupported(f"{spec.axis_key}={axis}; only the last axis is supported")
    out = layout if spec.multiplier_key is None else _expand(layout, getattr(op, spec.multiplier_key))
    has_state = isinstance(op, L.Layer) and (walk.own_variables(op) or spec.unit_key is not None)
    return [out], _Plan("pass-through", {"in": layout, "out": out}) if has_state else None


def _reshape(op, spec, node, inputs, spaces):
    layout = _single(inputs, node)
    if node.input_tensors[0].shape[-1] != node.outputs[0].shape[-1] or any(b.positions != 1 for b in layout):
        raise _Unsupported("a reshape that changes the last axis; only reshapes that keep it are supported")
    return [layout], _Plan("reshape", {"in": layout})


def _recurrent(op, spec, node, inputs, spaces):
    """A recurrent layer: its units are a new space; the gate-major columns of its kernels and bias
    hold each unit once per gate."""
    mask = node.arguments.kwargs.get("mask")
    masks = {id(t) for t in keras.tree.flatten(mask) if t is not None}
    if any(id(t) not in masks for t in node.input_tensors[1:]):
        raise _Unsupported("inputs besides the sequence and its mask (initial states); call it on the sequence alone")
    if getattr(op, "stateful", False):
        raise _Unsupported("stateful=True; only stateless recurrent layers are supported")
    units = _unit_count(op)
    space = spaces.new(units, producer=op.name)
    v, axis = next((v, a) for v, w in spec.inner_weights(op) for a, side in w.channel_axes if side == "gates")
    gates = v.shape[axis] // units
    out = _channels(space, units)
    layouts = {"in": inputs[0], "out": out, "gates": (_Block(1, (_Segment(space, units),) * gates),)}
    return [out] * len(node.outputs), _Plan("producer", layouts, space)


def _attention(op, spec, node, inputs, spaces):
    """An attention layer: its heads are a new space, kept inside it; the channels it reads and
    writes are not pruned."""
    kind = type(op).__name__
    for s in (s for layout in inputs for s in _spaces_in(layout)):
        spaces.block(s, f"is read by {kind} {op.name!r} (its input width is not pruned, its heads are)")
    heads = _unit_count(op)
    space = spaces.new(heads, producer=op.name)
    if len(node.outputs) > 1:
        spaces.block(space, "returns its attention scores (return_attention_scores=True), whose head axis "
                            "would change; call it without them to prune heads")
    why = f"is written by {kind} {op.name!r} (its output width is not pruned, its heads are)"
    out = [_channels(spaces.new(t.shape[-1], reason=why), t.shape[-1]) for t in node.outputs]
    return out, _Plan("producer", {"out": _channels(space, heads)}, space)


def _flatten(op, spec, node, inputs, spaces):
    layout = _single(inputs, node)
    shape = node.input_tensors[0].shape
    if len(shape) > 2:
        if any(d is None for d in shape[1:]):
            raise _Unsupported(f"input shape {shape} is not fully known")
        (block,) = layout  # a tensor of rank > 2 has one block without positions
        layout = (_Block(math.prod(shape[1:-1]), block.segments),)
    return [layout], None


def _concatenate(op, spec, node, inputs, spaces):
    if not _last_axis(op.axis, len(node.outputs[0].shape)):
        return _merge(op, spec, node, inputs, spaces)
    if any(t.shape[-1] is None for t in node.input_tensors):
        raise _Unsupported("an input with an unknown number of channels")
    return [_concat(inputs)], None


def _merge(op, spec, node, inputs, spaces):
    return [_join(node, inputs, spaces)], None


_ROLES = {
    "producer": _producer, "pass-through": _pass_through, "merge": _merge, "concatenate": _concatenate,
    "flatten": _flatten, "reshape": _reshape, "recurrent": _recurrent, "attention": _attention,
}


def _join(node, inputs, spaces):
    """Joins the spaces of a merge's inputs channel by channel; returns the output layout."""
    width = node.outputs[0].shape[-1]
    joined = [
        layout for layout, t in zip(inputs, node.input_tensors) if not (t.shape[-1] == 1 and width != 1)
    ]  # an input of one channel that broadcasts does not join
    first = joined[0]
    for layout in joined[1:]:
        if _structure(layout) != _structure(first):
            raise _Unsupported(
                "its inputs lay out their channels differently (e.g. a concatenation merged with a "
                "single layer's output), so their channels cannot be removed together"
            )
        for a, b in zip(_spaces_in(first), _spaces_in(layout)):
            spaces.union(a, b)
    return first


def _finish(model, spaces, plans, reasons):
    """The groups, in model order, and the graph."""
    order = {layer.name: i for i, (layer, _) in enumerate(walk.units(model))}
    roots = {}
    for name in sorted((n for n, p in plans.items() if p.kind == "producer"), key=order.get):
        roots.setdefault(spaces.find(plans[name].space), None)
    readers = {root: ([], []) for root in roots}
    for name in sorted((n for n, p in plans.items() if p.kind in ("producer", "pass-through")), key=order.get):
        plan = plans[name]
        for root in dict.fromkeys(spaces.find(s) for s in _spaces_in(plan.layouts.get("in", ()))):
            if root in readers:
                readers[root][0 if plan.kind == "pass-through" else 1].append(name)
    groups = []
    for index, root in enumerate(roots):
        producers = tuple(sorted(spaces.producers[root], key=order.get))
        size = spaces.size[root]
        why = list(spaces.reasons[root])
        if size == 1 and not why:
            why.append("has a single channel (the last channel of a layer is never removed)")
        passthrough, consumers = readers[root]
        groups.append(Group(index, producers, size, not why, "; ".join(why), tuple(passthrough), tuple(consumers)))
    unsupported = tuple(reasons)
    return DependencyGraph(model, groups, unsupported, dict(reasons), plans, spaces, list(roots))
