"""Differentiation, one implementation per Keras backend: the only code in tfprune that calls a
backend's autodiff.

Every engine module provides the same three functions and one flag:

* ``value_and_gradients(function, values)``: for ``function(values) -> (scalar, aux)``, returns
  ``(scalar, aux, gradients)``, one dense gradient per value (zeros where the scalar does not
  depend on it);
* ``hessian_vector_product(function, values, direction)``: for ``function(values) -> scalar``,
  returns ``H · direction``, one tensor per value (GraSP);
* ``compile(function, variables)``: the function as the backend compiles a scoring step that
  reads ``variables`` (TensorFlow: a ``tf.function``; JAX: ``jax.jit`` of a pure function of the
  variables' values; PyTorch runs it as it is, op by op);
* ``COMPILES_FIRST_ROUND``: whether a lone first round runs compiled too (JAX, whose op-by-op
  dispatch costs more than compiling a step; on TensorFlow tracing costs more than one round).

``values`` is a list of tensors; the function runs the model with them substituted for its
weights (:func:`tfprune.autodiff.gradients.substitute`), so nothing is written to a variable.

Example:
    >>> value, outputs, grads = current().value_and_gradients(loss_and_outputs, values)
"""

from __future__ import annotations

import importlib

from tfprune.base import backends

__all__ = ["current"]

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
