"""The AutoPrune wrapper: a trainable auxiliary parameter per pruned weight or output unit, put on a
model by :func:`wrap` and taken off by :func:`harden` (which turns ``h(m)`` into tfprune masks)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfprune.autoprune.estimators import aux_norm, check_ste, masked_kernel
from tfprune.base import arguments, distribute, walk
from tfprune.layers import kinds
from tfprune.layers.masked import MaskedLayer, SubstitutingWrapper, relative_path
from tfprune.layers.targets import is_wrapped, prunable_weights
from tfprune.layers.rebuilding import rebuild

__all__ = ["MODES", "AutoPruneLayer", "wrap", "aux_variables", "set_penalty", "harden", "autoprune_layers", "is_aux"]

MODES = ("weight", "neuron")
# Kinds whose last axis is the output unit (neuron mode); a bias is one entry per unit anyway.
NEURON_KINDS = ("dense", "conv", "pointwise", "bias")
_AUX_FLAG = "_tfprune_autoprune_aux"


def _check_neuron_kinds(layer_name, paths_and_kinds):
    bad = [f"{path} ({kind})" for path, kind in paths_and_kinds if kind not in NEURON_KINDS]
    if bad:
        raise ValueError(
            f"neuron mode needs weights whose last axis is the output unit ({', '.join(NEURON_KINDS)} "
            f"kinds); in layer {layer_name!r} {', '.join(bad)} is not: use mode='weight' for it"
        )


def _check_options(ste, decoupled, threshold, alpha, initial_aux, penalty, penalty_norm, weight_decay,
                   aux_weight_decay):
    check_ste(ste, alpha)
    arguments.flag("decoupled", decoupled)
    threshold = arguments.number("threshold", threshold)
    if arguments.number("initial_aux", initial_aux) <= threshold:
        raise arguments.ArgumentError(
            f"initial_aux must be above the threshold ({threshold:g}) so that training starts with every "
            f"weight kept, got {initial_aux!r}"
        )
    arguments.count("penalty_norm", penalty_norm)
    arguments.number("penalty", penalty, 0)
    arguments.number("weight_decay", weight_decay, 0)
    arguments.number("aux_weight_decay", aux_weight_decay, 0)


@keras.saving.register_keras_serializable(package="tfprune")
class AutoPruneLayer(SubstitutingWrapper):
    """Wraps a layer and multiplies chosen weights by learned masks ``h(m)`` in every forward pass.

    The auxiliary parameters m are trainable variables of this wrapper (named ``<weight>_aux``,
    saved with the model, without regulariser); λ is its non-trainable variable ``penalty``,
    which a callback can change. Each call adds the loss ``λ·Σ R_n(m)`` (plus
    ``weight_decay·Σ W²`` over the pruned weights and ``aux_weight_decay·Σ m²``, if set). Usually
    made by :func:`wrap`.

    Args:
        layer: The Keras 3 layer to wrap.
        pruned_weights: Paths, relative to ``layer``, of the weights to prune. Default: the
            layer's prunable weights (see :mod:`tfprune.kinds`).
        mode: ``"weight"`` (one m per weight) or ``"neuron"`` (one m per output unit: the last
            axis of each pruned weight).
        ste, decoupled, threshold, alpha: As in :func:`masked_kernel`.
        initial_aux: The initial value of every m; above ``threshold`` (all weights kept).
        penalty: The initial λ.
        penalty_norm: n of the penalty ``R_n`` (see :func:`aux_norm`).
        weight_decay: Coefficient of an L2 penalty on the dense pruned weights (pruned entries
            included: it shrinks them while they are off, so they come back smaller).
        aux_weight_decay: Coefficient of an L2 penalty on the auxiliary parameters: its gradient
            ``2·aux_weight_decay·m`` reaches m directly (not through the estimator) and pulls every
            m towards 0, i.e. towards the threshold when ``τ = 0``. Default 0: the reconstruction
            in the project's notes puts no decay on m (the rebuttal mentions one; its ablation is
            in docs/autoprune.md).
        **kwargs: Passed to :class:`keras.layers.Wrapper` (e.g. ``name``).

    Example:
        >>> layer = AutoPruneLayer(keras.layers.Dense(4), mode="neuron", penalty=1e-3)
    """

    def __init__(self, layer, pruned_weights=None, mode="weight", ste="softplus", decoupled=True,
                 threshold=0.0, alpha=0.01, initial_aux=1.0, penalty=1e-4, penalty_norm=1,
                 weight_decay=0.0, aux_weight_decay=0.0, **kwargs):
        kwargs.setdefault("name", f"autoprune_{layer.name}")
        super().__init__(layer, **kwargs)
        arguments.choice(f"mode of layer {layer.name!r}", mode, MODES)
        _check_options(ste, decoupled, threshold, alpha, initial_aux, penalty, penalty_norm, weight_decay,
                       aux_weight_decay)
        self.pruned_weights = None if pruned_weights is None else list(pruned_weights)
        self.mode, self.ste, self.decoupled = mode, ste, bool(decoupled)
        self.threshold, self.alpha, self.initial_aux = float(threshold), float(alpha), float(initial_aux)
        self.initial_penalty, self.penalty_norm = float(penalty), int(penalty_norm)
        self.weight_decay, self.aux_weight_decay = float(weight_decay), float(aux_weight_decay)
        self._create_state_if_layer_built()

    def _create_state(self):
        by_path = {relative_path(self.layer, v): v for v in self.layer.weights}
        found = {
            relative_path(self.layer, v): kind
            for _, v, kind in kinds.candidate_weights(self.layer, include_bias=True, include_norm=True)
        }
        if self.pruned_weights is None:
            self.pruned_weights = [relative_path(self.layer, v) for _, v, _ in kinds.candidate_weights(self.layer)]
        missing = [p for p in self.pruned_weights if p not in by_path]
        if missing or not self.pruned_weights:
            raise ValueError(
                f"cannot prune {missing or 'nothing'} in layer {self.layer.name!r}: its weights are {sorted(by_path)}"
            )
        if self.mode == "neuron":
            _check_neuron_kinds(self.layer.name, [(p, found.get(p, "other")) for p in self.pruned_weights])
        self.penalty = self.add_weight(
            name="penalty", shape=(), initializer=keras.initializers.Constant(self.initial_penalty), trainable=False
        )
        for path in self.pruned_weights:
            variable = by_path[path]
            aux = self.add_weight(
                name=path.replace("/", "_") + "_aux",
                shape=variable.shape if self.mode == "weight" else variable.shape[-1:],
                initializer=keras.initializers.Constant(self.initial_aux),
                dtype="float32",
                trainable=True,
            )
            setattr(aux, _AUX_FLAG, True)
            self._pairs.append((variable, aux))

    @property
    def pruned_variables(self):
        """``(weight, aux)`` variable pairs, in the order of ``pruned_weights``."""
        return list(self._pairs)

    @property
    def aux_variables(self):
        """The auxiliary variables m, in the order of ``pruned_weights``."""
        return [m for _, m in self._pairs]

    def gates(self):
        """``h(m)`` of every pruned weight as boolean arrays shaped like its m."""
        return [m.numpy() > self.threshold for _, m in self._pairs]

    def masks(self):
        """``h(m)`` expanded to each pruned weight's shape, as boolean arrays."""
        return [np.broadcast_to(g, tuple(v.shape)) for (v, _), g in zip(self._pairs, self.gates())]

    def substitutes(self):
        options = dict(ste=self.ste, decoupled=self.decoupled, threshold=self.threshold, alpha=self.alpha)
        return [(v, masked_kernel(v.value, m.value, **options)) for v, m in self._pairs]

    def regularization(self):
        """``λ·Σ R_n(m)``, plus ``weight_decay·Σ W²`` over the pruned weights and
        ``aux_weight_decay·Σ m²`` if set."""
        options = dict(ste=self.ste, threshold=self.threshold, alpha=self.alpha)
        norms = [aux_norm(m.value, self.penalty_norm, **options) for _, m in self._pairs]
        loss = ops.multiply(self.penalty.value, ops.sum(ops.stack(norms)))
        if self.weight_decay:
            squares = [ops.sum(ops.square(v.value)) for v, _ in self._pairs]
            loss = loss + self.weight_decay * ops.sum(ops.stack(squares))
        if self.aux_weight_decay:
            squares = [ops.sum(ops.square(m.value)) for _, m in self._pairs]
            loss = loss + self.aux_weight_decay * ops.sum(ops.stack(squares))
        return loss

    def call(self, inputs, *args, training=None, **kwargs):
        outputs = super().call(inputs, *args, training=training, **kwargs)
        self.add_loss(self.regularization())
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "pruned_weights": list(self.pruned_weights),
            "mode": self.mode,
            "ste": self.ste,
            "decoupled": self.decoupled,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "initial_aux": self.initial_aux,
            "penalty": self.initial_penalty,
            "penalty_norm": self.penalty_norm,
            "weight_decay": self.weight_decay,
            "aux_weight_decay": self.aux_weight_decay,
        }


