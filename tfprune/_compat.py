"""Every access tfprune makes to Keras internals: private attributes and ``keras.src`` (and the one
private switch of TensorFlow's TFLite converter it sets).

Keras 3 has no public API for a few things tfprune needs (a layer's own variables, its direct
sub-layers, a functional model's nodes, the symbolic tracer). Each is read here and only here,
behind a named function, and ``tests/test_compat.py`` checks every one of them against the
installed Keras, so that a Keras release that changes one fails loudly in one place. The tested
range of Keras versions is stated in ``setup.cfg``.
"""

from __future__ import annotations

import contextlib

import keras

from keras.src.backend import compute_output_spec as _compute_output_spec
from keras.src.backend import get_stateless_scope as _get_stateless_scope
from keras.src.models.functional import Functional
from keras.src.models.sequential import Sequential
from keras.src.trainers.data_adapters import get_data_adapter as _get_data_adapter
from keras.src.ops import nn as _ops_nn
from keras.src.ops import numpy as _ops_numpy
from keras.src.saving import object_registration

__all__ = [
    "Functional",
    "add_weight_with_layout",
    "build_shapes",
    "compile_loss",
    "compile_loss_weights",
    "compute_output_spec",
    "convnext_layer_scale",
    "data_adapter",
    "direct_sublayers",
    "exact_tensorflow_moments",
    "explicit_attention_scores",
    "input_structure",
    "inputs_struct",
    "keep_tensor_list_ops",
    "keras_history_operation",
    "nested_layers",
    "nodes_by_depth",
    "observed_inputs",
    "operation_classes",
    "optimizer_own_variables",
    "optimizer_trainable_variables",
    "own_variables",
    "replace_tracked_layer",
    "sequential_graph",
    "stateless_scope",
    "inheriting_stateless_scope",
    "LAYER_LIST_ATTRIBUTE",
]

# The attribute in which a Keras layer keeps its list of tracked sub-layers.
LAYER_LIST_ATTRIBUTE = "_layers"


def stateless_scope():
    """The innermost active :class:`keras.StatelessScope`, or ``None``."""
    return _get_stateless_scope()


def inheriting_stateless_scope(state_mapping):
    """A :class:`keras.StatelessScope` for ``state_mapping`` that keeps the values an enclosing
    scope gives the variables it does not map (Keras's scopes do not nest: an inner one reads
    every other variable's own value, which a compiled JAX step would capture as a constant)."""
    scope = keras.StatelessScope(state_mapping=state_mapping)
    outer = stateless_scope()
    if outer is not None:
        scope.state_mapping = {**outer.state_mapping, **scope.state_mapping}
    return scope


def compute_output_spec(fn, *args, **kwargs):
    """Runs ``fn`` symbolically on :class:`keras.KerasTensor` arguments (Keras's own tracer)."""
    return _compute_output_spec(fn, *args, **kwargs)


@contextlib.contextmanager
def exact_tensorflow_moments():
    """Within it, Keras's TensorFlow ``ops.moments`` (layer and group normalisation) differentiates
    the variance through its mean: ``tf.nn.moments`` stops the gradient there, which changes no
    first derivative (the deviations sum to zero) but drops terms of the second. Synchronised
    (cross-replica) moments are left as they are."""
    from keras.src.backend.tensorflow import nn as tensorflow_nn

    def moments(x, axes, keepdims):
        mean = keras.ops.mean(x, axis=axes, keepdims=True)
        variance = keras.ops.mean(keras.ops.square(x - mean), axis=axes, keepdims=keepdims)
        return (mean if keepdims else keras.ops.squeeze(mean, axes)), variance

    original, tensorflow_nn._compute_moments = tensorflow_nn._compute_moments, moments
    try:
        yield
    finally:
        tensorflow_nn._compute_moments = original


def add_weight_with_layout(layer, layout, *, name, shape, initializer, dtype, trainable):
    """``layer.add_weight(...)`` whose variable gets the ``keras.distribution.TensorLayout``
    ``layout`` (``Layer.add_weight`` takes none; ``keras.Variable`` does)."""
    with keras.name_scope(layer.name, caller=layer):
        variable = keras.Variable(initializer=initializer, shape=shape, dtype=dtype, trainable=trainable, name=name,
                                  layout=layout)
    layer._track_variable(variable)
    return variable


def direct_sublayers(layer):
    """The layers tracked directly by ``layer`` (not their sub-layers), in tracking order."""
    return layer._flatten_layers(include_self=False, recursive=False)


def nested_layers(layer):
    """``layer`` and every layer inside it, depth first."""
    return layer._flatten_layers(include_self=True, recursive=True)


def own_variables(layer):
    """Variables created by ``layer`` itself, not by its sub-layers, in creation order."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def set_registered_name(cls, name):
    """Makes Keras save instances of ``cls`` under the registered ``name`` (loaded by whatever
    ``keras.saving.get_custom_objects()[name]`` is), as ``register_keras_serializable`` would
    without registering ``cls`` as the loader of that name."""
    object_registration.GLOBAL_CUSTOM_NAMES[cls] = name


def replace_tracked_layer(parent, old, new):
    """Replaces ``old`` by ``new`` in the list of sub-layers that ``parent`` tracks."""
    parent._tracker.replace_tracked_value("layers", old, new)


def sequential_graph(model):
    """The functional graph a Sequential model builds once its input is known, else ``None``."""
    return getattr(model, "_functional", None)


def nodes_by_depth(graph):
    """A functional model's nodes as ``{depth: [node, ...]}`` (depth 0 is the output side)."""
    return graph._nodes_by_depth


