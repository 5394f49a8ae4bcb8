"""Physical removal of channels: a new, smaller model with the remaining weights copied over."""

from __future__ import annotations

import numbers

import keras
import numpy as np

from tfprune import _compat
from tfprune.layers import specs as layer_specs
from tfprune.base import walk
from tfprune.structured import graph as graph_lib

__all__ = ["remove"]


def remove(model, units):
    """A new model without the given output channels and everything that only they feed.

    Each named producer loses those output channels (its kernel's last axis and bias), and so does
    every other producer of the same group (see :func:`dependency_graph`); pass-through layers
    lose the channels' weights (batch-norm γ, β and moving statistics, depthwise kernels); layers
    that read the channels lose the matching input slice of their kernel (through Flatten, the
    features ``p·C + c`` of every position ``p``; through Concatenate, at the input's offset);
    a ``Reshape`` that keeps the channels last gets the new count in its ``target_shape``.
    A recurrent layer's units go with their column of every gate and their recurrent-kernel row;
    an attention layer's heads with their query, key, value and output slices (``num_heads``
    drops). Nested models are rebuilt with their layers' names. The other weights are copied;
    layer names and the compile configuration are kept.

    Args:
        model: A built functional or Sequential Keras 3 model; it is not changed.
        units: ``{layer name: [unit indices]}`` for producers (Dense and convolution channels,
            recurrent units, attention heads). Channels of one group given through several of its
            producers are merged.

    Returns:
        A new model of the same kind (functional or Sequential) with fresh, independent weights.

    Raises:
        ValueError: if the model is not a plain functional or Sequential model, a name is no
            producer, an index is out of range or repeated, a group may not be pruned (the message
            says why), or all channels of a group would go (at most ``size − 1`` may).

    Example:
        >>> dependency_graph(model).group_of("conv1").max_removable
        15
        >>> smaller = remove(model, {"conv1": [0, 5]})
        >>> tfprune.profile(smaller, verbose=0).total.macs < tfprune.profile(model, verbose=0).total.macs
        True
    """
    graph = graph_lib.dependency_graph(model)
    removal = _check_units(graph, units)
    dropped = graph.dropped(removal)

    def clone_function(layer):
        if isinstance(layer, keras.Model):  # nested (the graph refused any other kind)
            inputs = _inputs(layer, dropped.get(layer.name, {}))
            return keras.models.clone_model(layer, input_tensors=inputs, clone_function=clone_function)
        if not isinstance(layer, keras.layers.Layer):
            return layer  # an operation node: stateless, and it computes on whatever shapes it gets
        drops = dropped.get(layer.name)
        return _rebuilt(layer, layer.get_config() if drops is None else _smaller_config(layer, drops))

    inputs = None if isinstance(model, keras.Sequential) else _inputs(model)  # Sequential keeps its input's name
    smaller = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_function)
    new = {layer.name: layer for layer, _ in walk.units(smaller)}
    for layer, _ in walk.units(model):
        _copy_weights(layer, new[layer.name], dropped.get(layer.name))
    return smaller


def _smaller_config(layer, drops):
    """``layer``'s config with its unit count (or a reshape's channel count) lowered by what ``drops`` removes."""
    config = layer.get_config()
    spec = layer_specs.spec_of(layer)
    if spec.role == "reshape":
        *rest, channels = config["target_shape"]
        if channels != -1:
            config["target_shape"] = (*rest, channels - len(drops["in"]))
    elif spec.unit_key is not None:
        config[spec.unit_key] -= len(drops["out"])
    if spec.groups_key is not None and config[spec.groups_key] != 1:  # one input channel per group
        config[spec.groups_key] -= len(drops["in"])
    return config


def _rebuilt(layer, config):
    """A new layer from ``config``; a stateless layer that cannot be rebuilt (a Lambda) is shared."""
    try:
        return layer.__class__.from_config(config)
    except Exception as e:
        if getattr(layer, "variables", None):
            raise ValueError(
                f"cannot rebuild layer {layer.name!r} ({type(layer).__name__}) from its config: {e}"
            ) from e
        return layer


def _inputs(model, drops=None):
    """Fresh inputs named like the model's (clone_model would name them after the tensors), each
    narrower by the channels ``drops`` (``{"input0": indices, ...}``) removes from it."""
    fresh = []
    for i, x in enumerate(keras.tree.flatten(model.input)):
        removed = len((drops or {}).get(f"input{i}", ()))
        shape = (*x.shape[:-1], x.shape[-1] - removed) if removed else x.shape
        fresh.append(keras.Input(batch_shape=shape, dtype=x.dtype, name=_compat.keras_history_operation(x).name))
    return keras.tree.pack_sequence_as(model.input, fresh)


def _check_units(graph, units):
    """``{group index: set of channels}`` after checking every name and index."""
    if not isinstance(units, dict):
        raise ValueError(f"units must be a dict {{layer name: [channel indices]}}, got {type(units).__name__}")
    removal = {}
    for name, indices in units.items():
        group = graph.group_of(name)
        indices = _indices(name, indices)
        bad = [i for i in indices if not 0 <= i < group.size]
        if bad:
            raise ValueError(f"channels {bad} of layer {name!r} are out of range: it has {group.size} channels")
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        if repeated:
            raise ValueError(f"channels {repeated} of layer {name!r} are given more than once")
        if indices and not group.prunable:
            raise ValueError(
                f"channels of layer {name!r} cannot be removed: its group (producers "
                f"{list(group.producers)}) is not prunable: it {group.reason}"
            )
        removal.setdefault(group.index, set()).update(indices)
    for index, channels in removal.items():
        group = graph.groups[index]
        if len(channels) > group.max_removable:
            raise ValueError(
                f"cannot remove {len(channels)} of the {group.size} channels of the group of layers "
                f"{list(group.producers)}: the last channel of a layer is never removed, so remove at "
                f"most {group.max_removable}"
            )
    return removal


def _indices(name, indices):
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
        raise ValueError(f"channels of layer {name!r} must be a list of integers, got {indices!r}")
    indices = list(np.asarray(indices).ravel()) if isinstance(indices, np.ndarray) else list(indices)
    wrong = [i for i in indices if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral)]
    if wrong:
        raise ValueError(f"channels of layer {name!r} must be integers, got {wrong}")
    return [int(i) for i in indices]


def _copy_weights(old, new, drops):
    """Copies ``old``'s weights into ``new``, without the ``drops`` (``{side: indices}``)."""
    if not drops:
        new.set_weights(old.get_weights())
        return
    axes = graph_lib.weight_axes(old)
    for source, target in zip(old.weights, new.weights):
        value = source.numpy()
        for axis, side in axes[source.path]:
            value = np.delete(value, drops.get(side, []), axis=axis)
        if tuple(value.shape) != tuple(target.shape):
            raise AssertionError(
                f"{source.path}: sliced to {value.shape} for a weight of shape {tuple(target.shape)}"
            )
        target.assign(value)
