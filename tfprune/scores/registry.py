"""The registry of scoring criteria: names → scorer functions.

A scorer is a function ``(model, targets, data, **options) -> list of score tensors``, one per
target, shaped like the target's weight; higher scores are kept. It reads the model as it is
(a wrapped model's forward pass applies the current masks) and must leave the model's weights as
it found them. Masking, schedules and bookkeeping live elsewhere (:mod:`tfprune.masks`,
:func:`tfprune.prune_at_init`).
"""

from __future__ import annotations

import dataclasses

from tfprune.base.registry import Entry, Registry


__all__ = ["Scorer", "register", "get", "available"]


@dataclasses.dataclass(frozen=True)
class Scorer(Entry):
    """A registered weight criterion.

    Attributes:
        name: The name used in ``prune_at_init(criterion=...)``.
        fn: ``(model, targets, data, **options) -> list of score tensors``.
        needs_data: Whether ``data`` must be given.
        keeps_pruned: In iterative pruning, whether weights pruned in an earlier round stay pruned
            (True for all criteria but FORCE, which may revive them).
        default_rounds: Rounds :func:`tfprune.prune_at_init` uses when not told (SynFlow 100,
            iterative SNIP and FORCE 60 as their authors ran them, the others 1).
    """

    keeps_pruned: bool = True
    default_rounds: int = 1

    def __call__(self, model, targets, data=None, **options):
        """``fn``'s scores, after checking the options and the data (see :meth:`Entry.check_call`)."""
        self.check_call(data, options)
        return self.fn(model, targets, data, **options)


_SCORERS = Registry(Scorer, "scorer")


def register(name, *, needs_data=False, keeps_pruned=True, default_rounds=1):
    """Decorator that registers a scorer function under ``name``.

    One function may be registered under several names.

    Args:
        name: The criterion's name.
        needs_data: Whether the scorer needs ``data``.
        keeps_pruned: Whether weights pruned in earlier rounds stay pruned.
        default_rounds: Rounds used when ``prune_at_init`` is not given ``rounds``.

    Returns:
        The decorator; it returns the function unchanged.

    Example:
        >>> @tfprune.scores.register("abs_grad", needs_data=True)
        ... def abs_grad(model, targets, data):
        ...     ...
    """
    return _SCORERS.register(name, needs_data=needs_data, keeps_pruned=keeps_pruned, default_rounds=default_rounds)


def get(criterion):
    """Looks up a scorer by name, or wraps a user's callable ``(model, targets, data)``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    return _SCORERS.get(criterion, wrap_callables=True)


def available():
    """Names of the registered scorers, sorted."""
    return _SCORERS.available()
