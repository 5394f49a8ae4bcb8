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

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfprune import _compat
from tfprune.base import arguments, distribute, walk
from tfprune.layers import kinds
from tfprune.layers.masked import MaskedLayer, SubstitutingWrapper, relative_path
from tfprune.layers.targets import is_wrapped, prunable_weights
from tfprune.layers.wrapping import rebuild

__all__ = [
    "STES",
    "MODES",
    "masked_kernel",
    "aux_norm",
    "AutoPruneLayer",
    "wrap",
    "aux_variables",
    "set_penalty",
    "AuxOptimizer",
    "Monitor",
    "PenaltySchedule",
    "harden",
]

STES = ("softplus", "leaky_relu", "linear")
MODES = ("weight", "neuron")
# Kinds whose last axis is the output unit (neuron mode); a bias is one entry per unit anyway.
NEURON_KINDS = ("dense", "conv", "pointwise", "bias")
_AUX_FLAG = "_tfprune_autoprune_aux"


def _check_ste(ste, alpha):
    arguments.choice("ste", ste, STES)
    arguments.number("alpha", alpha, 0)


def _ste_derivative(aux, ste="softplus", threshold=0.0, alpha=0.01):
    """The straight-through estimator g′(m) that stands in for the step's derivative.

    Args:
        aux: The auxiliary parameters m (a tensor).
        ste: ``"softplus"`` (g′ = sigmoid(m)), ``"leaky_relu"`` (1 above ``threshold``, ``alpha``
            below) or ``"linear"`` (1).
        threshold: τ.
        alpha: The LeakyReLU slope below τ.

    Returns:
        A tensor shaped like ``aux``.
    """
    _check_ste(ste, alpha)
    if ste == "softplus":
        return tf.sigmoid(aux)
    if ste == "leaky_relu":
        return tf.where(aux > threshold, tf.ones_like(aux), tf.fill(tf.shape(aux), tf.cast(alpha, aux.dtype)))
    return tf.ones_like(aux)


def _broadcast_axes(kernel_shape, aux_shape):
    """Axes of the kernel that one auxiliary entry spans: none (weight mode) or all but the last."""
    kernel_shape, aux_shape = tuple(kernel_shape), tuple(aux_shape)
    if aux_shape == kernel_shape:
        return []
    if aux_shape == kernel_shape[-1:]:
        return list(range(len(kernel_shape) - 1))
    raise ValueError(
        f"auxiliary parameters of shape {aux_shape} fit neither the kernel's shape {kernel_shape} "
        f"(weight mode) nor its last axis {kernel_shape[-1:]} (neuron mode)"
    )


def masked_kernel(kernel, aux, *, ste="softplus", decoupled=True, threshold=0.0, alpha=0.01):
    """``W ⊙ h(m)`` as one op over ``(W, m)`` with AutoPrune's gradients.

    Forward: ``W ⊙ 1[m > τ]``. Backward, with ``dy`` the incoming gradient:
    ``∂W = dy ⊙ h(m)``; ``∂m = dy ⊙ sign(W) ⊙ g′(m)`` when ``decoupled`` (its inner product with
    the exact STE gradient ``dy ⊙ W ⊙ g′(m)`` is ``Σ (dy·g′)²|W| ≥ 0`` in weight mode), the exact
    one otherwise. In neuron mode ``m`` has one entry per output unit (the kernel's last axis),
    broadcast over the other axes, and ``∂m`` sums over them. Works in ``fit``, under
    ``jit_compile=True`` and under a distribution strategy.

    Args:
        kernel: The weight W.
        aux: The auxiliary parameters m: shaped like ``kernel`` or like its last axis.
        ste: The estimator of the step's derivative: ``"softplus"`` (g′ = sigmoid(m)),
            ``"leaky_relu"`` (1 above τ, ``alpha`` below) or ``"linear"`` (1).
        decoupled: Use ``sign(W)`` instead of ``W`` in ``∂m``.
        threshold: τ.
        alpha: The LeakyReLU slope below τ.

    Returns:
        A tensor shaped like ``kernel``.

    Raises:
        ArgumentError: on an unknown ``ste`` or a negative ``alpha``.
        ValueError: on a shape of ``aux`` that fits neither mode.

    Example:
        >>> w, m = tf.Variable(np.ones((3, 2), "float32")), tf.Variable([0.5, -0.5])
        >>> masked_kernel(w, m)  # second column zero; its m still gets a gradient
    """
    _check_ste(ste, alpha)
    kernel, aux = ops.convert_to_tensor(kernel), ops.convert_to_tensor(aux)
    axes = _broadcast_axes(kernel.shape, aux.shape)

    @tf.custom_gradient
    def product(w, m):
        gate = tf.cast(m > threshold, w.dtype)

        def grad(dy):
            slope = tf.cast(_ste_derivative(m, ste, threshold, alpha), dy.dtype)
            d_aux = dy * (tf.sign(w) if decoupled else w) * slope
            if axes:
                d_aux = tf.reduce_sum(d_aux, axis=axes)
            return dy * gate, tf.cast(d_aux, m.dtype)

        return w * gate, grad

    return product(kernel, aux)


