"""batch_norm.normalised: values, gradients and second derivatives (with respect to x, γ and β and
to the upstream gradient) against float64 NumPy. Two replicas: tests/test_distribute.py."""

import numpy as np
import pytest
import tensorflow as tf

from tfprune.autodiff.batch_norm import normalised

RNG = np.random.default_rng(11)
EPSILON = 1e-3
SHAPES = {"4-D": (6, 3, 2, 4), "3-D": (6, 5, 4)}  # channels last


def reduced(x):
    return list(range(x.ndim - 1))


def numpy_objective(x, gamma, beta, weights):
    """Σ W ⊙ y³ in float64, y the batch norm of x (channels last): not quadratic in y, so its
    second derivative reads every path of the Hessian."""
    x = x.astype(np.float64)
    mean, variance = x.mean(tuple(reduced(x)), keepdims=True), x.var(tuple(reduced(x)), keepdims=True)
    y = (x - mean) / np.sqrt(variance + EPSILON) * gamma + beta
    return float((weights * y ** 3).sum())


def line(x, gamma, beta, directions, step):
    """The float64 point ``step`` along the line through ``(x, γ, β)``."""
    return [a.astype(np.float64) + step * d.astype(np.float64) for a, d in zip((x, gamma, beta), directions)]


def draw(path="4-D"):
    shape = SHAPES[path]
    channels = (1,) * (len(shape) - 1) + shape[-1:]
    x = RNG.normal(1.5, 2.0, size=shape).astype("float32")
    gamma = (1 + 0.3 * RNG.normal(size=channels)).astype("float32")
    beta = RNG.normal(size=channels).astype("float32")
    weights = RNG.normal(size=shape).astype("float32")
    directions = [RNG.normal(size=a.shape).astype("float32") for a in (x, gamma, beta)]
    return x, gamma, beta, weights, directions


def first_and_second(x, gamma, beta, weights, directions):
    """d/dt and d²/dt² of the objective along ``x + t v_x, γ + t v_γ, β + t v_β`` at t = 0, by
    nested tapes through ``normalised``."""
    t = tf.constant(0.0)
    with tf.GradientTape() as outer:
        outer.watch(t)
        with tf.GradientTape() as inner:
            inner.watch(t)
            args = [tf.constant(a) + t * d for a, d in zip((x, gamma, beta), directions)]
            value = tf.reduce_sum(weights * normalised(*args, reduced(x), EPSILON) ** 3)
        first = inner.gradient(value, t)
    return float(first), float(outer.gradient(first, t))


def central_differences(x, gamma, beta, weights, directions):
    """First and second derivatives along the line in float64 (steps 1e-6 and 1e-4: truncation and
    rounding errors both below 1e-6 of the values here)."""
    def f(step):
        return numpy_objective(*line(x, gamma, beta, directions, step), weights)

    first = (f(1e-6) - f(-1e-6)) / 2e-6
    return first, (f(1e-4) - 2 * f(0.0) + f(-1e-4)) / 1e-8


@pytest.mark.parametrize("path", SHAPES)
def test_values_are_numpy_batch_norm(path):
    x, gamma, beta, _, _ = draw(path)
    y = normalised(tf.constant(x), gamma, beta, reduced(x), EPSILON).numpy()
    x64, axes = x.astype(np.float64), tuple(reduced(x))
    expected = (x64 - x64.mean(axes)) / np.sqrt(x64.var(axes) + EPSILON) * gamma + beta
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", SHAPES)
@pytest.mark.parametrize("moved", ["x", "gamma", "beta", "all"])
def test_first_and_second_derivatives_match_central_differences(moved, path):
    """Moving γ (or β) along the line makes ∂γ (or ∂β) part of the first derivative, so the second
    reads the gradient's own gradient for its cotangents ``a`` and ``b`` as well as ``U``."""
    x, gamma, beta, weights, directions = draw(path)
    keep = {"x": 0, "gamma": 1, "beta": 2}
    directions = [d if moved in ("all", name) else np.zeros_like(d) for name, d in zip(keep, directions)]
    first, second = first_and_second(x, gamma, beta, weights, directions)
    expected_first, expected_second = central_differences(x, gamma, beta, weights, directions)
    assert first == pytest.approx(expected_first, rel=1e-4)
    if moved == "beta":  # y is linear in β: only the cubic's own curvature, 6 Σ W y v_β²
        assert second == pytest.approx(expected_second, rel=1e-3)
    else:
        assert second == pytest.approx(expected_second, rel=2e-3)


@pytest.mark.parametrize("path", SHAPES)
def test_without_a_second_derivative_the_values_and_gradient_are_the_same(path):
    """``second_derivative=False`` (TensorFlow's fused kernel on the 4-D batch, the closed form on
    the 3-D one): the same values and first derivative along the line as float64 NumPy."""
    x, gamma, beta, weights, directions = draw(path)
    t = tf.constant(0.0)
    with tf.GradientTape() as tape:
        tape.watch(t)
        args = [tf.constant(a) + t * d for a, d in zip((x, gamma, beta), directions)]
        y = normalised(*args, reduced(x), EPSILON, second_derivative=False)
        value = tf.reduce_sum(weights * y ** 3)
    x64, axes = x.astype(np.float64), tuple(reduced(x))
    expected = (x64 - x64.mean(axes)) / np.sqrt(x64.var(axes) + EPSILON) * gamma + beta
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    expected_first, _ = central_differences(x, gamma, beta, weights, directions)
    assert float(tape.gradient(value, t)) == pytest.approx(expected_first, rel=1e-4)


def test_the_fused_kernel_keeps_a_small_epsilon():
    """ε = 1e-8 on a batch of variance ~1e-6: the fused path adds ε itself (TensorFlow's v1 wrapper
    would raise it to 1.001e-5 and change the output by a factor of ~3)."""
    x = (1e-3 * RNG.normal(size=SHAPES["4-D"])).astype("float32")
    ones, zeros = np.ones((1, 1, 1, 4), "float32"), np.zeros((1, 1, 1, 4), "float32")
    y = normalised(tf.constant(x), ones, zeros, [0, 1, 2], 1e-8, second_derivative=False).numpy()
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean((0, 1, 2))) / np.sqrt(x64.var((0, 1, 2)) + 1e-8)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
