"""Differentiation, one implementation per Keras backend: the only code in tfprune that calls a
backend's autodiff.

Every engine module provides the same four functions and one flag:

* ``value_and_gradients(function, values)``: for ``function(values) -> (scalar, aux)``, returns
  ``(scalar, aux, gradients)``, one dense gradient per value (zeros where the scalar does not
  depend on it);
* ``hessian_vector_product(function, values, direction)``: for ``function(values) -> scalar``,
  returns ``H · direction``, one tensor per value (GraSP);
* ``compile(function, variables)``: the function as the backend compiles a scoring step that
  reads ``variables`` (TensorFlow: a ``tf.function``; JAX: ``jax.jit`` of a pure function of the
  variables' values; PyTorch runs it as it is, op by op);
* ``inference()``: a context in which forward passes record nothing for differentiation
  (PyTorch's ``torch.no_grad``: Keras's variables require gradients there, so every result would
  otherwise keep its graph alive; TensorFlow and JAX record only when asked);
* ``COMPILES_FIRST_ROUND``: whether a lone first round runs compiled too (JAX, whose op-by-op
  dispatch costs more than compiling a step; on TensorFlow tracing costs more than one round).

``values`` is a list of tensors; the function runs the model with them substituted for its
weights (:func:`tfprune.autodiff.gradients.substitute`), so nothing is written to a variable.

Example:
    >>> value, outputs, grads = current().value_and_gradients(loss_and_outputs, values)
"""

from __future__ import annotations

import contextlib
import importlib

from tfprune.base import backends

__all__ = ["current", "inference"]

_MODULES = {"tensorflow": "tensorflow_tape", "jax": "jax_transforms", "torch": "torch_autograd"}


def current():
    """The engine module of the Keras backend in use.

    Raises:
        BackendError: for a backend without automatic differentiation (``numpy``).
    """
    module = _MODULES.get(backends.name())
    if module is None:
        raise backends.BackendError(f"Keras runs on {backends.name()!r}, which cannot differentiate: gradient-based "
                                    "scores need KERAS_BACKEND=tensorflow, jax or torch")
    return importlib.import_module(f"{__name__}.{module}")


def inference():
    """The current engine's :func:`inference` context (a no-op on a backend without an engine).

    Example:
        >>> with engines.inference():
        ...     outputs = model(x)   # on PyTorch, no autograd graph is kept
    """
    module = _MODULES.get(backends.name())
    return contextlib.nullcontext() if module is None else current().inference()