def autoprune_layers(model, required=True):
    layers = [unit for unit, _ in walk.units(model) if isinstance(unit, AutoPruneLayer)]
    if required and not layers:
        raise ValueError(f"model {model.name!r} has no AutoPrune layers: wrap it first with tfprune.autoprune.wrap")
    return layers


def _modes(mode, units):
    """``id(unit) → mode`` from one mode or a dict of unit names (unnamed units: weight mode)."""
    if not isinstance(mode, dict):
        arguments.choice("mode", mode, MODES, advice="or a dict {layer name: mode}")
        return {id(u): mode for u in units}
    names = {u.name for u in units}
    unknown = sorted(set(mode) - names)
    if unknown:
        raise arguments.ArgumentError(f"mode names layers {unknown} that have no pruned weights; pruned layers: "
                                      f"{sorted(names)}")
    for name, m in mode.items():
        arguments.choice(f"mode[{name!r}]", m, MODES)
    return {id(u): mode.get(u.name, "weight") for u in units}


def wrap(model, policy=None, include_bias=False, include_norm=False, *, mode="weight", ste="softplus",
         decoupled=True, threshold=0.0, alpha=0.01, initial_aux=1.0, penalty=1e-4, penalty_norm=1,
         weight_decay=0.0, aux_weight_decay=0.0):
    """Wraps every layer with prunable weights in an :class:`AutoPruneLayer` (all masks on).

    Args:
        model: A built Keras 3 model (Sequential, functional, nested or subclassed), not wrapped.
        policy, include_bias, include_norm: Which weights to prune, as in :func:`tfprune.wrap`.
        mode: ``"weight"``, ``"neuron"``, or a dict from layer name to either (layers not named
            use ``"weight"``).
        ste, decoupled, threshold, alpha: As in :func:`masked_kernel`.
        initial_aux: The initial value of every m (above ``threshold``).
        penalty: The initial λ (change it later with :func:`set_penalty` or :class:`Monitor`).
        penalty_norm: n of the penalty (see :func:`aux_norm`).
        weight_decay: L2 coefficient on the dense pruned weights (see :class:`AutoPruneLayer`).
        aux_weight_decay: L2 coefficient on the auxiliary parameters m (see :class:`AutoPruneLayer`).

    Returns:
        The wrapped model: a new model sharing the layers of a functional or Sequential ``model``,
        or ``model`` itself, changed in place, if it is subclassed. Compile it after wrapping
        (with :class:`AuxOptimizer` to give m its own optimiser).

    Raises:
        ArgumentError: on anything but a Keras 3 model, or a bad option (its type or its range).
        ValueError: on an unbuilt or already wrapped model, or neuron mode on a weight whose last
            axis is not its output unit.

    Example:
        >>> model = autoprune.wrap(model, mode={"conv1": "neuron"}, ste="leaky_relu", penalty=1e-4)
    """
    arguments.keras_model(model)
    if is_wrapped(model) or autoprune_layers(model, required=False):
        raise ValueError(f"model {model.name!r} is already wrapped")
    _check_options(ste, decoupled, threshold, alpha, initial_aux, penalty, penalty_norm, weight_decay,
                   aux_weight_decay)
    targets = prunable_weights(model, policy, include_bias, include_norm)
    units = list({id(t.unit): t.unit for t in targets}.values())
    modes = _modes(mode, units)
    chosen = {}
    for t in targets:
        chosen.setdefault(id(t.unit), []).append((relative_path(t.unit, t.variable), t.kind))
    for unit in units:
        if modes[id(unit)] == "neuron":
            _check_neuron_kinds(unit.name, chosen[id(unit)])
    options = dict(ste=ste, decoupled=decoupled, threshold=threshold, alpha=alpha, initial_aux=initial_aux,
                   penalty=penalty, penalty_norm=penalty_norm, weight_decay=weight_decay,
                   aux_weight_decay=aux_weight_decay)
    wrappers = {}

    def replace(layer):
        if id(layer) not in chosen:
            return layer
        if id(layer) not in wrappers:  # a layer shared by several parents gets one wrapper
            paths = [path for path, _ in chosen[id(layer)]]
            wrappers[id(layer)] = AutoPruneLayer(layer, paths, mode=modes[id(layer)], **options)
        return wrappers[id(layer)]

    with distribute.creation_scope(model):
        return rebuild(model, replace)


