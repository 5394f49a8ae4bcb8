"""Putting masks into a model and taking them out: wrap, apply_masks, get_masks, strip, unwrap.

Functional and Sequential models are cloned around the *same* layer objects (so the wrapped and
the original model share weights, and the original stays usable); operation nodes, nested models
and shared layers are carried over (see :func:`rebuild`); a functional model of a class of its own
(a KerasHub task) becomes a :class:`WrappedModel`, which saves as that class. Subclassed models have
no graph to clone: their tracked sub-layers are replaced in place, and the same model object is returned.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
from keras import ops

from tfprune import _compat
from tfprune.base import arguments, backends, distribute, views, walk
from tfprune.layers.masked import MaskedLayer, relative_path
from tfprune.layers.rebuilding import rebuild
from tfprune.layers.reloading import copy_from_config, warn_if_not_reloadable
from tfprune.layers.targets import is_wrapped, prunable_weights

__all__ = ["WrappedModel", "wrap", "unwrap", "apply_masks", "get_masks", "strip"]


def wrap(model, policy=None, include_bias=False, include_norm=False):
    """Wraps every layer with prunable weights in a :class:`MaskedLayer` (all masks ones).

    Args:
        model: A built Keras 3 model (Sequential, functional, nested or subclassed).
        policy: Which layers to prune (see :func:`tfprune.prunable_weights`).
        include_bias: Mask biases too.
        include_norm: Mask normalisation γ and β too.

    Returns:
        The wrapped model: a new model sharing the layers of a functional or Sequential
        ``model`` (a :class:`WrappedModel` if ``model`` is a functional model of a class of its
        own, such as a KerasHub task), or ``model`` itself, changed in place, if it is subclassed.
        Compile it after wrapping.

    Raises:
        ArgumentError: if ``model`` is not a Keras 3 model (a layer, ``None``, a tf_keras model), or a
            flag is not a bool.
        ValueError: if the model is unbuilt, already wrapped, or has no prunable weights.

    Example:
        >>> wrapped = tfprune.wrap(model, policy="skip_first_last")
        >>> wrapped.compile(...); wrapped.fit(...)  # pruned weights stay pruned
    """
    arguments.keras_model(model)
    if is_wrapped(model):
        raise ValueError(f"model {model.name!r} is already wrapped")
    targets = prunable_weights(model, policy, include_bias, include_norm)
    chosen = {}
    for t in targets:
        chosen.setdefault(id(t.unit), []).append(relative_path(t.unit, t.variable))
    if isinstance(model, _compat.Functional) and type(model) is not _compat.Functional:
        index = {id(layer): i for i, layer in enumerate(_compat.nested_layers(model))}
        return WrappedModel(model, [[index[key], paths] for key, paths in chosen.items()])
    warn_if_not_reloadable(model)
    wrapped = _masked_clone(model, chosen)
    if wrapped is not model and type(model) not in (_compat.Functional, keras.Sequential):
        object.__setattr__(wrapped, "_tfprune_original", weakref.ref(model))  # a class of its own: see strip
    return wrapped


def _masked_clone(model, chosen):
    """``model`` rebuilt (:func:`rebuild`) with a MaskedLayer around every layer whose id ``chosen`` maps to the
    paths of its masked weights."""
    def replace(layer):
        paths = chosen.get(id(layer))
        return layer if paths is None else MaskedLayer(layer, masked_weights=paths)

    with distribute.creation_scope(model):  # masks mirrored like the weights, if distributed
        return rebuild(model, replace)


def _masked(model):
    """The targets of a wrapped model; a clear error for a plain one or for anything but a Keras 3 model."""
    if not is_wrapped(arguments.keras_model(model)):
        raise ValueError(f"model {model.name!r} has no masks: wrap it first (tfprune.wrap or tfprune.prune_at_init)")
    return prunable_weights(model)


def get_masks(model):
    """The masks of a wrapped model as boolean NumPy arrays, in :func:`prunable_weights` order.

    Args:
        model: A wrapped model.

    Returns:
        A list of boolean arrays, one per masked weight.

    Example:
        >>> masks = tfprune.get_masks(wrapped)
        >>> tfprune.masks.density(masks)
    """
    return masks_of(_masked(model))


def masks_of(targets):
    """The current masks of some targets of a wrapped model, as boolean arrays in their order."""
    return [views.view(t.mask) != 0 for t in targets]


def apply_masks(model, masks):
    """Sets the masks of a wrapped model. Nothing is changed unless every mask is valid.

    Args:
        model: A wrapped model.
        masks: Boolean or 0/1 arrays, either a list in :func:`prunable_weights` order or a dict
            keyed by the weight's path (``target.name``); a dict may cover only some weights.

    Raises:
        ValueError: on a wrong number of masks, a shape mismatch, an unknown path, or values
            other than 0 and 1.

    Example:
        >>> tfprune.apply_masks(wrapped, [np.abs(t.variable.numpy()) > 0.05 for t in targets])
    """
    targets = _masked(model)
    if isinstance(masks, dict):
        by_name = {t.name: t for t in targets}
        unknown = sorted(set(masks) - set(by_name))
        if unknown:
            raise ValueError(f"no masked weight named {unknown}; masked weights: {sorted(by_name)}")
        pairs = [(by_name[name], m) for name, m in masks.items()]
    else:
        masks = list(masks)
        if len(masks) != len(targets):
            raise ValueError(f"got {len(masks)} masks for {len(targets)} masked weights")
        pairs = list(zip(targets, masks))
    checked = []
    for t, m in pairs:
        m = np.asarray(m)
        if m.shape != t.shape:
            raise ValueError(f"mask for {t.name} has shape {m.shape}, the weight has shape {t.shape}")
        if m.dtype != bool and not ((m == 0) | (m == 1)).all():
            raise ValueError(f"mask for {t.name} holds values other than 0 and 1")
        checked.append((t, m))
    assign_masks([t for t, _ in checked], [m for _, m in checked])


def assign_masks(targets, masks):
    """Writes masks into the targets' mask variables, unchecked (:func:`apply_masks` checks them).

    Args:
        targets: Targets of a wrapped model (:func:`tfprune.prunable_weights`).
        masks: Boolean or 0/1 arrays shaped like the targets, in the same order.
    """
    for t, m in zip(targets, masks):
        if not backends.is_tensorflow():
            t.mask.assign(ops.cast(m, t.mask.dtype))
            continue
        # A boolean copy into TensorFlow, cast there, written into the TensorFlow variable itself
        # (mirrored under a strategy): Keras's assign adds a conversion, checks and a read back.
        t.mask.value.assign(ops.cast(m, t.mask.dtype), read_value=False)


def strip(model):
    """A plain Keras model with the masked weights written as zeros and no tfprune layers.

    Works on any functional graph: operation nodes (``x + y``, ``keras.ops`` calls, the mask an
    ``Embedding(mask_zero=True)`` computes), nested functional and Sequential models, shared
    layers (one copy however many nodes call them) and several inputs and outputs.

    Args:
        model: A wrapped model.

    Returns:
        For functional and Sequential models, a new model with weights of its own: every layer
        with variables is copied from its config and given its weights, masked ones as zeros;
        nodes without variables (operations, activations, pooling, ``Lambda``) hold no state and
        are shared with ``model``. The wrapped model keeps its dense weights and masks. When
        ``model`` wraps a functional model of a class of its own (a KerasHub ``GPT2CausalLM``,
        whose ``generate()`` a plain copy would lose) whose layers it still shares, that model
        itself, its masked weights set to zero (so the wrapped model's are too). For subclassed
        models, ``model`` itself, changed in place: each MaskedLayer is replaced by its layer,
        whose masked weights are set to zero.

    Raises:
        ArgumentError: if ``model`` is not a Keras 3 model (a tf_keras model: strip it with TF-MOT's
            ``strip_pruning``).
        ValueError: if ``model`` has no masks, a graph model holds a subclassed model (strip
            that one first), or a layer with variables cannot be copied from its config.

    Example:
        >>> plain = tfprune.strip(wrapped)
        >>> plain.save("pruned.keras")  # loads without tfprune
    """
    _masked(model)
    if not walk.is_graph_model(model):
        return unwrap(model, zero_masked=True)
    original = _original_sharing_layers(model)
    if original is not None:
        for layer in _compat.nested_layers(model):
            if isinstance(layer, MaskedLayer):
                _zero_masked(layer)
        return original
    subclassed = [m.name for m in walk.nested_models(model) if not walk.is_graph_model(m)]
    if subclassed:
        raise ValueError(
            f"cannot strip {model.name!r}: it holds the subclassed model(s) {subclassed}, which have "
            "no graph to copy; strip those first (in place), then this one"
        )

    copies = []

    def copy(node):
        inner = node.layer if isinstance(node, MaskedLayer) else node
        if not (isinstance(inner, keras.layers.Layer) and inner.variables):
            return inner  # no state to separate: shared
        new = copy_from_config(inner)
        copies.append((node, new))
        return new

    stripped = rebuild(model, copy)
    for old, new in copies:
        new.set_weights(_effective_weights(old))
    return stripped


def unwrap(model, zero_masked=False):
    """Replaces each MaskedLayer by its layer (in place for subclassed models).

    Args:
        model: A wrapped model.
        zero_masked: Write the masked weights as zeros first (what :func:`strip` does); without
            it the layers get back their dense weights and the masks are dropped.

    Returns:
        The unwrapped model: ``model`` itself if subclassed, else a clone around the same layers.

    Raises:
        ArgumentError: if ``model`` is not a Keras 3 model, or ``zero_masked`` not a bool.
    """
    arguments.keras_model(model)
    zero_masked = arguments.flag("zero_masked", zero_masked)

    def unwrap_layer(layer):
        if not isinstance(layer, MaskedLayer):
            return layer
        if zero_masked:
            _zero_masked(layer)
        return layer.layer

    return rebuild(model, unwrap_layer)


def _zero_masked(layer):
    """Writes zeros into the masked weights of a MaskedLayer."""
    for variable, mask in layer.masked_variables:
        variable.assign(variable.value * mask.value)


def _original_sharing_layers(model):
    """The model of a class of its own that ``model`` wraps (:func:`wrap`), if it is still alive and
    every masked layer of ``model`` wraps one of its layers; else ``None``."""
    reference = model.__dict__.get("_tfprune_original")
    original = reference() if reference is not None else None
    if original is None:
        return None
    layers = {id(layer) for layer in _compat.nested_layers(original)}
    masked = [layer for layer in _compat.nested_layers(model) if isinstance(layer, MaskedLayer)]
    return original if all(id(layer.layer) in layers for layer in masked) else None


def _effective_weights(layer):
    """The layer's weights as NumPy arrays, masked weights multiplied by their masks."""
    if not isinstance(layer, MaskedLayer):
        return [w.numpy() for w in layer.weights]
    masks = {id(v): m.numpy() for v, m in layer.masked_variables}
    return [w.numpy() * masks[id(w)] if id(w) in masks else w.numpy() for w in layer.layer.weights]


@keras.saving.register_keras_serializable(package="tfprune")
class WrappedModel(_compat.Functional):
    """A wrapped functional model of a class of its own (a KerasHub task such as ``GPT2CausalLM``).

    Its graph is the original model's with a :class:`MaskedLayer` around each masked layer, sharing
    the original's layers. It saves as the original model (whose class saves the arguments it
    rebuilds itself from) and the paths of the masked weights of each masked layer, and
    ``keras.models.load_model`` rebuilds the original and wraps it the same way before it loads
    weights and masks. A plain functional clone's file would hold every layer's config instead,
    which Keras cannot always reload: a layer of a nested model also called outside it (GPT-2's
    token embedding computes the logits too), or a layer whose ``from_config`` refuses its own
    ``get_config()`` (KerasHub's ``ViTPatchingAndEmbedding``). :func:`strip` returns the original.

    Args:
        original: The functional model wrapped; built.
        masked_weights: ``[index, paths]`` pairs: the index of a layer in the original's nested
            layers (depth first, the original first) and the paths of its masked weights.
    """

    def __init__(self, original, masked_weights, **kwargs):
        layers = _compat.nested_layers(original)
        clone = _masked_clone(original, {id(layers[index]): paths for index, paths in masked_weights})
        super().__init__(clone.input, clone.output, **{"name": original.name, **kwargs})
        object.__setattr__(self, "_masked_weights", [[index, list(paths)] for index, paths in masked_weights])
        object.__setattr__(self, "_tfprune_original", lambda: original)  # strip's; not a layer Keras saves

    def get_config(self):
        original = keras.saving.serialize_keras_object(self._tfprune_original())
        original.pop("compile_config", None)  # this model's own is saved; the original's would only warn on load
        return {"original": original, "masked_weights": self._masked_weights, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        original = keras.saving.deserialize_keras_object(config.pop("original"), custom_objects=custom_objects)
        return cls(original, **config)