def aux_norm(aux, n=1, *, ste="softplus", threshold=0.0, alpha=0.01):
    """The penalty ``R_n = Σ h(m)ⁿ`` (the n-th power of ‖h(m)‖ₙ) with its gradient through the STE.

    Its value is the number of entries above τ for every n; its gradient is ``n·h(m)ⁿ⁻¹·g′(m)``:
    for ``n = 1`` a steady push ``g′(m) ≥ 0`` on every m, for ``n ≥ 2`` only on the entries that
    are still on (pruned entries are left where they are).

    Args:
        aux: The auxiliary parameters m.
        n: A positive integer.
        ste, threshold, alpha: As in :func:`masked_kernel`.

    Returns:
        A scalar tensor.

    Example:
        >>> penalty = 1e-4 * aux_norm(m)
    """
    arguments.count("n", n)
    _check_ste(ste, alpha)

    @tf.custom_gradient
    def norm(m):
        gate = tf.cast(m > threshold, m.dtype)

        def grad(dy):
            return dy * n * tf.pow(gate, n - 1) * _ste_derivative(m, ste, threshold, alpha)

        return tf.reduce_sum(gate), grad

    return norm(ops.convert_to_tensor(aux))


def _check_neuron_kinds(layer_name, paths_and_kinds):
    bad = [f"{path} ({kind})" for path, kind in paths_and_kinds if kind not in NEURON_KINDS]
    if bad:
        raise ValueError(
            f"neuron mode needs weights whose last axis is the output unit ({', '.join(NEURON_KINDS)} "
            f"kinds); in layer {layer_name!r} {', '.join(bad)} is not: use mode='weight' for it"
        )


def _check_options(ste, decoupled, threshold, alpha, initial_aux, penalty, penalty_norm, weight_decay):
    _check_ste(ste, alpha)
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


@keras.saving.register_keras_serializable(package="tfprune")
class AutoPruneLayer(SubstitutingWrapper):
    """Wraps a layer and multiplies chosen weights by learned masks ``h(m)`` in every forward pass.

    The auxiliary parameters m are trainable variables of this wrapper (named ``<weight>_aux``,
    saved with the model, without regulariser); λ is its non-trainable variable ``penalty``,
    which a callback can change. Each call adds the loss ``λ·Σ R_n(m)`` (plus
    ``weight_decay·Σ W²`` over the pruned weights, if set). Usually made by :func:`wrap`.

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
        **kwargs: Passed to :class:`keras.layers.Wrapper` (e.g. ``name``).

    Example:
        >>> layer = AutoPruneLayer(keras.layers.Dense(4), mode="neuron", penalty=1e-3)
    """

    def __init__(self, layer, pruned_weights=None, mode="weight", ste="softplus", decoupled=True,
                 threshold=0.0, alpha=0.01, initial_aux=1.0, penalty=1e-4, penalty_norm=1,
                 weight_decay=0.0, **kwargs):
        kwargs.setdefault("name", f"autoprune_{layer.name}")
        super().__init__(layer, **kwargs)
        arguments.choice(f"mode of layer {layer.name!r}", mode, MODES)
        _check_options(ste, decoupled, threshold, alpha, initial_aux, penalty, penalty_norm, weight_decay)
        self.pruned_weights = None if pruned_weights is None else list(pruned_weights)
        self.mode, self.ste, self.decoupled = mode, ste, bool(decoupled)
        self.threshold, self.alpha, self.initial_aux = float(threshold), float(alpha), float(initial_aux)
        self.initial_penalty, self.penalty_norm = float(penalty), int(penalty_norm)
        self.weight_decay = float(weight_decay)
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
        """``λ·Σ R_n(m)``, plus ``weight_decay·Σ W²`` over the pruned weights if set."""
        options = dict(ste=self.ste, threshold=self.threshold, alpha=self.alpha)
        norms = [aux_norm(m.value, self.penalty_norm, **options) for _, m in self._pairs]
        loss = ops.multiply(self.penalty.value, ops.sum(ops.stack(norms)))
        if self.weight_decay:
            squares = [ops.sum(ops.square(v.value)) for v, _ in self._pairs]
            loss = loss + self.weight_decay * ops.sum(ops.stack(squares))
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
        }


