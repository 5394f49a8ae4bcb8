"""Checking the arguments of the public entry points: one check per kind of argument.

Every entry point checks its arguments here before any work, so that an argument is checked the
same way wherever it is taken, its type included, and a bad one raises an :class:`ArgumentError`
that names the argument, the value given and the accepted range or choices:

>>> number("sparsity", "0.5", 0, 1, high_open=True)
ArgumentError: sparsity must be a number in [0, 1), got '0.5' (a str)
"""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from tfprune.base import backends

__all__ = ["ArgumentError", "MAX_SEED", "choice", "count", "flag", "is_int", "keras_model", "number", "path", "seed",
           "verbosity"]

MAX_SEED = 2 ** 32 - 1  # NumPy's and keras.utils.set_random_seed's largest seed


class ArgumentError(ValueError, TypeError):
    """A bad argument: a value of the wrong type or out of range, or a model that is not a Keras 3 model.

    The message names the argument, the value given and what is accepted. It is both a
    ``ValueError`` and a ``TypeError``: code that caught either for a bad argument still catches it.
    """


def _given(value, typed=None):
    """``value`` as a message shows it: its repr (cut at 80 characters), followed by its type unless
    ``typed`` (default: unless it is a number or None)."""
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    typed = _is_real(value) or value is None if typed is None else typed
    kind = type(value).__name__
    return text if typed else f"{text} ({'an' if kind[0] in 'aeiou' else 'a'} {kind})"


def _fail(name, accepted, value, advice="", typed=None):
    raise ArgumentError(f"{name} must be {accepted}, got {_given(value, typed)}" + (f": {advice}" if advice else ""))


def _is_real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_int(value):
    """Whether ``value`` is an int or a NumPy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _range(low, high, low_open, high_open):
    """``"in [0, 1)"``, ``"> 0"``, ``">= 1"``, ``"<= 2"`` or ``""``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def _inside(value, low, high, low_open, high_open):
    return (low is None or (value > low if low_open else value >= low)) and \
        (high is None or (value < high if high_open else value <= high))


def number(name, value, low=None, high=None, *, low_open=False, high_open=False, optional=False):
    """A finite real number (not a bool or a string) in a range, as a float.

    Args:
        name: The argument's name, for the message.
        value: The value given.
        low, high: The bounds (``None``: unbounded on that side).
        low_open, high_open: Whether the bound itself is excluded.
        optional: Whether ``None`` is accepted (and returned).

    Raises:
        ArgumentError: e.g. ``sparsity must be a number in [0, 1), got 1.2``.

    Example:
        >>> number("temperature", 200, 0, low_open=True)
        200.0
    """
    if optional and value is None:
        return None
    bounded = low is not None and high is not None
    accepted = f"{'a number' if bounded else 'a finite number'} {_range(low, high, low_open, high_open)}".rstrip()
    if optional:
        accepted = f"None or {accepted}"
    if not (_is_real(value) and math.isfinite(value) and _inside(value, low, high, low_open, high_open)):
        _fail(name, accepted, value)
    return float(value)


def count(name, value, minimum=1, maximum=None, *, optional=False):
    """A whole number (an int or NumPy integer, not a bool or a float) in ``[minimum, maximum]``, as an int.

    Raises:
        ArgumentError: e.g. ``batch_size must be an int >= 1, got 0``.

    Example:
        >>> count("rounds", 3)
        3
    """
    if optional and value is None:
        return None
    accepted = f"an int {_range(minimum, maximum, False, False)}".rstrip()
    if optional:
        accepted = f"None or {accepted}"
    if not (is_int(value) and _inside(value, minimum, maximum, False, False)):
        _fail(name, accepted, value)
    return int(value)


def seed(value, name="seed", *, optional=True):
    """An int in ``[0, 2**32 - 1]``, or ``None`` (draw one) when ``optional``.

    Example:
        >>> seed(7)
        7
    """
    if optional and value is None:
        return None
    if not (is_int(value) and 0 <= value <= MAX_SEED):
        _fail(name, f"{'None or ' if optional else ''}an int in [0, 2**32 - 1]", value)
    return int(value)


def flag(name, value):
    """``True`` or ``False`` (a Python or NumPy bool), as a bool.

    Example:
        >>> flag("include_bias", False)
        False
    """
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, "True or False", value)
    return bool(value)


def verbosity(value, name="verbose"):
    """A progress level: 0 (silent), 1 or 2, or a bool (``True`` is 1), as an int.

    Example:
        >>> verbosity(True)
        1
    """
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if not (is_int(value) and 0 <= value <= 2):
        _fail(name, "0, 1, 2 or a bool", value)
    return int(value)


def choice(name, value, choices, *, advice=""):
    """One of ``choices``, of the same type as the choice it equals (``1`` is not ``True``).

    Args:
        name: The argument's name.
        value: The value given.
        choices: The accepted values.
        advice: What else may be given, appended to the message (e.g. "or a Pattern").

    Raises:
        ArgumentError: e.g. ``scope must be one of 'global', 'local', got 'layer'``.

    Example:
        >>> choice("scope", "local", ("global", "local"))
        'local'
    """
    if not any(type(value) is type(c) and value == c for c in choices):
        _fail(name, f"one of {', '.join(map(repr, choices))}", value, advice,
              typed=any(type(value) is type(c) for c in choices))
    return value


def path(name, value):
    """A file or folder path: a ``str`` or an ``os.PathLike``, as a ``str``.

    Example:
        >>> path("log_dir", pathlib.Path("logs"))
        'logs'
    """
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        _fail(name, "a path (a non-empty str or os.PathLike)", value)
    return os.fspath(value)


def keras_model(value, name="model"):
    """Raises unless ``value`` is a Keras 3 model; the message says what was given and what to do.

    A layer, ``None`` and a tf_keras model (use :mod:`tfprune.tfmot` for those) are each named as such.

    Raises:
        ArgumentError: for anything but a ``keras.Model``.
        BackendError: on JAX, for a model whose variables lie on several devices while no
            ``keras.distribution`` is set (:func:`tfprune.base.backends.require_distribution_for_placement`).

    Example:
        >>> keras_model(keras.layers.Dense(3))
        ArgumentError: model must be a Keras 3 model (keras.Model), got the Dense layer 'dense': ...
    """
    if isinstance(value, keras.Model):
        backends.require_distribution_for_placement(value)
        return value
    if value is None:
        given, advice = "None", "pass the model itself"
    elif any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(value).__mro__):
        given = f"the tf_keras {type(value).__name__} {getattr(value, 'name', '')!r}"
        advice = ("tfprune's Keras 3 API does not take tf_keras models: use tfprune.tfmot for them "
                  "(tfprune.tfmot.prune_at_init, tfprune.tfmot.Rescore), or rebuild the model in Keras 3")
    elif (made_under := backends.made_before_switch(value)) is not None:
        given = f"the {type(value).__name__} {getattr(value, 'name', '')!r}, made under Keras' {made_under!r} backend"
        advice = (f"Keras now runs on {backends.name()!r}, and keras.config.set_backend re-imports Keras, so objects "
                  "made before it cannot be used after; build the model again (or save it as .keras and load it) "
                  "after switching")
    elif isinstance(value, keras.layers.Layer):
        given = f"the {type(value).__name__} layer {value.name!r}"
        advice = "pass a model that holds it, e.g. keras.Sequential([keras.Input(shape), layer])"
    else:
        given, advice = _given(value), "pass a keras.Model (Sequential, functional or subclassed)"
    raise ArgumentError(f"{name} must be a Keras 3 model (keras.Model), got {given}: {advice}")
