"""Gradients of a model with respect to its masked weights: the data every data-driven part reads,
as ``fit`` takes it (:mod:`batches`), the loss it differentiates (:mod:`losses`), loss gradients and
Hessian-vector products (:mod:`gradients`), batch norm on batch statistics with closed-form
derivatives (:mod:`batch_norm`), the linearised network (:mod:`linearized`) and the flow network
built on it that SynFlow and the collapse check evaluate (:mod:`flow`), and each Keras backend's
differentiation and compilation (:mod:`engines`). Every criterion that differentiates goes through
this layer."""
