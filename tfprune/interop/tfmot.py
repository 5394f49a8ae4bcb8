"""The TF-MOT bridge: tfprune's criteria inside TF-MOT's own pruning wrapper, for tf_keras models.

TF-MOT prunes tf_keras (Keras 2) models by magnitude only. This module wraps a tf_keras model with
TF-MOT's own ``prune_low_magnitude`` — so ``UpdatePruningStep``, ``strip_pruning``,
pruning-preserving quantisation and TFLite export work as usual — but sets the masks with any
tfprune criterion, and gives TF-MOT a :class:`FixedMasks` schedule that never lets its magnitude
update overwrite them.

Scores are computed by tfprune's own scorer code on a Keras 3 *twin* of the tf_keras model: the same
architecture rebuilt from its config, with the same weights (tfprune's scorers use Keras 3's
stateless execution, which tf_keras lacks). Masks are mapped back by layer and weight name. The twin
is checked to compute the same outputs as the tf_keras model before it is used.

Importing this module imports TF-MOT, which sets ``TF_USE_LEGACY_KERAS=1`` (TensorFlow's Keras alias then means
tf_keras if it was not used before): ``import tfprune`` never imports it. TF-MOT and tf_keras come
with the ``[tfmot]`` extra (``pip install "tfprune[tfmot]"``); without them importing this module
raises :class:`tfprune._optional.MissingExtraError` naming it.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import tensorflow as tf

from tfprune.sparsity import masks as masks_lib
from tfprune._optional import require
from tfprune.base import arguments
from tfprune.base.deprecation import renamed
from tfprune.layers.policies import OnlyLayers
from tfprune.pruning import prune_at_init as keras3_prune_at_init
from tfprune.scores import get as get_scorer
from tfprune.layers.targets import prunable_weights
from tfprune.layers.wrapping import apply_masks, get_masks, wrap

tfmot = require("tensorflow_model_optimization", "tfprune.tfmot")
tf_keras = require("tf_keras", "tfprune.tfmot")

__all__ = ["FixedMasks", "LayerPolicy", "Rescore", "prune_at_init", "keras3_twin", "masks_of"]

_PRUNE_WRAPPER = "PruneLowMagnitude"


@tf_keras.utils.register_keras_serializable(package="tfprune")
class FixedMasks(tfmot.sparsity.keras.PruningSchedule):
    """A TF-MOT pruning schedule that never updates the masks: tfprune sets them.

    It carries the criterion and target sparsity the masks were made with (saved with the model)
    and, for re-scoring callbacks, the scoring data (not saved).

    Args:
        criterion: The tfprune criterion name the masks come from.
        sparsity: Their target sparsity.
        data: Scoring data, kept in memory only.
    """

    @renamed(method="criterion")
    def __init__(self, criterion="magnitude", sparsity=0.0, data=None):
        self.criterion = criterion
        self.sparsity = float(sparsity)
        self.data = data

    def __call__(self, step):
        return tf.constant(False), tf.constant(self.sparsity, dtype=tf.float32)

    def get_config(self):
        return {"class_name": "tfprune>FixedMasks", "config": {"criterion": self.criterion, "sparsity": self.sparsity}}


@tf_keras.utils.register_keras_serializable(package="tfprune")
class LayerPolicy(tfmot.sparsity.keras.PruningPolicy):
    """A TF-MOT pruning policy: which layers get TF-MOT's pruning wrapper.

    Args:
        skip_first: Leave the first prunable layer dense.
        skip_last: Leave the last prunable layer dense.
        types: If given, only layers of these class names are pruned.
        names: If given (with or without ``types``), layers of these names are pruned too.
        base: Another TF-MOT policy to apply as well, e.g.
            ``tfmot.sparsity.keras.PruneForLatencyOnXNNPack()``; its model check runs first.

    Example:
        >>> policy = LayerPolicy(skip_first=True, skip_last=True)
        >>> pruned = tfprune.tfmot.prune_at_init(model, "snip", sparsity=0.9, data=(x, y),
        ...                                      policy=policy)
    """

    def __init__(self, skip_first=False, skip_last=False, types=(), names=(), base=None):
        self.skip_first = skip_first
        self.skip_last = skip_last
        self.types = tuple(types)
        self.names = tuple(names)
        self.base = base
        self._skipped = set()

    def ensure_model_supports_pruning(self, model):
        if self.base is not None:
            self.base.ensure_model_supports_pruning(model)
        present = {layer.name: type(layer).__name__ for layer in model.layers}
        missing = [t for t in self.types if t not in present.values()] + [n for n in self.names if n not in present]
        if missing:
            raise ValueError(f"LayerPolicy: model {model.name!r} has no layer (type or name) {missing}; its layers: {present}")
        prunable = [layer.name for layer in model.layers if _tfmot_supports(layer) and layer.weights]
        self._skipped = set(prunable[:1] if self.skip_first else []) | set(prunable[-1:] if self.skip_last else [])

    def allow_pruning(self, layer):
        if layer.name in self._skipped or (self.base is not None and not self.base.allow_pruning(layer)):
            return False
        if self.types or self.names:
            return type(layer).__name__ in self.types or layer.name in self.names
        return True

    def get_config(self):
        return {"skip_first": self.skip_first, "skip_last": self.skip_last, "types": list(self.types),
                "names": list(self.names)}


def _tfmot_supports(layer):
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    return prune_registry.PruneRegistry.supports(layer) or isinstance(layer, tfmot.sparsity.keras.PrunableLayer)


def _check_tf_keras(model):
    if isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"{model.name!r} is a Keras 3 model: TF-MOT cannot wrap it. Use tfprune.prune_at_init "
            "(tfprune's own MaskedLayer) for Keras 3 models"
        )
    if not isinstance(model, tf_keras.Model):
        raise TypeError(f"expected a tf_keras model, got {type(model).__module__}.{type(model).__name__}")
    if any(type(layer).__name__ == _PRUNE_WRAPPER for layer in model.layers):
        raise ValueError(f"model {model.name!r} is already wrapped by TF-MOT: pass the model before prune_low_magnitude")


# ------------------------------------------------------------------------- the Keras 3 twin


def _keras3_layer_config(entry):
    """A tf_keras layer's serialised config made acceptable to the Keras 3 class of that name."""
    name = entry["class_name"]
    cls = getattr(keras.layers, name, None)
    if cls is None:
        return entry, name
    accepted = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            accepted |= set(inspect.signature(klass.__init__).parameters)
    accepted |= {"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_shape", "sparse", "ragged"}
    config = {k: v for k, v in entry["config"].items() if k in accepted}
    if isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
        config["axis"] = config["axis"][0]  # tf_keras normalisation layers store [axis]
    return {**entry, "config": config}, None


