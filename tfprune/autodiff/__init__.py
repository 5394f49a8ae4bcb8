"""Gradients of a model with respect to its masked weights: the data every data-driven part reads,
as ``fit`` takes it (:mod:`batches`), the loss it differentiates (:mod:`losses`), loss gradients and
Hessian-vector products (:mod:`gradients`), batch norm on batch statistics with closed-form
derivatives (:mod:`batch_norm`) and the linearised network that SynFlow and the collapse check
evaluate (:mod:`linearized`). Every criterion that differentiates goes through this layer."""
