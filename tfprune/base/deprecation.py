"""Old spellings keep working for one release, with a ``DeprecationWarning`` naming the new one.

Two mechanisms, one message style: :func:`renamed` for keyword arguments (as Torch-Pruning renamed
``ch_sparsity`` to ``pruning_ratio``), :func:`alias_modules` for modules that moved into
sub-packages. Each old spelling warns once per process; an old keyword given together with its new
one is a ``TypeError`` before any work.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import inspect
import sys
import warnings

__all__ = ["alias_modules", "moved_attribute", "renamed", "warn_once"]

_warned = set()


def warn_once(key, message):
    """Issue ``message`` as a ``DeprecationWarning`` the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, DeprecationWarning, stacklevel=3)


def renamed(**old_to_new):
    """Decorator: accept each old keyword name, warn once, and pass it on under its new name.

    A value may translate on the way (``old=("new", function)``), e.g. a kept fraction to a sparsity;
    a new name ``"**name"`` spreads an old dict argument into the keyword arguments.

    >>> @renamed(method="criterion")
    ... def prune(model, criterion=None): ...
    >>> prune(model, method="snip")   # DeprecationWarning: 'method' is now 'criterion'
    """
    table = {old: (new if isinstance(new, tuple) else (new, None)) for old, new in old_to_new.items()}

    def decorate(function):
        where = function.__qualname__.replace(".__init__", "")
        positional = [p.name for p in inspect.signature(function).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old in table.keys() & kwargs.keys():
                new, translate = table[old]
                if (new in kwargs or new in positional[:len(args)]) and not new.startswith("**"):
                    raise TypeError(f"{where}() got both {old!r} (deprecated) and {new!r}; pass only {new!r}")
                value = kwargs.pop(old)
                if new.startswith("**"):
                    clash = sorted(set(value or {}) & set(kwargs))
                    if clash:
                        raise TypeError(f"{where}() got {clash} both in {old!r} (deprecated) and as keywords")
                    kwargs.update(value or {})
                else:
                    kwargs[new] = translate(value) if translate else value
                hint = " (its value translated)" if translate else " (as keyword arguments)" if new[:2] == "**" else ""
                warn_once((where, old), f"{where}(): {old!r} is deprecated and will be removed in tfprune 1.1; "
                                        f"use {new!r}{hint}")
            return function(*args, **kwargs)

        wrapper.renamed_arguments = dict(table)
        return wrapper

    return decorate


class _ModuleAliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import old.path`` return the module now at ``new.path`` (warning if deprecated)."""

    def __init__(self, aliases):
        self.aliases = aliases  # old dotted name -> (new dotted name, deprecated)

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in self.aliases else None

    def create_module(self, spec):
        return _resolve(self.aliases, spec.name)

    def exec_module(self, module):
        """The module was executed under its new name."""


def _resolve(aliases, old):
    new, deprecated = aliases[old]
    if deprecated:
        warn_once(("module", old), f"{old} moved to {new}; the old path will be removed in tfprune 1.1")
    return importlib.import_module(new)


_ALIASES = {}


def alias_modules(aliases):
    """Register ``{old dotted name: (new dotted name, deprecated)}`` for ``import`` and attribute access."""
    if not _ALIASES:
        sys.meta_path.insert(0, _ModuleAliases(_ALIASES))
    _ALIASES.update(aliases)


def moved_attribute(package, name):
    """For a package's ``__getattr__``: the module that ``package.name`` moved to, or AttributeError."""
    old = f"{package}.{name}"
    if old not in _ALIASES:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return _resolve(_ALIASES, old)
