"""AutoPrune: pruning by trainable auxiliary parameters (Xiao, Wang, Rajasekaran, NeurIPS 2019).

Each pruned weight (weight mode) or each output unit of a layer (neuron mode: a Dense column, a
convolution filter) gets a trainable auxiliary parameter ``m``. The forward pass uses
``W ⊙ h(m)`` with the step ``h(m) = 1[m > τ]``; the backward pass replaces the step's derivative
by a straight-through estimator ``g′`` and, by default, decouples ``m``'s update from the weight's
magnitude:

    ∂L/∂W = dy ⊙ h(m)        ∂L/∂m = dy ⊙ sign(W) ⊙ g′(m)     (dy = ∂L/∂(W ⊙ h(m)))

A penalty ``λ·R_n(m)`` pushes every ``m`` down; the data pushes back where a weight matters. ``W``
stays dense, so a pruned weight can come back when ``m`` climbs above ``τ`` again.

Example:
    >>> model = autoprune.wrap(tfprune.models.lenet_300_100(), penalty=1e-4)
    >>> model.compile(autoprune.AuxOptimizer(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2)),
    ...               keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> model.fit(x, y, epochs=10, callbacks=[autoprune.Monitor(target_sparsity=0.95)])
    >>> plain = tfprune.strip(autoprune.harden(model))
"""
from tfprune.autoprune.callbacks import Monitor, PenaltySchedule
from tfprune.autoprune.estimators import STES, aux_norm, masked_kernel
from tfprune.autoprune.layer import MODES, AutoPruneLayer, aux_variables, harden, set_penalty, wrap
from tfprune.autoprune.optimizer import AuxOptimizer

__all__ = ["STES", "MODES", "masked_kernel", "aux_norm", "AutoPruneLayer", "wrap", "aux_variables", "set_penalty",
           "AuxOptimizer", "Monitor", "PenaltySchedule", "harden"]