def _autoprune_layers(model, required=True):
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
         weight_decay=0.0):
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
    if is_wrapped(model) or _autoprune_layers(model, required=False):
        raise ValueError(f"model {model.name!r} is already wrapped")
    _check_options(ste, decoupled, threshold, alpha, initial_aux, penalty, penalty_norm, weight_decay)
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
                   penalty=penalty, penalty_norm=penalty_norm, weight_decay=weight_decay)
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
    return [m for layer in _autoprune_layers(model) for m in layer.aux_variables]


def set_penalty(model, value):
    """Sets λ of every AutoPrune layer of ``model`` (e.g. 0 to stop pruning further).

    Example:
        >>> autoprune.set_penalty(model, 0.0)
    """
    value = arguments.number("penalty", value, 0)
    for layer in _autoprune_layers(model):
        layer.penalty.assign(value)


def _is_aux(variable):
    return getattr(variable, _AUX_FLAG, False)


@keras.saving.register_keras_serializable(package="tfprune")
class AuxOptimizer(keras.optimizers.Optimizer):
    """Routes the auxiliary variables m to their own optimiser, everything else to another.

    A learning rate of its own for m cannot be had by scaling m's gradient when the optimiser is
    Adam-like: Adam's step does not depend on the gradient's scale. This optimiser runs two
    optimisers side by side in one ``apply_gradients`` call (what Keras's trainer calls), each on
    its own variables, with its own state, learning rate and schedule. m never gets weight
    decay: it never reaches ``optimizer``, and ``aux_optimizer`` excludes all its variables.
    ``learning_rate`` and ``iterations`` are those of ``optimizer`` (so learning-rate callbacks
    act on W); set ``aux_optimizer.learning_rate`` for m. Saves and loads with the model.

    Args:
        optimizer: The optimiser of the model's other trainable variables.
        aux_optimizer: The optimiser of the auxiliary variables.
        name: The optimiser's name.

    Example:
        >>> model.compile(optimizer=autoprune.AuxOptimizer(keras.optimizers.Adam(1e-3),
        ...                                                  keras.optimizers.SGD(1e-1)), loss=...)
    """

    def __init__(self, optimizer, aux_optimizer, name=None):
        super().__init__(learning_rate=0.0, name=name)
        self.optimizer = keras.optimizers.get(optimizer)
        self.aux_optimizer = keras.optimizers.get(aux_optimizer)

    def build(self, var_list):
        main, aux = self._split_aux(var_list)  # no aux (e.g. a hardened clone): all goes to optimizer
        self.aux_optimizer.exclude_from_weight_decay(var_list=aux)
        self.optimizer.build(main)
        self.aux_optimizer.build(aux)
        super().build(var_list)

    @staticmethod
    def _split_aux(variables):
        return [v for v in variables if not _is_aux(v)], [v for v in variables if _is_aux(v)]

    @property
    def variables(self):
        return _compat.optimizer_own_variables(self) + self.optimizer.variables + self.aux_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            if not self.built:
                raise ValueError("AuxOptimizer is not built: pass trainable_variables with the first gradients")
            trainable_variables = _compat.optimizer_trainable_variables(self)
        elif not self.built:
            self.build(list(trainable_variables))
        pairs = list(zip(grads, trainable_variables))
        for optimizer, wanted in ((self.optimizer, False), (self.aux_optimizer, True)):
            chosen = [(g, v) for g, v in pairs if _is_aux(v) == wanted]
            if chosen:
                optimizer.apply([g for g, _ in chosen], [v for _, v in chosen])

    @property
    def learning_rate(self):
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.optimizer.iterations

    def finalize_variable_values(self, var_list):
        main, aux = self._split_aux(var_list)
        self.optimizer.finalize_variable_values(main)
        self.aux_optimizer.finalize_variable_values(aux)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.optimizers.serialize(self.optimizer),
            "aux_optimizer": keras.optimizers.serialize(self.aux_optimizer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(
            keras.optimizers.deserialize(config["optimizer"], custom_objects=custom_objects),
            keras.optimizers.deserialize(config["aux_optimizer"], custom_objects=custom_objects),
            name=config.get("name"),
        )


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
        self._previous = _states(_autoprune_layers(self.model))

    def on_epoch_end(self, epoch, logs=None):
        current = _states(_autoprune_layers(self.model))
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
    _autoprune_layers(model)
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
