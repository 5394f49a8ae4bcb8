"""The loss a score differentiates: the model's own, one given, or sparse categorical cross-entropy.

:func:`resolve` picks it once per score:

* ``loss=`` given (a Keras loss, its name, or a callable ``(y_true, y_pred)``): that loss, with
  the batch's sample weights as a Keras loss takes them;
* else a **compiled** model's own loss, ``model.compute_loss(x, y, y_pred, sample_weight)``, as
  ``fit`` computes it: the losses of a loss dict or list, ``loss_weights``, sample weights (one
  per example, per output or per label entry) and the model's regularisation losses;
* else sparse categorical cross-entropy (on logits when ``from_logits``: a final softmax or
  sigmoid of the model is skipped for the score), which takes class ids of a single output — any
  other labels are refused with an error that says to compile the model or pass ``loss=``.

Example:
    >>> loss = resolve(model)                      # the compiled loss, or the default
    >>> value = loss(x, y, model(x), sample_weight)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras

from tfprune import _compat
from tfprune.base.arguments import ArgumentError

__all__ = ["ScoringLoss", "resolve", "is_compiled"]

_CHECK_EXAMPLES = 2


@dataclasses.dataclass(frozen=True, eq=False)
class ScoringLoss:
    """A loss ``(x, y, y_pred, sample_weight) -> scalar`` (the mean over the batch's examples).

    Attributes:
        fn: The function.
        kind: ``"given"``, ``"compiled"`` or ``"default"``.
        key: What identifies it across rounds (the compiled scoring steps are kept per key).
        class_ids: Whether it takes class ids only (the default loss).
        on_logits: Whether the score must see logits (the default loss with ``from_logits``).
        description: What it is, for messages.
    """

    fn: Callable
    kind: str
    key: tuple
    class_ids: bool
    on_logits: bool
    description: str

    def __call__(self, x, y, y_pred, sample_weight=None):
        return self.fn(x, y, y_pred, sample_weight)

    def check(self, model, batch, name="data"):
        """Raises, before any work, if ``batch``'s labels or sample weights do not fit this loss.

        Runs the model and the loss eagerly on the batch's first examples, once per model and
        form of the labels (it also builds a compiled loss outside the scoring steps, which
        trace it). The default loss's labels are checked as class ids by the data checks instead.

        Raises:
            ValueError: naming ``name``, the loss and Keras's reason.
        """
        if self.kind == "default":
            return
        form = str(keras.tree.map_structure(lambda a: a if a is None else (tuple(a.shape[1:]), str(a.dtype)),
                                            (batch.y, batch.sample_weight)))
        checked = _checked(model)
        if (self.key, form) in checked:
            return
        head = keras.tree.map_structure(lambda a: a if a is None else a[:_CHECK_EXAMPLES], tuple(batch))
        outputs = model(head[0], training=False)
        try:
            self(head[0], head[1], outputs, head[2])
        except Exception as error:  # Keras raises several types for labels that do not fit
            raise ValueError(f"{name}: the labels{' and sample weights' if batch.sample_weight is not None else ''} "
                             f"do not fit {self.description} of model {model.name!r}: {type(error).__name__}: "
                             f"{str(error).strip()}") from error
        checked.add((self.key, form))


def _checked(model):
    cache = model.__dict__.get("_tfprune_losses_checked")
    if cache is None:
        cache = set()
        object.__setattr__(model, "_tfprune_losses_checked", cache)
    return cache


def is_compiled(model):
    """Whether ``model`` was compiled with a loss (then scores use it)."""
    return bool(getattr(model, "compiled", False)) and _compat.compile_loss(model) is not None


def resolve(model, loss=None, from_logits=True):
    """The loss to score ``model`` with (see the module docstring).

    Args:
        model: The model; its compiled loss is used when ``loss`` is ``None``.
        loss: ``None``, a Keras loss, its name, a callable ``(y_true, y_pred)``, or a
            :class:`ScoringLoss` (returned as it is: a driver resolves the loss of the model it
            was given before scoring a wrapped copy of it).
        from_logits: For the default loss: whether the model outputs logits.

    Returns:
        A :class:`ScoringLoss`.

    Example:
        >>> resolve(model, "mse")(x, y, model(x))
    """
    if isinstance(loss, ScoringLoss):
        return loss
    if loss is not None:
        fn = _named_loss(loss) if isinstance(loss, str) else loss
        if not isinstance(fn, keras.losses.Loss):
            fn = _Wrapped(fn)
        return ScoringLoss(lambda x, y, p, w: fn(y, p, sample_weight=w), "given", ("given", id(loss)), False, False,
                           f"the loss {getattr(fn, 'name', loss)!r}")
    if is_compiled(model):
        def compute(x, y, p, w):
            return model.compute_loss(x=x, y=y, y_pred=p, sample_weight=w, training=False)

        return ScoringLoss(compute, "compiled", ("compiled", id(model), id(_compat.compile_loss(model))), False,
                           False, "the compiled loss")
    default = keras.losses.SparseCategoricalCrossentropy(from_logits=bool(from_logits))
    return ScoringLoss(lambda x, y, p, w: default(y, p, sample_weight=w), "default", ("default", bool(from_logits)),
                       True, bool(from_logits), "the default loss (sparse categorical cross-entropy)")


class _Wrapped(keras.losses.Loss):
    """A callable ``(y_true, y_pred)`` as a Keras loss: sample weights and the mean over the batch
    applied to what it returns (a scalar stays as it is)."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", type(fn).__name__))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def _named_loss(name):
    """The Keras loss called ``name``; an :class:`~tfprune.base.arguments.ArgumentError` for another name."""
    try:
        return keras.losses.get(name)
    except ValueError:
        raise ArgumentError(f"loss {name!r} is not the name of a Keras loss: give a name such as "
                            "'categorical_crossentropy', a keras.losses.Loss or a function (y_true, y_pred) -> loss"
                            ) from None