def aux_variables(model):
    """The auxiliary variables m of a wrapped model, e.g. for ``exclude_from_weight_decay``.

    Example:
        >>> optimizer = keras.optimizers.AdamW(1e-3, weight_decay=1e-4)
        >>> optimizer.exclude_from_weight_decay(var_list=autoprune.aux_variables(model))
    """
    return [m for layer in autoprune_layers(model) for m in layer.aux_variables]


def set_penalty(model, value):
    """Sets λ of every AutoPrune layer of ``model`` (e.g. 0 to stop pruning further).

    Example:
        >>> autoprune.set_penalty(model, 0.0)
    """
    value = arguments.number("penalty", value, 0)
    for layer in autoprune_layers(model):
        layer.penalty.assign(value)


def is_aux(variable):
    return getattr(variable, _AUX_FLAG, False)


def harden(model):
    """Turns the learned masks into fixed tfprune masks: a model of :class:`tfprune.MaskedLayer`.

    Each :class:`AutoPruneLayer` becomes a ``MaskedLayer`` around the same layer whose masks are
    ``h(m)`` (expanded over each weight in neuron mode), so :func:`tfprune.strip`,
    :func:`tfprune.profile`, :func:`tfprune.report` and :mod:`tfprune.export` work unchanged and
    give the same predictions as the AutoPrune model.

    Args:
        model: A model wrapped by :func:`wrap`.

    Returns:
        For functional and Sequential models a new model sharing the layers (and so the dense
        weights) of ``model``, which stays usable; for subclassed models ``model`` itself, changed
        in place.

    Example:
        >>> plain = tfprune.strip(autoprune.harden(model))
    """
    autoprune_layers(model)
    hardened = {}

    def replace(layer):
        if not isinstance(layer, AutoPruneLayer):
            return layer
        if id(layer) not in hardened:
            masked = MaskedLayer(layer.layer, masked_weights=layer.pruned_weights)
            for mask, value in zip(masked.masks, layer.masks()):
                mask.assign(value.astype(mask.dtype))
            hardened[id(layer)] = masked
        return hardened[id(layer)]

    with distribute.creation_scope(model):
        return rebuild(model, replace)
