"""The TensorFlow engine: ``tf.GradientTape`` (nested for Hessian-vector products) and
``tf.function`` (see :mod:`tfprune.autodiff.engines`). Hessian-vector products run Keras's
moments exactly (:func:`tfprune._compat.exact_tensorflow_moments`), as JAX and PyTorch do: the
second derivative through a ``LayerNormalization`` needs the gradient that ``tf.nn.moments`` stops."""

from __future__ import annotations

import contextlib

import tensorflow as tf

from tfprune import _compat

__all__ = ["COMPILES_FIRST_ROUND", "value_and_gradients", "hessian_vector_product", "compile", "inference"]

COMPILES_FIRST_ROUND = False


def _dense_gradients(tape, target, sources):
    """``tape.gradient(target, sources)`` as dense tensors: an embedding's ``tf.IndexedSlices``
    made dense, and zeros for a source the target does not depend on."""
    grads = tape.gradient(target, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def value_and_gradients(function, values):
    with tf.GradientTape() as tape:
        tape.watch(values)
        value, aux = function(values)
    return value, aux, _dense_gradients(tape, value, values)


def hessian_vector_product(function, values, direction):
    with tf.GradientTape() as outer:
        outer.watch(values)
        with tf.GradientTape() as inner, _compat.exact_tensorflow_moments():
            inner.watch(values)
            value = function(values)
        grads = _dense_gradients(inner, value, values)
        inner_product = tf.add_n([tf.reduce_sum(g * d) for g, d in zip(grads, direction)])
    return _dense_gradients(outer, inner_product, values)


def compile(function, variables):
    """A ``tf.function`` (it reads the variables as they are at each call)."""
    return tf.function(function, reduce_retracing=True)


def inference():
    """A no-op: TensorFlow records operations only under a ``tf.GradientTape``."""
    return contextlib.nullcontext()
