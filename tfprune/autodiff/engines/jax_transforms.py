"""The JAX engine: ``jax.value_and_grad``, and forward-over-reverse (``jax.jvp`` of ``jax.grad``)
for Hessian-vector products (see :mod:`tfprune.autodiff.engines`). Steps run op by op: a jitted
step would read the variables it does not differentiate as constants of its first trace."""

from __future__ import annotations

import jax

__all__ = ["value_and_gradients", "hessian_vector_product", "compile"]


def value_and_gradients(function, values):
    (value, aux), grads = jax.value_and_grad(function, has_aux=True)(list(values))
    return value, aux, grads


def hessian_vector_product(function, values, direction):
    return jax.jvp(jax.grad(function), (list(values),), (list(direction),))[1]


def compile(function):
    return function
