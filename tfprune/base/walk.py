"""Walking a Keras 3 model: the pieces that wrapping treats as one, and the layers inside them.

A *unit* is a layer that :func:`tfprune.wrap` wraps as a whole: a node of a functional or
Sequential graph, or a sub-layer of a subclassed model. Nested functional, Sequential and
subclassed models are walked into; any other layer (a Dense, an LSTM, a user's composite layer) is
one unit. The *leaves* of a unit are the unit and every layer inside it, each owning its own
variables.

Keras 3 keeps no public list of a layer's own variables or direct sub-layers; this module reads
them through :mod:`tfprune._compat`.
"""

from __future__ import annotations

import keras

from tfprune import _compat

__all__ = ["is_graph_model", "units", "nested_models", "leaves", "own_variables", "check_built"]


def is_graph_model(model):
    """True for functional and Sequential models (those built as a graph of layers)."""
    return isinstance(model, (_compat.Functional, keras.Sequential))


def _descend(model):
    """Yields ``(layer, parent)`` for every layer inside ``model``, a nested model before its own
    layers, each once however often it is shared."""
    seen = set()

    def walk(m):
        children = m.layers if is_graph_model(m) else _compat.direct_sublayers(m)
        for layer in children:
            if id(layer) in seen or isinstance(layer, keras.layers.InputLayer):
                continue
            seen.add(id(layer))
            yield layer, m
            if isinstance(layer, keras.Model):
                yield from walk(layer)

    yield from walk(model)


def units(model):
    """Yields ``(unit, parent)`` for every unit of ``model`` in model order.

    ``parent`` is the model that holds the unit (a nested model for nested units). Each unit is
    yielded once, even when it is shared.
    """
    return ((layer, parent) for layer, parent in _descend(model) if not isinstance(layer, keras.Model))


def nested_models(model):
    """The models inside ``model`` (not ``model`` itself), at any depth, each once, in model order."""
    return [layer for layer, _ in _descend(model) if isinstance(layer, keras.Model)]


def leaves(unit):
    """The unit and every layer inside it, in depth-first order."""
    return _compat.nested_layers(unit)


def own_variables(layer):
    """Variables created by ``layer`` itself, not by its sub-layers, in creation order."""
    return _compat.own_variables(layer)


def check_built(model):
    """Raises a ValueError that says how to build ``model`` if it or a layer with weights is unbuilt."""
    if not model.built:
        raise ValueError(
            f"model {model.name!r} is not built, so its weights do not exist yet: build it first, "
            "e.g. start a Sequential model with keras.Input(shape), call model.build(input_shape), "
            "or call the model once on a batch"
        )
    for unit, _ in units(model):
        if not unit.built:
            raise ValueError(
                f"layer {unit.name!r} of model {model.name!r} is not built: call the model once on "
                "a batch so that every layer creates its weights"
            )