def keras3_twin(model):
    """A Keras 3 model with the architecture and weights of a tf_keras Sequential or functional model.

    Args:
        model: A built tf_keras model without TF-MOT wrappers.

    Returns:
        The Keras 3 model; its layers have the tf_keras layers' names.

    Raises:
        ValueError: if some layer types have no Keras 3 equivalent (the message names them), or
            the twin does not compute the same outputs.
    """
    config = model.get_config()
    entries, unknown = zip(*(_keras3_layer_config(e) for e in config["layers"])) if config.get("layers") else ((), ())
    unknown = sorted({u for u in unknown if u})
    if unknown:
        raise ValueError(f"model {model.name!r} has layers tfprune cannot score through TF-MOT: {unknown}")
    config = {**config, "layers": list(entries)}
    for key in ("input_layers", "output_layers"):  # tf_keras nests a single input/output in a list
        if isinstance(config.get(key), list) and len(config[key]) == 1 and isinstance(config[key][0], list):
            config[key] = config[key][0]
    twin_class = keras.Sequential if isinstance(model, tf_keras.Sequential) else keras.Model
    try:
        twin = twin_class.from_config(config)
    except Exception as error:
        raise ValueError(f"cannot rebuild tf_keras model {model.name!r} in Keras 3: {error}") from error
    for layer in model.layers:
        if layer.weights:
            twin.get_layer(layer.name).set_weights(layer.get_weights())
    probe = [np.random.default_rng(0).random((2, *s[1:])).astype("float32") for s in _input_shapes(model)]
    probe = probe[0] if len(probe) == 1 else probe
    difference = np.max(np.abs(np.asarray(twin(probe, training=False)) - np.asarray(model(probe, training=False))))
    if not difference <= 1e-4:
        raise ValueError(f"the Keras 3 twin of {model.name!r} differs from it by {difference}: cannot score it")
    return twin


