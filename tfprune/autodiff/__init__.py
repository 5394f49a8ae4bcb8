"""Gradients of a model with respect to its masked weights: loss gradients and Hessian-vector
products (:mod:`gradients`), batch norm on batch statistics with closed-form derivatives
(:mod:`batch_norm`) and the linearised network that SynFlow and the collapse check evaluate
(:mod:`linearized`). Every criterion that differentiates goes through this layer."""
