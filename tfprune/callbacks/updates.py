"""What the mask-changing callbacks share: the update record, the callbacks now training a model
(each over its own layers, checked disjoint before the first step), and the two things they read
from a model (its step and its measured sparsities)."""

from __future__ import annotations

import dataclasses
import weakref

import keras

from tfprune import _compat
from tfprune.sparsity import masks as masks_lib
from tfprune.layers import policies
from tfprune.layers.targets import is_wrapped, prunable_weights
from tfprune.layers.wrapping import masks_of

__all__ = ["MaskUpdate", "active_pruners", "active_pruning", "measured_sparsities", "training_step", "check_maskable",
           "MaskUpdatingCallback"]

_ACTIVE = weakref.WeakKeyDictionary()  # model -> the mask-changing callbacks training it now


def active_pruners(model):
    """The callbacks changing ``model``'s masks in the current ``fit``
    (:class:`~tfprune.callbacks.GradualPruning`, :class:`~tfprune.callbacks.DynamicSparse`), in the
    order they started: each over its own layers.

    Lets other callbacks (e.g. :class:`tfprune.callbacks.PruningSummaries`) read their updates
    whatever their order in the callback list.
    """
    return tuple(_ACTIVE.get(model, ()))


def active_pruning(model):
    """The one callback changing ``model``'s masks in the current ``fit``, or ``None``.

    Raises:
        ValueError: if several do (one per selection of layers): use :func:`active_pruners`.
    """
    pruners = active_pruners(model)
    if len(pruners) > 1:
        raise ValueError(f"{len(pruners)} callbacks change the masks of {model.name!r}: use active_pruners(model)")
    return pruners[0] if pruners else None


def _claim(model, callback):
    """Registers ``callback`` as changing the masks of its targets in this ``fit``.

    Raises (registering nothing) if a callback of the same ``fit`` already changes one of them;
    callbacks left registered by a ``fit`` that stopped with an error are forgotten.
    """
    mine = {t.name for t in callback.targets()}
    others = [c for c in _ACTIVE.get(model, ()) if _compat.same_fit(c, callback) and c is not callback]
    for other in others:
        shared = sorted(mine & {t.name for t in other.targets()})
        if shared:
            raise ValueError(
                f"{type(callback).__name__} and {type(other).__name__} in the same fit would both change the "
                f"masks of {shared}: give each callback a policy= selecting different layers "
                "(e.g. tfprune.policies.OnlyLayers(names=[...])); nothing was changed"
            )
    _ACTIVE[model] = [*others, callback]


def _release(model, callback):
    remaining = [c for c in _ACTIVE.get(model, ()) if c is not callback]
    if remaining:
        _ACTIVE[model] = remaining
    else:
        _ACTIVE.pop(model, None)


def training_step(model):
    """The optimizer's iteration count of a compiled model, as a Python int (one host read)."""
    return int(model.optimizer.iterations.numpy())


def measured_sparsities(model, policy=None):
    """The removed fraction of each mask of a wrapped model, and of all of them together.

    Args:
        model: A wrapped model.
        policy: Only the masks of the layers this policy selects (see :func:`tfprune.prunable_weights`).

    Returns:
        ``({weight path: sparsity}, sparsity of them together)``, in :func:`tfprune.prunable_weights` order.
    """
    targets = prunable_weights(model, policy=policy)
    names, masks = [t.name for t in targets], masks_of(targets)
    return {name: 1.0 - d for name, d in zip(names, masks_lib.densities(masks))}, 1.0 - masks_lib.density(masks)


@dataclasses.dataclass(frozen=True)
class MaskUpdate:
    """One mask update made by a pruning callback.

    Attributes:
        step: The optimizer's iteration count when the masks were set (before that step trains).
        target_sparsity: The sparsity the callback asked for at ``step``.
        sparsities: Removed fraction of each weight the callback changes (its ``policy``'s; all
            prunable weights by default), measured on the new masks, keyed by the weight's path in
            :func:`tfprune.prunable_weights` order.
        model_sparsity: Removed fraction over all prunable weights of the model together.
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
    changes the masks of the layers ``policy`` selects; it refuses models whose masks cannot change
    between steps and, when training begins (before the first step), a selection that another
    callback of the same ``fit`` also changes, or what :meth:`check_model` refuses; while
    training it is one of the model's active pruners (see :func:`active_pruners`).

    Args:
        policy: Which of the wrapped model's masked layers it changes (``None``: all of them).
    """

    def __init__(self, policy=None):
        super().__init__()
        policies.get(policy)  # a bad name or type is refused now; the layers it selects when fit starts
        self.policy = policy
        self.updates = []
        self._fit_start = 0

    def targets(self):
        """The masked weights this callback changes, in :func:`tfprune.prunable_weights` order."""
        return prunable_weights(self.model, policy=self.policy)

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
        self.check_model(self.model)
        _claim(self.model, self)
        self._fit_start = len(self.updates)

    def on_train_end(self, logs=None):
        _release(self.model, self)

    def check_model(self, model):
        """Raises if this callback cannot train ``model`` (called before the first step); a
        subclass extends it."""
        self.targets()  # the policy selects masked layers of this model

    def on_train_batch_begin(self, batch, logs=None):
        step = training_step(self.model)
        due, value = self.schedule(step)
        if due:
            self._update(step, float(value))

    def _update(self, step, value):
        raise NotImplementedError

    def _record(self, step, target_sparsity, moved=None):
        """Appends the :class:`MaskUpdate` of the masks as they are now."""
        every, model_sparsity = measured_sparsities(self.model)  # one read of the masks
        mine = {t.name for t in self.targets()}
        update = MaskUpdate(step, target_sparsity, {n: s for n, s in every.items() if n in mine}, model_sparsity, moved)
        self.updates.append(update)
        return update
