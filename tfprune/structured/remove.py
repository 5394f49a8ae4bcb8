"""Physical removal of channels: a new, smaller model with the remaining weights copied over."""

from __future__ import annotations

import numbers

import keras
import numpy as np

from tfprune import _compat
from tfprune.structured import graph as graph_lib

__all__ = ["remove"]


def remove(model, units):
    """A new model without the given output channels and everything that only they feed.

    Each named producer loses those output channels (its kernel's last axis and bias), and so does
    every other producer of the same group (see :func:`dependency_graph`); pass-through layers
    lose the channels' weights (batch-norm γ, β and moving statistics, depthwise kernels); layers
    that read the channels lose the matching input slice of their kernel (through Flatten, the
    features ``p·C + c`` of every position ``p``; through Concatenate, at the input's offset).
    The other weights are copied; layer names and the compile configuration are kept.

    Args:
        model: A built functional or Sequential Keras 3 model; it is not changed.
        units: ``{layer name: [output channel indices]}`` for producers (Dense, convolutions).
            Channels of one group given through several of its producers are merged.

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
        config = layer.get_config()
        drops = dropped.get(layer.name)
        if drops is not None and type(layer) in graph_lib.PRODUCERS:
            config["units" if type(layer) is keras.layers.Dense else "filters"] -= len(drops["out"])
        return _rebuilt(layer, config)

    smaller = keras.models.clone_model(model, input_tensors=_inputs(model), clone_function=clone_function)
    for layer in model.layers:
        _copy_weights(layer, smaller.get_layer(layer.name), dropped.get(layer.name))
    return smaller


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


def _inputs(model):
    """Fresh inputs named like the model's (clone_model would name them after the tensors)."""
    if isinstance(model, keras.Sequential):
        return None  # Sequential cloning keeps its input layer's name
    return keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=_compat.keras_history_operation(x).name),
        model.input,
    )


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
        for axis, side in axes[source.name]:
            value = np.delete(value, drops.get(side, []), axis=axis)
        if tuple(value.shape) != tuple(target.shape):
            raise AssertionError(
                f"{source.path}: sliced to {value.shape} for a weight of shape {tuple(target.shape)}"
            )
        target.assign(value)
