"""AutoPrune's masked kernel and its straight-through estimators (Xiao, Wang, Rajasekaran, NeurIPS 2019).

The forward pass uses ``W ⊙ h(m)`` with the step ``h(m) = 1[m > τ]``; the backward pass replaces the
step's derivative by a straight-through estimator ``g′`` and, by default, decouples ``m``'s update
from the weight's magnitude:

    ∂L/∂W = dy ⊙ h(m)        ∂L/∂m = dy ⊙ sign(W) ⊙ g′(m)     (dy = ∂L/∂(W ⊙ h(m)))

:func:`aux_norm` is the penalty ``R_n(m)`` with the same estimator.
"""

from __future__ import annotations

from keras import ops

from tfprune.base import arguments

__all__ = ["STES", "masked_kernel", "aux_norm", "check_ste"]

STES = ("softplus", "leaky_relu", "linear")


def check_ste(ste, alpha):
    """Raises a ValueError on an unknown estimator name or a negative LeakyReLU slope."""
    arguments.choice("ste", ste, STES)
    arguments.number("alpha", alpha, 0)


def _ste_derivative(aux, ste="softplus", threshold=0.0, alpha=0.01):
    """The straight-through estimator g′(m) that stands in for the step's derivative.

    Args:
        aux: The auxiliary parameters m (a tensor).
        ste: ``"softplus"`` (g′ = sigmoid(m)), ``"leaky_relu"`` (1 above ``threshold``, ``alpha``
            below) or ``"linear"`` (1).
        threshold: τ.
        alpha: The LeakyReLU slope below τ.

    Returns:
        A tensor shaped like ``aux``.
    """
    check_ste(ste, alpha)
    if ste == "softplus":
        return ops.sigmoid(aux)
    if ste == "leaky_relu":
        return ops.where(aux > threshold, ops.ones_like(aux), ops.full_like(aux, alpha))
    return ops.ones_like(aux)


def _broadcast_axes(kernel_shape, aux_shape):
    """Axes of the kernel that one auxiliary entry spans: none (weight mode) or all but the last."""
    kernel_shape, aux_shape = tuple(kernel_shape), tuple(aux_shape)
    if aux_shape == kernel_shape:
        return []
    if aux_shape == kernel_shape[-1:]:
        return list(range(len(kernel_shape) - 1))
    raise ValueError(
        f"auxiliary parameters of shape {aux_shape} fit neither the kernel's shape {kernel_shape} "
        f"(weight mode) nor its last axis {kernel_shape[-1:]} (neuron mode)"
    )


def masked_kernel(kernel, aux, *, ste="softplus", decoupled=True, threshold=0.0, alpha=0.01):
    """``W ⊙ h(m)`` as one op over ``(W, m)`` with AutoPrune's gradients.

    Forward: ``W ⊙ 1[m > τ]``. Backward, with ``dy`` the incoming gradient:
    ``∂W = dy ⊙ h(m)``; ``∂m = dy ⊙ sign(W) ⊙ g′(m)`` when ``decoupled`` (its inner product with
    the exact STE gradient ``dy ⊙ W ⊙ g′(m)`` is ``Σ (dy·g′)²|W| ≥ 0`` in weight mode), the exact
    one otherwise. In neuron mode ``m`` has one entry per output unit (the kernel's last axis),
    broadcast over the other axes, and ``∂m`` sums over them. Works in ``fit``, under
    ``jit_compile=True`` and under a distribution strategy.

    Args:
        kernel: The weight W.
        aux: The auxiliary parameters m: shaped like ``kernel`` or like its last axis.
        ste: The estimator of the step's derivative: ``"softplus"`` (g′ = sigmoid(m)),
            ``"leaky_relu"`` (1 above τ, ``alpha`` below) or ``"linear"`` (1).
        decoupled: Use ``sign(W)`` instead of ``W`` in ``∂m``.
        threshold: τ.
        alpha: The LeakyReLU slope below τ.

    Returns:
        A tensor shaped like ``kernel``.

    Raises:
        ArgumentError: on an unknown ``ste`` or a negative ``alpha``.
        ValueError: on a shape of ``aux`` that fits neither mode.

    Example:
        >>> w, m = keras.Variable(np.ones((3, 2), "float32")), keras.Variable([0.5, -0.5])
        >>> masked_kernel(w, m)  # second column zero; its m still gets a gradient
    """
    check_ste(ste, alpha)
    kernel, aux = ops.convert_to_tensor(kernel), ops.convert_to_tensor(aux)
    axes = _broadcast_axes(kernel.shape, aux.shape)

    @ops.custom_gradient
    def product(w, m):
        gate = ops.cast(m > threshold, w.dtype)

        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream  # positional on TensorFlow, by name elsewhere
            slope = ops.cast(_ste_derivative(m, ste, threshold, alpha), dy.dtype)
            d_aux = dy * (ops.sign(w) if decoupled else w) * slope
            if axes:
                d_aux = ops.sum(d_aux, axis=axes)
            return dy * gate, ops.cast(d_aux, m.dtype)

        return w * gate, grad

    return product(kernel, aux)


def aux_norm(aux, n=1, *, ste="softplus", threshold=0.0, alpha=0.01):
    """The penalty ``R_n = Σ h(m)ⁿ`` (the n-th power of ‖h(m)‖ₙ) with its gradient through the STE.

    Its value is the number of entries above τ for every n; its gradient is ``n·h(m)ⁿ⁻¹·g′(m)``:
    for ``n = 1`` a steady push ``g′(m) ≥ 0`` on every m, for ``n ≥ 2`` only on the entries that
    are still on (pruned entries are left where they are).

    Args:
        aux: The auxiliary parameters m.
        n: A positive integer.
        ste, threshold, alpha: As in :func:`masked_kernel`.

    Returns:
        A scalar tensor.

    Example:
        >>> penalty = 1e-4 * aux_norm(m)
    """
    arguments.count("n", n)
    check_ste(ste, alpha)

    @ops.custom_gradient
    def norm(m):
        gate = ops.cast(m > threshold, m.dtype)

        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream
            return dy * n * ops.power(gate, n - 1) * _ste_derivative(m, ste, threshold, alpha)

        return ops.sum(gate), grad

    return norm(ops.convert_to_tensor(aux))
