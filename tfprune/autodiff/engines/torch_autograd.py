"""The PyTorch engine: ``torch.autograd.grad``, twice (``create_graph=True``) for Hessian-vector
products (see :mod:`tfprune.autodiff.engines`). Steps run eagerly. Attention runs on PyTorch's
plain (math) kernel for a second derivative: its fused CPU kernels have none."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["COMPILES_FIRST_ROUND", "value_and_gradients", "hessian_vector_product", "compile", "inference"]

COMPILES_FIRST_ROUND = False


def _leaves(values):
    return [v.detach().requires_grad_(True) for v in values]


def _dense(grads, values):
    """Zeros for the values a scalar does not depend on (autograd gives ``None``)."""
    return [torch.zeros_like(v) if g is None else g for g, v in zip(grads, values)]


def _gradients(scalar, values, create_graph=False):
    if not scalar.requires_grad:  # depends on none of the values
        return [torch.zeros_like(v) for v in values]
    return _dense(torch.autograd.grad(scalar, values, allow_unused=True, create_graph=create_graph), values)


def value_and_gradients(function, values):
    values = _leaves(values)
    with torch.enable_grad():
        value, aux = function(values)
        grads = _gradients(value, values)
    return value.detach(), aux, grads


def hessian_vector_product(function, values, direction):
    values = _leaves(values)
    with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
        grads = _gradients(function(values), values, create_graph=True)
        inner_product = sum(torch.sum(g * d.detach()) for g, d in zip(grads, direction))
        return [g.detach() for g in _gradients(inner_product, values)]


def compile(function, variables):
    """``function`` itself: PyTorch runs it op by op."""
    return function


def inference():
    """``torch.no_grad()``: Keras's variables require gradients, so results would keep their graphs."""
    return torch.no_grad()
