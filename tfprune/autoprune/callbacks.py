"""Callbacks for AutoPrune training: :class:`Monitor` (sparsity, and stopping at a target) and
:class:`PenaltySchedule` (the penalty λ over epochs)."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.autoprune.layer import autoprune_layers, set_penalty
from tfprune.base import arguments

__all__ = ["Monitor", "PenaltySchedule"]


def _states(layers):
    """``(path, h(m) as bool array, weights per m entry)`` for every pruned weight."""
    return [
        (v.path, gate, int(np.prod(v.shape)) // gate.size)
        for layer in layers
        for (v, _), gate in zip(layer.pruned_variables, layer.gates())
    ]


class Monitor(keras.callbacks.Callback):
    """Logs AutoPrune's masks after every epoch and can stop pruning at a target sparsity.

    Per epoch it records the sparsity of every pruned weight and in total (the share of weights
    whose mask is off), and how many masks flipped on→off (``pruned``) and off→on
    (``recovered``) since the previous epoch (the start of training for the first), counted in
    auxiliary entries (weights in weight mode, units in neuron mode). ``sparsity``, ``pruned``
    and ``recovered`` also go into the epoch's logs (``history.history``). When the total
    sparsity reaches ``target_sparsity`` it sets λ to 0 in every layer, once.

    Args:
        target_sparsity: Stop growing sparsity once it is reached; ``None`` never stops.
        verbose: 1 prints one line per epoch, 0 is silent.

    Attributes:
        history: One dict per epoch: ``epoch``, ``sparsity``, ``layers`` (weight path →
            sparsity), ``pruned``, ``recovered``, ``penalty_off`` (λ was set to 0 this epoch).
        target_epoch: The epoch at which the target was reached, or ``None``.

    Example:
        >>> monitor = autoprune.Monitor(target_sparsity=0.95)
        >>> model.fit(x, y, epochs=20, callbacks=[monitor]); monitor.history[-1]["sparsity"]
    """

    def __init__(self, target_sparsity=None, verbose=1):
        super().__init__()
        self.target_sparsity = arguments.number("target_sparsity", target_sparsity, 0, 1, low_open=True,
                                                high_open=True, optional=True)
        self.verbose = arguments.verbosity(verbose)
        self.history = []
        self.target_epoch = None

    def on_train_begin(self, logs=None):
        self._previous = _states(autoprune_layers(self.model))

    def on_epoch_end(self, epoch, logs=None):
        current = _states(autoprune_layers(self.model))
        pruned = sum(int(np.sum(old & ~new)) for (_, old, _), (_, new, _) in zip(self._previous, current))
        recovered = sum(int(np.sum(~old & new)) for (_, old, _), (_, new, _) in zip(self._previous, current))
        off = {path: int(np.sum(~gate)) * per for path, gate, per in current}
        sizes = {path: gate.size * per for path, gate, per in current}
        sparsity = sum(off.values()) / sum(sizes.values())
        penalty_off = self.target_sparsity is not None and self.target_epoch is None and sparsity >= self.target_sparsity
        if penalty_off:
            set_penalty(self.model, 0.0)
            self.target_epoch = epoch
        self.history.append({
            "epoch": epoch, "sparsity": sparsity, "layers": {p: off[p] / sizes[p] for p in off},
            "pruned": pruned, "recovered": recovered, "penalty_off": penalty_off,
        })
        if logs is not None:
            logs.update(sparsity=sparsity, pruned=pruned, recovered=recovered)
        if self.verbose:
            layers = ", ".join(f"{p} {s:.1%}" for p, s in self.history[-1]["layers"].items())
            note = f"; target {self.target_sparsity:.1%} reached, penalty set to 0" if penalty_off else ""
            print(f"AutoPrune epoch {epoch + 1}: sparsity {sparsity:.2%} ({layers}); "
                  f"pruned {pruned}, recovered {recovered}{note}")
        self._previous = current


class PenaltySchedule(keras.callbacks.Callback):
    """Sets λ of every AutoPrune layer at the start of each epoch from ``schedule(epoch)``.

    Args:
        schedule: A function of the epoch (0-based) returning λ ≥ 0.

    Example:
        >>> warm_then_free = autoprune.PenaltySchedule(lambda epoch: 1e-4 if epoch < 8 else 0.0)
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        set_penalty(self.model, float(self.schedule(epoch)))
