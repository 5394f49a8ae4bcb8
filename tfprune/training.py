"""One training recipe for classifiers, shared by the demo, the sweeps and the structured loop.

The reproductions compare pruning methods *with each other in the same run*, so every network of
a run is trained with the same :class:`Recipe`: SGD with Nesterov momentum (or Adam), decoupled
weight decay, and a constant or cosine learning rate. Networks output logits; labels are integers.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from tfprune import _compat
from tfprune.analysis import datachecks
from tfprune.autodiff import losses
from tfprune.autodiff.batches import take
from tfprune.base import arguments
from tfprune.base.deprecation import renamed

__all__ = ["Recipe", "compile_model", "compiled_loss", "fit", "evaluate"]

_OPTIMIZERS = ("sgd", "adam")
_LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to train a classifier.

    Attributes:
        epochs: Passes over the training data.
        batch_size: Examples per step.
        optimizer: ``"sgd"`` (Nesterov momentum) or ``"adam"``.
        learning_rate: Initial learning rate.
        momentum: SGD momentum.
        weight_decay: Decoupled weight decay (``w -= lr · weight_decay · w`` each step).
        lr_schedule: The learning-rate schedule: ``"constant"`` or ``"cosine"`` (decays to 0 over all steps).

    Example:
        >>> recipe = Recipe(epochs=10, learning_rate=0.05)
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"

    def __post_init__(self):
        arguments.choice("optimizer", self.optimizer, _OPTIMIZERS)
        arguments.choice("lr_schedule", self.lr_schedule, _LR_SCHEDULES)
        arguments.count("epochs", self.epochs, 0)
        arguments.count("batch_size", self.batch_size)
        for name in ("learning_rate", "momentum", "weight_decay"):
            arguments.number(name, getattr(self, name), 0)

    def make_optimizer(self, steps):
        """A new Keras optimizer for ``steps`` training steps."""
        rate = self.learning_rate
        if self.lr_schedule == "cosine" and steps > 0:
            rate = keras.optimizers.schedules.CosineDecay(self.learning_rate, steps)
        decay = self.weight_decay or None
        if self.optimizer == "adam":
            return keras.optimizers.AdamW(rate, weight_decay=decay or 0.0)
        return keras.optimizers.SGD(rate, momentum=self.momentum, nesterov=self.momentum > 0, weight_decay=decay)


Recipe.__init__ = renamed(schedule="lr_schedule")(Recipe.__init__)


def compiled_loss(model):
    """``(loss, loss_weights)`` that ``model`` was compiled with, or ``(None, None)``: to train a
    copy of it (:func:`tfprune.structured.prune`) with the loss it trains with."""
    if not losses.is_compiled(model):
        return None, None
    return model.loss, _compat.compile_loss_weights(model)


def compile_model(model, recipe, steps, loss=None, loss_weights=None):
    """Compiles ``model`` for ``recipe``: with ``loss`` (and ``loss_weights``) when given, else
    for a classifier (logits, integer labels, accuracy metric).

    Args:
        model: A Keras 3 model; a classifier that outputs logits when ``loss`` is ``None``.
        recipe: A :class:`Recipe`.
        steps: Training steps the learning-rate schedule spans.
        loss, loss_weights: As ``model.compile`` takes them (:func:`compiled_loss`).
    """
    model.compile(
        optimizer=recipe.make_optimizer(steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True) if loss is None else loss,
        loss_weights=loss_weights,
        metrics=["accuracy"] if loss is None else None,
    )


def fit(model, train, recipe, *, steps=None, seed=0, validation=None, callbacks=None, verbose=0, loss=None,
        loss_weights=None):
    """Compiles ``model`` and trains it on ``train`` with ``recipe``.

    Args:
        model: A Keras 3 model (wrapped or not): a classifier that outputs logits, unless
            ``loss`` is given.
        train: ``(x, y)`` or ``(x, y, sample_weight)`` arrays, ``x`` an array, list or dict of
            arrays (as ``model.fit`` takes them).
        recipe: A :class:`Recipe`.
        steps: Train exactly this many batches instead of ``recipe.epochs`` epochs, drawn from
            seeded shuffles of ``train`` (e.g. the short fine-tuning between pruning steps).
        seed: Seed of the shuffles when ``steps`` is given.
        validation: Optional ``(x, y)`` evaluated after each epoch.
        callbacks: Keras callbacks.
        verbose: Passed to ``model.fit``.
        loss, loss_weights: The loss to train with (:func:`compile_model`); default sparse
            categorical cross-entropy on logits, which takes class ids.

    Returns:
        ``(history, seconds)``: the Keras ``History`` and the wall time of the training.

    Raises:
        ValueError: for ``train`` or ``validation`` that do not fit the model (checked before
            training: :func:`tfprune.analysis.datachecks.check_arrays`), or bad ``steps``.

    Example:
        >>> history, seconds = fit(model, (x, y), Recipe(epochs=2))
    """
    x, y, sample_weight = datachecks.check_arrays(model, train, class_ids=loss is None, name="train")
    if validation is not None:
        datachecks.check_arrays(model, validation, class_ids=loss is None, name="validation")
    epochs, n = recipe.epochs, datachecks.num_examples(x)
    if steps is not None:
        arguments.count("steps", steps)
        rng = np.random.default_rng(seed)
        needed = steps * recipe.batch_size
        order = np.concatenate([rng.permutation(n) for _ in range(-(-needed // n))])[:needed]
        (x, y, sample_weight), epochs, n = take((x, y, sample_weight), order), 1, needed
    compile_model(model, recipe, epochs * -(-n // recipe.batch_size), loss, loss_weights)
    start = time.perf_counter()
    history = model.fit(x, y, sample_weight=sample_weight, batch_size=recipe.batch_size, epochs=epochs,
                        validation_data=validation, callbacks=callbacks, shuffle=steps is None, verbose=verbose)
    return history, time.perf_counter() - start


def evaluate(model, data, batch_size=1000):
    """Accuracy and mean cross-entropy of a logits classifier on ``(x, y)``.

    The model is called eagerly batch by batch: ``model.predict`` would trace a new
    ``tf.function`` for every model, which a sweep evaluating many models makes TensorFlow warn
    about ("triggered tf.function retracing").

    Returns:
        ``(accuracy, loss)`` as floats.

    Raises:
        ValueError: for ``data`` that does not fit the model (:func:`tfprune.analysis.datachecks.check_arrays`).
    """
    x, y, _ = datachecks.check_arrays(model, data)
    logits = np.concatenate([keras.ops.convert_to_numpy(model(take(x, slice(i, i + batch_size)), training=False))
                             for i in range(0, datachecks.num_examples(x), batch_size)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    accuracy = float((logits.argmax(-1) == y).mean())
    return accuracy, float(loss)