def inputs_struct(model):
    """The nested structure of a functional model's inputs, as it was given to ``keras.Model``."""
    return model._inputs_struct


def build_shapes(model):
    """The input shapes Keras recorded when ``model`` was built, ``{argument: shape}`` (may be empty)."""
    return model._build_shapes_dict or {}


def input_structure(model):
    """The nested structure of a graph model's symbolic inputs (a dict for a model built on a
    dict of ``keras.Input``), or ``None`` for a model without a graph (subclassed, or a Sequential
    model that does not know its input yet)."""
    if isinstance(model, Sequential):
        model = model._functional
    return model._inputs_struct if isinstance(model, Functional) else None


def compile_loss(model):
    """The loss object ``model.compile(loss=...)`` made (``None`` when the model has none); a new
    one on every ``compile``."""
    return getattr(model, "_compile_loss", None)


def compile_loss_weights(model):
    """The ``loss_weights`` ``model.compile`` was given (``None`` when none were)."""
    return getattr(compile_loss(model), "_user_loss_weights", None)


def data_adapter(x, y=None, sample_weight=None, batch_size=None):
    """Keras's own adapter for data in any form ``Model.fit`` takes (arrays, lists and dicts of
    arrays, a ``tf.data.Dataset``, a ``keras.utils.PyDataset``, a generator); its
    ``get_numpy_iterator()`` yields the batches, unshuffled."""
    return _get_data_adapter(x, y, sample_weight, batch_size=batch_size, shuffle=False)


def keep_tensor_list_ops(converter):
    """Makes a ``tf.lite.TFLiteConverter`` keep TensorFlow's tensor-list ops (a recurrent layer's
    loop) as Select TF ops instead of lowering them, as its own error message advises."""
    converter._experimental_lower_tensor_list_ops = False


def keras_history_operation(tensor):
    """The operation (layer or op node) that produced a symbolic Keras tensor."""
    return tensor._keras_history.operation


def operation_classes(names):
    """The classes of the operation nodes that ``keras.ops`` functions and operators on Keras
    tensors add to a functional graph (``x + 3.0`` adds an ``Add``), by class name, from
    ``keras.src.ops.numpy`` and ``keras.src.ops.nn``; a name neither module defines is left out."""
    found = (getattr(module, name, None) for name in names for module in (_ops_numpy, _ops_nn))
    return list(dict.fromkeys(c for c in found if isinstance(c, type)))


def convnext_layer_scale():
    """The per-channel ``LayerScale`` layer of ``keras.applications`` ConvNeXt models (not exported)."""
    from keras.src.applications.convnext import LayerScale

    return LayerScale


def optimizer_trainable_variables(optimizer):
    """The variables a built Keras optimizer was built for."""
    return optimizer._trainable_variables


def optimizer_own_variables(optimizer):
    """The variables a Keras optimizer created itself (iterations, learning rate), not its slots' owners."""
    return optimizer._variables


@contextlib.contextmanager
def explicit_attention_scores(layer):
    """Runs the enclosed calls of a ``MultiHeadAttention`` layer through its explicit score path.

    Keras computes attention with the fused ``ops.dot_product_attention`` (its softmax built in)
    unless attention scores are asked for; asking for them makes the layer compute
    ``query·key``, apply its ``Softmax`` sub-layer, then ``scores·value``, so that a change to
    that sub-layer takes effect. The layer's outputs are the same; its ``_compute_attention``
    (the method Keras documents for overriding) is restored on exit, also on error.
    """
    compute = layer._compute_attention
    overridden = "_compute_attention" in vars(layer)  # a user's own override on the instance

    def explicit(query, key, value, attention_mask=None, training=None, return_attention_scores=False, **kwargs):
        return compute(query, key, value, attention_mask, training, True, **kwargs)

    object.__setattr__(layer, "_compute_attention", explicit)
    try:
        yield
    finally:
        if overridden:
            object.__setattr__(layer, "_compute_attention", compute)
        else:
            object.__delattr__(layer, "_compute_attention")


def same_fit(callback, other):
    """Whether two callbacks belong to one ``fit`` call: Keras's CallbackList hands every callback
    of a ``fit`` the same ``params`` dict (keras/src/callbacks/callback_list.py, ``set_params``)."""
    return callback.params is not None and callback.params is other.params


@contextlib.contextmanager
def observed_inputs(layers, observe):
    """Calls ``observe(layer, inputs)`` on the input of every call of each of ``layers`` in the block.

    Keras' ``Layer.__call__`` looks up ``self.call`` at each call, so an instance attribute of that
    name runs first (Keras' own GPTQ records layer inputs this way). Each layer's ``call`` is
    restored on exit, also on error.
    """
    def observing(layer, call):
        def observed(*args, **kwargs):
            observe(layer, args[0] if args else kwargs["inputs"])
            return call(*args, **kwargs)
        return observed

    patched = []
    try:
        for layer in layers:
            object.__setattr__(layer, "call", observing(layer, layer.call))
            patched.append(layer)
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")
