"""Replacing the layers of a model: graph models cloned, subclassed models changed in place.

A subclassed model has no graph to clone, so its sub-layers are replaced in place. Its class's
``__init__`` makes plain layers, so Keras alone could not reload such a model once a tfprune wrapper
(a :class:`~tfprune.layers.masked.SubstitutingWrapper`) holds one of them: the model is given a
subclass of its own class (same name, same methods) whose config is the original class's config
plus each wrapper and its position among the layers. ``keras.models.load_model`` (with tfprune
imported) makes the original class from its config, puts the wrappers back, then loads every
weight and mask; the loaded model is wrapped like the saved one and saves again the same way.
"""

from __future__ import annotations

import keras

from tfprune import _compat
from tfprune.base import walk
from tfprune.layers.masked import SubstitutingWrapper

__all__ = ["rebuild"]

_SAVED_NAME = "tfprune>SubclassedWithWrappers"
_ORIGINAL = "_tfprune_unwrapped_class"  # class attribute of a class made by _class_with_wrappers
_classes = {}  # original class -> its class with wrappers


def rebuild(model, replace):
    """A model whose layers and operations are ``replace(layer)``.

    Graph models (functional, Sequential) are cloned with ``keras.models.clone_model``; every node
    of the graph, operation nodes (``x + y``, ``keras.ops`` calls, the mask a layer computes)
    included, is passed to ``replace``, as ``clone_model`` passes it to its ``clone_function``.
    Subclassed models are changed in place (and saved and loaded with their wrappers, see the
    module's docstring). Nested models are rebuilt the same way. ``replace`` is called once per
    object however many nodes and models share it, so a shared layer gets one replacement and a
    model used twice one rebuilt model.

    Args:
        model: A Keras 3 model.
        replace: ``replace(layer_or_operation) -> layer_or_operation``; nested models never reach it.

    Returns:
        The rebuilt model: a new model for graph models, ``model`` itself otherwise.
    """
    done = {}

    def rebuilt(layer):
        if id(layer) not in done:
            done[id(layer)] = _rebuild_model(layer, rebuilt) if isinstance(layer, keras.Model) else replace(layer)
        return done[id(layer)]

    return _rebuild_model(model, rebuilt)


def _rebuild_model(model, rebuilt):
    if walk.is_graph_model(model):
        return keras.models.clone_model(model, clone_function=rebuilt)
    for layer in _compat.direct_sublayers(model):
        new = rebuilt(layer)
        if new is not layer:
            _replace_sublayer(model, layer, new)
    _forget_compiled_functions(model)
    _set_class(model)
    return model


def _replace_sublayer(parent, old, new):
    """Replaces every reference of ``parent`` to ``old`` (attributes, lists, dicts) by ``new``."""
    attributes, containers = [], []
    for attr, value in vars(parent).items():
        if attr == _compat.LAYER_LIST_ATTRIBUTE:  # Keras's own list: updated below
            continue
        if value is old:
            attributes.append((attr, new))
        elif isinstance(value, tuple) and any(item is old for item in value):
            attributes.append((attr, tuple(new if item is old else item for item in value)))
        elif isinstance(value, (list, dict)):
            keys = range(len(value)) if isinstance(value, list) else list(value)
            containers.extend((value, key) for key in keys if value[key] is old)
    if not attributes and not containers:
        raise ValueError(
            f"cannot replace layer {old.name!r} inside {parent.name!r}: it is not held in an "
            "attribute, list or dict of that layer"
        )
    _compat.replace_tracked_layer(parent, old, new)
    for attr, value in attributes:
        setattr(parent, attr, value)  # through Keras's and TensorFlow's attribute tracking
    for container, key in containers:
        container[key] = new


def _forget_compiled_functions(model):
    """Drops traced train/test/predict functions, which still call the replaced layers."""
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def _positions(model, prefix=()):
    """``(position, layer)`` for every layer below ``model`` that is not a model, where a position
    is the list of indices leading to it (among a graph model's ``layers``, a subclassed model's
    directly tracked layers). A wrapper's own layer is not descended into."""
    layers = model.layers if walk.is_graph_model(model) else _compat.direct_sublayers(model)
    for index, layer in enumerate(layers):
        if isinstance(layer, keras.Model):
            yield from _positions(layer, (*prefix, index))
        else:
            yield (*prefix, index), layer


def _set_class(model):
    """Gives an in-place rebuilt model the class that saves its wrappers, or its class back."""
    original = type(model).__dict__.get(_ORIGINAL, type(model))
    wrapped = any(isinstance(layer, SubstitutingWrapper) for _, layer in _positions(model))
    model.__class__ = _class_with_wrappers(original) if wrapped else original


def _class_with_wrappers(original):
    if original not in _classes:
        cls = type(original.__name__, (original,), {
            "__module__": original.__module__, "__qualname__": original.__qualname__,
            "__doc__": original.__doc__, _ORIGINAL: original, "get_config": _get_config,
        })
        _compat.set_registered_name(cls, _SAVED_NAME)
        _classes[original] = cls
    return _classes[original]


def _get_config(self):
    """The original class's record and every wrapper with its position."""
    original = type(self).__dict__[_ORIGINAL]
    record = {
        "module": original.__module__,
        "class_name": original.__name__,
        "registered_name": keras.saving.get_registered_name(original),
        "config": keras.saving.serialize_keras_object(original.get_config(self)),
        "build_config": self.get_build_config(),
    }
    wrappers = [{"position": list(position), "wrapper": keras.saving.serialize_keras_object(layer)}
                for position, layer in _positions(self) if isinstance(layer, SubstitutingWrapper)]
    return {"model": record, "wrappers": wrappers}


class _SubclassedWithWrappers:
    """What a saved subclassed model with wrappers loads through (never instantiated)."""

    @classmethod
    def from_config(cls, config):
        record = config["model"]
        try:
            model = keras.saving.deserialize_keras_object(record)
        except Exception as error:  # the model's own get_config/__init__ (or a missing class)
            raise ValueError(  # not TypeError, which Keras's loader rewords
                f"cannot load the wrapped {record['class_name']!r}: Keras could not make it from its config "
                f"({type(error).__name__}: {error}); a subclassed model needs a get_config() whose values its "
                "__init__ accepts (and its class registered or importable) for any .keras file to load"
            ) from error
        if not model.built and record.get("build_config"):
            model.build_from_config(record["build_config"])
        layers = dict(_positions(model))
        wrappers = {}
        for entry in config["wrappers"]:
            position = tuple(entry["position"])
            wrapper = keras.saving.deserialize_keras_object(entry["wrapper"])
            plain = layers.get(position)
            if plain is None or type(plain) is not type(wrapper.layer):
                found = "nothing" if plain is None else f"a {type(plain).__name__}"
                raise ValueError(
                    f"cannot load {model.name!r}: the file has a {type(wrapper).__name__} around a "
                    f"{type(wrapper.layer).__name__} at layer position {list(position)}, where "
                    f"{type(model).__name__}'s __init__ now makes {found}; load it with the code that saved it"
                )
            wrappers[id(plain)] = wrapper
        return rebuild(model, lambda layer: wrappers.get(id(layer), layer))


keras.saving.get_custom_objects()[_SAVED_NAME] = _SubclassedWithWrappers
