"""Pruning policies: which layers of a model are pruned.

A policy sees the layers that own prunable weights, in model order, and returns those to prune.
Built-in policies:

* :class:`AllLayers` (the default, also ``"all"``): every supported layer;
* :class:`SkipFirstLast` (also ``"skip_first_last"``): all but the first and the last, as many
  papers do for the input convolution and the classifier;
* :class:`OnlyLayers`: only layers of the given types or names;
* :class:`ExcludeLayers`: all but layers of the given types or names.

A user's policy is any :class:`Policy` subclass, or a callable ``(layers, model) -> layers``.

Example:
    >>> targets = tfprune.prunable_weights(model, policy=OnlyLayers(types=["Conv2D"]))
"""

from __future__ import annotations

from tfprune.base import arguments, walk

__all__ = ["Policy", "AllLayers", "SkipFirstLast", "OnlyLayers", "ExcludeLayers", "get"]


class Policy:
    """Base class: override :meth:`select`."""

    def select(self, layers, model):
        """Chooses the layers to prune.

        Args:
            layers: Layers owning prunable weights, in model order.
            model: The model, for policies that check names or types against it.

        Returns:
            The chosen layers, a sub-list of ``layers`` in the same order.
        """
        raise NotImplementedError

    def __call__(self, layers, model):
        return self.select(layers, model)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class AllLayers(Policy):
    """Prunes every layer that has prunable weights."""

    def select(self, layers, model):
        return list(layers)


class SkipFirstLast(Policy):
    """Leaves the first and/or the last prunable layer dense.

    Args:
        first: Skip the first prunable layer (the input layer of the network).
        last: Skip the last prunable layer (usually the classifier).
    """

    def __init__(self, first=True, last=True):
        self.first = first
        self.last = last

    def select(self, layers, model):
        layers = list(layers)
        start = 1 if self.first else 0
        stop = len(layers) - 1 if self.last else len(layers)
        return layers[start:stop]


def _all_layers(model):
    return [leaf for unit, _ in walk.units(model) for leaf in walk.leaves(unit)]


class _Matching(Policy):
    """Shared matching of layer types (classes or class names) and layer names."""

    def __init__(self, types=(), names=()):
        if isinstance(types, (str, type)):
            types = [types]
        if isinstance(names, str):
            names = [names]
        self.types = tuple(types)
        self.names = tuple(names)
        if not self.types and not self.names:
            raise ValueError(f"{type(self).__name__} needs layer types or layer names")

    def matches(self, layer):
        """Whether ``layer`` is of one of the types or has one of the names."""
        for t in self.types:
            if isinstance(t, str) and any(c.__name__ == t for c in type(layer).__mro__):
                return True
            if isinstance(t, type) and isinstance(layer, t):
                return True
        return layer.name in self.names

    def _check_present(self, model):
        present = _all_layers(model)
        for t in self.types:
            if not any(_Matching(types=[t]).matches(layer) for layer in present):
                kinds = sorted({type(layer).__name__ for layer in present})
                raise ValueError(f"{type(self).__name__}: model {model.name!r} has no layer of type {t!r}; its layer types are {kinds}")
        names = {layer.name for layer in present}
        for n in self.names:
            if n not in names:
                raise ValueError(f"{type(self).__name__}: model {model.name!r} has no layer named {n!r}; its layers are {sorted(names)}")


class OnlyLayers(_Matching):
    """Prunes only layers of the given types or names.

    Args:
        types: Layer classes or class names (``"Conv2D"``; subclasses match too).
        names: Layer names.

    Raises:
        ValueError: (when selecting) if a named type or name is not in the model at all.
    """

    def select(self, layers, model):
        self._check_present(model)
        return [layer for layer in layers if self.matches(layer)]


class ExcludeLayers(_Matching):
    """Prunes every layer except those of the given types or names.

    Args:
        types: Layer classes or class names to leave dense.
        names: Layer names to leave dense.
    """

    def select(self, layers, model):
        self._check_present(model)
        return [layer for layer in layers if not self.matches(layer)]


_BY_NAME = {"all": AllLayers, "skip_first_last": SkipFirstLast}


def get(policy):
    """Resolves ``None``, a name (``"all"``, ``"skip_first_last"``), a Policy or a callable.

    Returns:
        A callable ``(layers, model) -> layers``.
    """
    if policy is None:
        return AllLayers()
    if isinstance(policy, str):
        arguments.choice("policy", policy, tuple(_BY_NAME), advice="or None, a Policy or a callable")
        return _BY_NAME[policy]()
    if callable(policy):
        return policy
    raise arguments.ArgumentError(f"policy must be None, a name ({', '.join(_BY_NAME)}), a Policy or a callable, got "
                                  f"{policy!r}")

