"""layer_changes.batch_statistics: batch norm on the batch's statistics (NumPy float64 reference),
everything else as called, nothing updated, every change undone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.layers.changes import batch_statistics, changed

L = keras.layers
RNG = np.random.default_rng(3)


def numpy_batch_norm(x, gamma, beta, axis, epsilon):
    x = x.astype(np.float64)
    reduced = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    mean, variance = x.mean(reduced, keepdims=True), x.var(reduced, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma.reshape(shape) + beta.reshape(shape)


def bn_model(axis=-1, dropout=0.0):
    inputs = keras.Input((5, 4, 3))
    bn = L.BatchNormalization(axis=axis, epsilon=1e-5, name="bn")
    outputs = L.Dropout(dropout)(bn(inputs)) if dropout else bn(inputs)
    model = keras.Model(inputs, outputs)
    channels = 3 if axis == -1 else 5
    bn.set_weights([1 + RNG.normal(size=channels), RNG.normal(size=channels), RNG.normal(size=channels),
                    0.5 + RNG.random(channels)])
    return model, bn


@pytest.mark.parametrize("axis", [-1, 1])
def test_outputs_are_numpy_batch_norm_on_the_batch_and_nothing_is_updated(axis):
    model, bn = bn_model(axis)
    x = RNG.normal(2.0, 3.0, size=(6, 5, 4, 3)).astype("float32")
    before = [v.numpy().copy() for v in bn.weights]
    with batch_statistics(model):
        y = model(x, training=False).numpy()
    expected = numpy_batch_norm(x, bn.gamma.numpy(), bn.beta.numpy(), axis, 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    for v, b in zip(bn.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert "call" not in vars(bn)
    moving = model(x, training=False).numpy()  # outside: the moving statistics again
    shape = [1, 1, 1, 3] if axis == -1 else [1, 5, 1, 1]
    np.testing.assert_allclose(moving, (x - before[2].reshape(shape)) / np.sqrt(before[3].reshape(shape) + 1e-5)
                               * before[0].reshape(shape) + before[1].reshape(shape), rtol=1e-4, atol=1e-4)


def test_dropout_keeps_the_calls_training_flag_and_a_frozen_layer_its_moving_statistics():
    model, bn = bn_model(dropout=0.5)
    x = RNG.normal(size=(6, 5, 4, 3)).astype("float32")
    with batch_statistics(model):
        a, b = model(x, training=False).numpy(), model(x, training=False).numpy()
    np.testing.assert_array_equal(a, b)  # no dropout
    assert np.abs(a.reshape(-1, 3).mean(0)).max() > 0.1  # β shifts the batch mean: not all zero
    bn.trainable = False
    with batch_statistics(model):
        frozen = model(x, training=False).numpy()
    np.testing.assert_allclose(frozen, model(x, training=False).numpy(), rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 1])
def test_second_derivatives_are_exact(axis):
    """d²/dt² of Σ BN(x + t v)² at t = 0 against central differences in float64 NumPy (TensorFlow's
    ``tf.nn.moments`` stops the gradient at the mean inside the variance, which this would catch)."""
    model, bn = bn_model(axis)
    x = RNG.normal(size=(4, 5, 4, 3)).astype("float32")
    v = RNG.normal(size=x.shape).astype("float32")
    weights = RNG.normal(size=x.shape).astype("float32")

    def objective(inputs):
        return tf.reduce_sum(weights * model(inputs, training=False) ** 2)

    with batch_statistics(model):
        t = tf.Variable(0.0)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = objective(x + t * v)
            first = inner.gradient(value, t)
        second = float(outer.gradient(first, t))
    gamma, beta = bn.gamma.numpy(), bn.beta.numpy()

    def numpy_objective(step):
        return float((weights * numpy_batch_norm(x + step * v, gamma, beta, axis, 1e-5) ** 2).sum())

    eps = 1e-3
    expected = (numpy_objective(eps) - 2 * numpy_objective(0.0) + numpy_objective(-eps)) / eps**2
    assert second == pytest.approx(expected, rel=2e-3)


def test_changed_restores_on_error():
    layer = L.Dense(2)
    with pytest.raises(RuntimeError):
        with changed([(layer, "activation", keras.activations.relu), (layer, "activation", keras.activations.tanh)]):
            assert layer.activation is keras.activations.relu  # the first change of a pair wins
            raise RuntimeError
    assert layer.activation is keras.activations.linear