def _input_shapes(model):
    shapes = model.input_shape
    return shapes if isinstance(shapes, list) else [shapes]


# ------------------------------------------------------------------------- masks in TF-MOT wrappers


def _short_name(variable):
    return variable.name.split("/")[-1].split(":")[0]


def _pruning_vars(wrapped):
    """``(layer name, weight name, weight, mask)`` for every weight TF-MOT prunes."""
    out = []
    for layer in wrapped.layers:
        if type(layer).__name__ == _PRUNE_WRAPPER:
            for weight, mask, _ in layer.pruning_vars:
                out.append((layer.layer.name, _short_name(weight), weight, mask))
    return out


def masks_of(wrapped):
    """The masks in a TF-MOT-wrapped model, ``{(layer name, weight name): boolean array}``."""
    return {(layer, name): mask.numpy() != 0 for layer, name, _, mask in _pruning_vars(wrapped)}


def _write_masks(wrapped, twin):
    """Copies the twin's masks into TF-MOT's ``pruning_vars`` and zeroes the masked weights."""
    by_name = {(t.layer.name, t.variable.name): m for t, m in zip(prunable_weights(twin), get_masks(twin))}
    for layer, name, weight, mask in _pruning_vars(wrapped):
        if (layer, name) not in by_name:
            raise ValueError(f"tfprune has no mask for {layer}/{name}, which TF-MOT prunes; masks: {sorted(by_name)}")
        value = by_name[(layer, name)].astype(mask.dtype.as_numpy_dtype)
        mask.assign(value)
        weight.assign(weight * value)


def _twin_policy(wrapped):
    names = sorted({layer for layer, *_ in _pruning_vars(wrapped)})
    if not names:
        raise ValueError(f"TF-MOT wrapped no layer of {wrapped.name!r}: nothing to prune")
    return OnlyLayers(names=names)


@renamed(method="criterion", pruning_policy="policy")
def prune_at_init(model, criterion, *, sparsity=None, compression=None, data=None, policy=None, verbose=1,
                  **criterion_options):
    """Wraps a tf_keras model with TF-MOT's ``prune_low_magnitude`` and sets tfprune's masks.

    Args:
        model: A built tf_keras Sequential or functional model (not yet wrapped).
        criterion: A tfprune scorer name or callable (``"snip"``, ``"grasp"``, ``"synflow"``, …).
        sparsity: Fraction of the prunable weights to remove, or
        compression: all prunable weights / kept weights.
        data: Scoring data for the criteria that need it (``(x, y)`` or a dataset).
        policy: A TF-MOT ``PruningPolicy`` (e.g. :class:`LayerPolicy` or
            ``tfmot.sparsity.keras.PruneForLatencyOnXNNPack()``): which layers TF-MOT wraps. Only
            weights TF-MOT prunes are scored and ranked.
        verbose: Progress of multi-round scoring; 0 is silent.
        **criterion_options: Passed to :func:`tfprune.prune_at_init` (``rounds``, ``scope``, criterion
            options).

    Returns:
        The TF-MOT-wrapped tf_keras model with its masks set and masked weights zeroed. Train it
        with ``tfmot.sparsity.keras.UpdatePruningStep()`` among the callbacks: the
        :class:`FixedMasks` schedule keeps the masks.

    Raises:
        TypeError: for a Keras 3 model (use :func:`tfprune.prune_at_init`).
        ValueError: for a bad amount, unsupported layers, or a model TF-MOT wraps nothing of.

    Example:
        >>> pruned = tfprune.tfmot.prune_at_init(model, "snip", sparsity=0.95, data=(x[:100], y[:100]))
        >>> pruned.compile(...); pruned.fit(x, y, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        >>> plain = tfmot.sparsity.keras.strip_pruning(pruned)
    """
    _check_tf_keras(model)
    density = masks_lib.resolve_density(sparsity, compression)
    scorer = get_scorer(criterion)
    twin = keras3_twin(model)
    schedule = FixedMasks(scorer.name, 1.0 - density, data)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule, pruning_policy=policy)
    twin = keras3_prune_at_init(twin, scorer, sparsity=1.0 - density, data=data, policy=_twin_policy(wrapped),
                                verbose=verbose, **criterion_options)
    _write_masks(wrapped, twin)
    return wrapped


