"""Batch normalisation on the batch's own statistics, with closed-form first and second derivatives.

Per channel, over the ``n`` values of the batch the channel sees (all-reduced over the replicas of
a ``tf.distribute`` strategy):

    x̂ = (x − mean x) · r,  r = (var x + ε)^(−1/2),  y = γ x̂ + β.

Its gradient for an upstream gradient ``g`` (``ḡ = mean g``, ``A = mean(g x̂)``) is

    ∂x = γ r (g − ḡ − x̂ A),  ∂γ = Σ g x̂,  ∂β = Σ g,

and that gradient's own gradient (for cotangents ``U`` of ∂x, ``a`` of ∂γ, ``b`` of ∂β, with
``J w = r (w − mean w − x̂ mean(x̂ w))`` the symmetric Jacobian of x̂) is

    with respect to g:  γ r (U − Ū − x̂ mean(x̂ U)) + a x̂ + b
    with respect to γ:  r Σ U (g − ḡ − x̂ A)
    with respect to x:  J(k g + h U) − (γ r² / n) Σ U (g − ḡ − x̂ A) · x̂,
                        k = a − γ r mean(x̂ U),  h = −γ r A.

Autodiff of the forward formula gives the same numbers (GraSP's Hessian-vector products need
them) but keeps more batch-sized tensors alive for the second derivative: each reduction's
gradient is tiled to the batch's size, and every intermediate of the forward pass is kept. Written
out, each line above is a few element-wise passes over ``g``, ``x̂`` and ``U`` with per-channel
factors broadcast, and only x̂ is kept besides the tensors the network keeps anyway. GraSP on
``keras.applications.ResNet50`` (batch 32 in two halves) peaked at 7.8 GB with autodiff of the
formula and 5.7 GB with this (``docs/benchmarks.md``). Derivatives of third order are not
provided: the second derivative treats x̂ and r as given.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from tfprune.base import backends

__all__ = ["normalised"]


def _replica_context():
    """The current replica context when there are several replicas, else None."""
    context = tf.distribute.get_replica_context()
    return None if context is None or context.num_replicas_in_sync == 1 else context


def _global_sum(x):
    """``x`` summed over the replicas (itself on one device)."""
    context = _replica_context()
    return x if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, x)


def _count(x, axes):
    """The number of values each channel has in the global batch, as ``x``'s dtype."""
    local = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
    return _global_sum(local)


def _fusable(x, axes):
    """Whether TensorFlow's fused kernel computes this batch norm: one device (its statistics are
    the replica's own), a 4-D float32 batch normalised per channel of its last axis."""
    return _replica_context() is None and x.shape.rank == 4 and list(axes) == [0, 1, 2] and x.dtype == tf.float32


def _sum(x, axes):
    return tf.reduce_sum(x, axis=axes, keepdims=True)


class _Statistics:
    """The batch's per-channel statistics of ``x``: x̂ and ``r`` (kept for the gradients; ``x`` is
    not), and the first-order gradient built on them."""

    def __init__(self, x, axes, epsilon):
        self.axes = axes
        self.count = _count(x, axes)
        centred = x - _global_sum(_sum(x, axes)) / self.count
        self.inverse_std = tf.math.rsqrt(_global_sum(_sum(tf.square(centred), axes)) / self.count + epsilon)
        self.standardised = centred * self.inverse_std

    def backward(self, gamma, upstream):
        """``(∂x, Σ g x̂, Σ g, A, ḡ)`` for the upstream gradient ``g``: the sums per replica, the
        means over the global batch, all shaped as ``gamma``."""
        upstream_sum = _sum(upstream, self.axes)
        product_sum = _sum(upstream * self.standardised, self.axes)
        mean_upstream = _global_sum(upstream_sum) / self.count
        mean_product = _global_sum(product_sum) / self.count
        d_x = (upstream - mean_upstream - self.standardised * mean_product) * (gamma * self.inverse_std)
        return d_x, product_sum, upstream_sum, mean_product, mean_upstream


