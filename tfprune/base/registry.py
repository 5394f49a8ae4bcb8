"""Registries of named criteria: what the weight scorers (:mod:`tfprune.scores`) and the structured
unit criteria (:mod:`tfprune.structured.criteria`) share.

An :class:`Entry` is a function with a name and whether it needs data; calling it checks, before
any work, that it takes every option given and has data if it needs some. A :class:`Registry`
maps names to entries of one kind.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

from tfprune.base.arguments import ArgumentError

__all__ = ["Entry", "Registry"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered criterion.

    Attributes:
        name: The name it is registered (and looked up) under.
        fn: ``(model, what, data=None, **options) -> scores``.
        needs_data: Whether ``data`` must be given.
    """

    name: str
    fn: Callable
    needs_data: bool = False

    def accepts(self, option):
        """Whether ``fn`` takes the keyword ``option``."""
        params = inspect.signature(self.fn).parameters.values()
        return any(p.name == option or p.kind is p.VAR_KEYWORD for p in params)

    def check_call(self, data, options):
        """Raises before any work on an option ``fn`` does not take (TypeError) or missing data (ValueError)."""
        unknown = sorted(k for k in options if not self.accepts(k))
        if unknown:
            raise TypeError(f"criterion {self.name!r} takes no option {unknown}")
        if self.needs_data and data is None:
            raise ValueError(f"criterion {self.name!r} needs data: pass data=(x, y) or a dataset of (x, y) batches")


class Registry:
    """Names → entries of one kind (``entry_class``, an :class:`Entry` subclass).

    Example:
        >>> scorers = Registry(Scorer, "scorer")
        >>> @scorers.register("abs", needs_data=False)
        ... def abs_score(model, targets, data=None): ...
    """

    def __init__(self, entry_class, kind):
        self.entry_class, self.kind = entry_class, kind
        self.entries = {}

    def register(self, name, fn=None, **attributes):
        """Registers ``fn`` under ``name`` with the entry's ``attributes``; without ``fn``, returns a
        decorator that does (and returns the function unchanged). One function may have several names.

        Raises:
            ValueError: for an empty name or a name already registered to another function.
            TypeError: for a function that is not callable.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def decorator(f):
            if not callable(f):
                raise TypeError(f"a {self.kind} must be callable, got {type(f).__name__}")
            if name in self.entries and self.entries[name].fn is not f:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self.entries[name] = self.entry_class(name, f, **attributes)
            return f

        return decorator if fn is None else decorator(fn)

    def get(self, criterion, wrap_callables=False):
        """The entry registered under ``criterion`` (an entry is returned as it is; with
        ``wrap_callables``, a plain function becomes an unregistered entry).

        Raises:
            ArgumentError: for an unknown name (the message lists the known ones) or anything else.
        """
        if isinstance(criterion, self.entry_class):
            return criterion
        if isinstance(criterion, str):
            if criterion not in self.entries:
                raise ArgumentError(f"unknown criterion {criterion!r}; known criteria: {', '.join(self.available())}")
            return self.entries[criterion]
        if wrap_callables and callable(criterion):
            return self.entry_class(getattr(criterion, "__name__", "custom"), criterion)
        raise ArgumentError(f"criterion must be a registered name{' or a callable' if wrap_callables else ''}, "
                        f"got {type(criterion).__name__}")

    def available(self):
        """The registered names, sorted."""
        return sorted(self.entries)
