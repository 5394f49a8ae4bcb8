"""The registry of scoring criteria: names → scorer functions.

A scorer is a function ``(model, targets, data, **options) -> list of score tensors``, one per
target, shaped like the target's weight; higher scores are kept. It reads the model as it is
(a wrapped model's forward pass applies the current masks) and must leave the model's weights as
it found them. Masking, schedules and bookkeeping live elsewhere (:mod:`tfprune.masks`,
:func:`tfprune.prune_at_init`).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

from tfprune.base.arguments import ArgumentError

__all__ = ["Scorer", "register", "get", "available"]


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A registered criterion.

    Attributes:
        name: The name used in ``prune_at_init(criterion=...)``.
        fn: ``(model, targets, data, **options) -> list of score tensors``.
        needs_data: Whether ``data`` must be given.
        keeps_pruned: In iterative pruning, whether weights pruned in an earlier round stay pruned
            (True for all criteria but FORCE, which may revive them).
        default_rounds: Rounds :func:`tfprune.prune_at_init` uses when not told (SynFlow 100,
            iterative SNIP and FORCE 60 as their authors ran them, the others 1).
    """

    name: str
    fn: Callable
    needs_data: bool = False
    keeps_pruned: bool = True
    default_rounds: int = 1

    def accepts(self, option):
        """Whether ``fn`` takes the keyword ``option``."""
        params = inspect.signature(self.fn).parameters.values()
        return any(p.name == option or p.kind is p.VAR_KEYWORD for p in params)

    def check_options(self, options):
        """Raises a ``TypeError`` naming the keys of ``options`` that ``fn`` does not take."""
        unknown = sorted(k for k in options if not self.accepts(k))
        if unknown:
            raise TypeError(f"criterion {self.name!r} takes no option {unknown}")

    def __call__(self, model, targets, data=None, **options):
        """``fn``'s scores, after checking the options.

        Raises:
            TypeError: for an option ``fn`` does not take.
        """
        self.check_options(options)
        return self.fn(model, targets, data, **options)


_REGISTRY: dict[str, Scorer] = {}


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
    if not isinstance(name, str) or not name:
        raise ValueError(f"a scorer name must be a non-empty string, got {name!r}")

    def decorator(fn):
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"a scorer named {name!r} is already registered")
        _REGISTRY[name] = Scorer(name, fn, needs_data, keeps_pruned, default_rounds)
        return fn

    return decorator


def get(criterion):
    """Looks up a scorer by name, or wraps a user's callable ``(model, targets, data)``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if isinstance(criterion, Scorer):
        return criterion
    if isinstance(criterion, str):
        if criterion not in _REGISTRY:
            raise ArgumentError(f"unknown criterion {criterion!r}; known criteria: {', '.join(available())}")
        return _REGISTRY[criterion]
    if callable(criterion):
        return Scorer(getattr(criterion, "__name__", "custom"), criterion)
    raise ArgumentError(f"criterion must be a name or a callable (model, targets, data) -> scores, "
                    f"got {type(criterion).__name__}")


def available():
    """Names of the registered scorers, sorted."""
    return sorted(_REGISTRY)
