"""What the mask-changing callbacks share: the update record, the callback now training a model,
and the two things they read from a model (its step and its measured sparsities)."""

from __future__ import annotations

import dataclasses
import weakref

import keras

from tfprune.sparsity import masks as masks_lib
from tfprune.layers.targets import is_wrapped, prunable_weights
from tfprune.layers.wrapping import get_masks

__all__ = ["MaskUpdate", "active_pruning", "set_active", "measured_sparsities", "training_step", "check_maskable", "MaskUpdatingCallback"]

_ACTIVE = weakref.WeakKeyDictionary()  # model -> the mask-changing callback training it now


def active_pruning(model):
    """The callback changing ``model``'s masks in the current ``fit`` (a
    :class:`~tfprune.callbacks.GradualPruning` or :class:`~tfprune.callbacks.DynamicSparse`), or ``None``.

    Lets other callbacks (e.g. :class:`tfprune.callbacks.PruningSummaries`) read its updates
    whatever their order in the callback list.
    """
    return _ACTIVE.get(model)


def set_active(model, callback):
    """Makes ``callback`` the one :func:`active_pruning` returns for ``model``; ``None`` clears it."""
    if callback is None:
        _ACTIVE.pop(model, None)
    else:
        _ACTIVE[model] = callback


def training_step(model):
    """The optimizer's iteration count of a compiled model, as a Python int (one host read)."""
    return int(model.optimizer.iterations.numpy())


def measured_sparsities(model):
    """The removed fraction of each mask of a wrapped model, and of all of them together.

    Returns:
        ``({weight path: sparsity}, model sparsity)``, in :func:`tfprune.prunable_weights` order.
    """
    masks = get_masks(model)
    names = [t.name for t in prunable_weights(model)]
    return {name: 1.0 - d for name, d in zip(names, masks_lib.densities(masks))}, 1.0 - masks_lib.density(masks)


@dataclasses.dataclass(frozen=True)
class MaskUpdate:
    """One mask update made by a pruning callback.

    Attributes:
        step: The optimizer's iteration count when the masks were set (before that step trains).
        target_sparsity: The sparsity the callback asked for at ``step``.
        sparsities: Removed fraction of each prunable weight, measured on the new masks, keyed by
            the weight's path in :func:`tfprune.prunable_weights` order.
        model_sparsity: Removed fraction over all prunable weights together.
        moved: For :class:`~tfprune.callbacks.DynamicSparse`, the connections moved in each weight
            (dropped, and as many grown elsewhere), keyed like ``sparsities``; ``None`` for
            updates that only prune.
    """

    step: int
    target_sparsity: float
    sparsities: dict
    model_sparsity: float
    moved: dict | None = None


def check_maskable(model, callback):
    """Raises a ValueError unless a callback can change ``model``'s masks between training steps.

    Args:
        model: The model the callback is given.
        callback: The callback's name, for the message.

    Raises:
        ValueError: if the model is not wrapped (the message says to call ``tfprune.wrap``), or was
            compiled with ``steps_per_execution`` other than 1 (several steps per callback call).
    """
    if not is_wrapped(model):
        raise ValueError(
            f"{callback} needs a wrapped model, and {model.name!r} has no masks: call "
            "tfprune.wrap(model) and compile and fit the result"
        )
    if model.steps_per_execution != 1:
        raise ValueError(
            f"{callback} changes masks between training steps, but {model.name!r} was compiled with "
            f"steps_per_execution={model.steps_per_execution}, which runs several steps per callback "
            "call: compile it with steps_per_execution=1"
        )


class MaskUpdatingCallback(keras.callbacks.Callback):
    """Base of the callbacks that change a wrapped model's masks on a schedule during ``fit``.

    At the start of each training batch it reads the step (the optimizer's iteration count), asks
    ``self.schedule(step)`` for ``(due, value)`` and, when due, calls ``self._update(step, value)``,
    which a subclass implements and which appends a :class:`MaskUpdate` to ``self.updates``. It
    refuses models whose masks cannot change between steps, and registers itself as the model's
    active pruner while training (see :func:`active_pruning`).
    """

    def __init__(self):
        super().__init__()
        self.updates = []
        self._fit_start = 0

    @property
    def last_update(self):
        """The latest :class:`MaskUpdate`, or ``None`` before the first."""
        return self.updates[-1] if self.updates else None

    @property
    def fit_updates(self):
        """The :class:`MaskUpdate` of the current ``fit`` call (or of the last one, after it)."""
        return self.updates[self._fit_start:]

    def set_model(self, model):
        check_maskable(model, type(self).__name__)
        super().set_model(model)

    def on_train_begin(self, logs=None):
        self._fit_start = len(self.updates)
        set_active(self.model, self)

    def on_train_end(self, logs=None):
        set_active(self.model, None)

    def on_train_batch_begin(self, batch, logs=None):
        step = training_step(self.model)
        due, value = self.schedule(step)
        if due:
            self._update(step, float(value))

    def _update(self, step, value):
        raise NotImplementedError
