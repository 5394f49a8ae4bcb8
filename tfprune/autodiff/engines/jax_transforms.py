"""The JAX engine: ``jax.value_and_grad``, forward-over-reverse (``jax.jvp`` of ``jax.grad``) for
Hessian-vector products, and ``jax.jit`` for compiled steps (see :mod:`tfprune.autodiff.engines`)."""

from __future__ import annotations

import contextlib

import jax
import keras

__all__ = ["COMPILES_FIRST_ROUND", "value_and_gradients", "hessian_vector_product", "compile", "inference"]

COMPILES_FIRST_ROUND = True


def value_and_gradients(function, values):
    (value, aux), grads = jax.value_and_grad(function, has_aux=True)(list(values))
    return value, aux, grads


def hessian_vector_product(function, values, direction):
    return jax.jvp(jax.grad(function), (list(values),), (list(direction),))[1]


def compile(function, variables):
    """``function`` under ``jax.jit``, as a pure function of ``variables``' values.

    Each call passes the variables' current values in, and the step reads them through a
    :class:`keras.StatelessScope` (as ``model.stateless_call`` does): a jitted function would
    otherwise keep the values of its first trace as constants."""
    variables = list(variables)

    @jax.jit
    def pure(state, args):
        with keras.StatelessScope(state_mapping=list(zip(variables, state))):
            return function(*args)

    return lambda *args: pure([v.value for v in variables], args)


def inference():
    """A no-op: JAX differentiates only under its transformations."""
    return contextlib.nullcontext()