def normalised(x, gamma, beta, axes, epsilon, second_derivative=True):
    """``γ x̂ + β``, normalised by the statistics of the batch (global under a strategy), with the
    closed-form gradient and second derivative of the module docstring.

    Args:
        x: A float tensor.
        gamma: The scale, shaped to broadcast against ``x`` (size 1 on every reduced axis).
        beta: The shift, shaped as ``gamma``.
        axes: The reduced axes (all but the channel axis), a list of ints.
        epsilon: Added to the variance.
        second_derivative: Whether a second derivative will be taken. Without one, a 4-D
            channels-last float32 batch on one device runs TensorFlow's fused kernel
            (``FusedBatchNormV3`` and its gradient: one pass each, where the closed form takes
            several; its second derivative is exact too but keeps more tensors alive).

    Returns:
        A tensor shaped as ``x``.

    Example:
        >>> y = normalised(x, tf.ones((1, 1, 1, 3)), tf.zeros((1, 1, 1, 3)), [0, 1, 2], 1e-3)
    """
    if not backends.is_tensorflow():
        return _formula(x, gamma, beta, axes, epsilon)
    if not second_derivative and _fusable(x, axes):
        return tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.reshape(gamma, [-1]), offset=tf.reshape(beta, [-1]), mean=tf.zeros([0]),
            variance=tf.zeros([0]), epsilon=epsilon, is_training=True)[0]

    @tf.custom_gradient
    def normalise(x, gamma, beta):
        statistics = _Statistics(x, axes, epsilon)

        def gradient(upstream):
            return _gradient(x, gamma, upstream, statistics)

        return statistics.standardised * gamma + beta, gradient

    return normalise(x, gamma, beta)


def _formula(x, gamma, beta, axes, epsilon):
    """``γ x̂ + β`` in ``keras.ops``, for the backend's autodiff to differentiate."""
    centred = x - ops.mean(x, axis=axes, keepdims=True)
    inverse_std = ops.rsqrt(ops.mean(ops.square(centred), axis=axes, keepdims=True) + epsilon)
    return centred * inverse_std * gamma + beta


def _gradient(x, gamma, upstream, statistics):
    """``(∂x, ∂γ, ∂β)`` for ``upstream``, as an operation whose own gradient is the closed form.

    ``x`` is an input only so that a tape recording this gradient (for a second derivative) sees
    its dependence on ``x``; the closed form reads the statistics instead."""
    count, inverse_std = statistics.count, statistics.inverse_std

    @tf.custom_gradient
    def backward(x, gamma, upstream):
        d_x, product_sum, upstream_sum, mean_product, mean_upstream = statistics.backward(gamma, upstream)  # A, ḡ
        scale = gamma * inverse_std

        def second(d_x_bar, d_gamma_bar, d_beta_bar):
            standardised = statistics.standardised
            if d_x_bar is None:  # only ∂γ or ∂β was used: ∂x's cotangent is zero
                d_x_bar = tf.zeros_like(upstream)
            # γ J U: the first-order gradient again, for U; it also gives Σ U x̂ and Σ U
            d_upstream, u_product_sum, u_sum, mean_u_product, _ = statistics.backward(gamma, d_x_bar)
            bracket_local = _sum(d_x_bar * upstream, statistics.axes) - mean_upstream * u_sum \
                - mean_product * u_product_sum
            bracket = _global_sum(bracket_local)  # Σ U (g − ḡ − x̂ A)
            a = 0.0
            if d_gamma_bar is not None:
                a = d_gamma_bar
                d_upstream += a * standardised
            if d_beta_bar is not None:
                d_upstream += d_beta_bar
            k = a - scale * mean_u_product
            h = -scale * mean_product
            mean_w = _global_sum(k * upstream_sum + h * u_sum) / count
            mean_product_w = _global_sum(k * product_sum + h * u_product_sum) / count
            e = -scale * inverse_std * bracket / count
            d_x_grad = (inverse_std * k) * upstream + (inverse_std * h) * d_x_bar \
                + (e - inverse_std * mean_product_w) * standardised - inverse_std * mean_w
            return d_x_grad, inverse_std * bracket_local, d_upstream

        return (d_x, product_sum, upstream_sum), second

    return backward(x, gamma, upstream)