class Rescore(tf_keras.callbacks.Callback):
    """Re-scores a TF-MOT-wrapped model with a tfprune criterion during training (gradual pruning).

    At the start of epochs ``begin_epoch, begin_epoch + frequency, …`` up to ``end_epoch`` the
    current (trained) weights are scored with ``criterion`` and the masks are shrunk towards
    ``sparsity`` on an exponential schedule, reaching it at ``end_epoch``. Weights pruned earlier
    stay pruned (for all criteria but FORCE). Use it together with TF-MOT's
    ``UpdatePruningStep`` on a model from :func:`prune_at_init` (or any model whose wrappers use
    a :class:`FixedMasks` schedule).

    Args:
        criterion: A tfprune scorer name or callable.
        sparsity: The final sparsity.
        data: Scoring data for the criteria that need it.
        begin_epoch: First epoch that re-scores.
        end_epoch: Epoch that reaches ``sparsity``.
        frequency: Re-score every this many epochs.
        **criterion_options: Passed to the criterion.

    Example:
        >>> callbacks = [tfmot.sparsity.keras.UpdatePruningStep(),
        ...              tfprune.tfmot.Rescore("snip", 0.95, data=(x[:100], y[:100]), end_epoch=4)]
    """

    @renamed(method="criterion")
    def __init__(self, criterion, sparsity, data=None, begin_epoch=0, end_epoch=0, frequency=1, **criterion_options):
        super().__init__()
        masks_lib.resolve_density(sparsity=sparsity)
        begin_epoch = arguments.count("begin_epoch", begin_epoch, 0)
        end_epoch = arguments.count("end_epoch", end_epoch, begin_epoch)
        self.scorer = get_scorer(criterion)
        self.sparsity = float(sparsity)
        self.data = data
        self.begin_epoch, self.end_epoch = begin_epoch, end_epoch
        self.frequency = arguments.count("frequency", frequency)
        self.criterion_options = criterion_options
        self.history = []

    def _due(self, epoch):
        return self.begin_epoch <= epoch <= self.end_epoch and (epoch - self.begin_epoch) % self.frequency == 0

    def on_epoch_begin(self, epoch, logs=None):
        if not self._due(epoch):
            return
        twin = wrap(keras3_twin(tfmot.sparsity.keras.strip_pruning(self.model)), policy=_twin_policy(self.model))
        current = {(k[0], k[1]): v for k, v in masks_of(self.model).items()}
        apply_masks(twin, [current[(t.layer.name, t.variable.name)] for t in prunable_weights(twin)])
        now = masks_lib.density(get_masks(twin))
        steps = max(1, (self.end_epoch - epoch) // self.frequency + 1)
        target = min(now, now * ((1.0 - self.sparsity) / now) ** (1.0 / steps))
        keras3_prune_at_init(twin, self.scorer, sparsity=1.0 - target, data=self.data, verbose=0, **self.criterion_options)
        _write_masks(self.model, twin)
        self.history.append((epoch, masks_lib.density(get_masks(twin))))
