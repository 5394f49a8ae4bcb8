"""Which Keras backend runs tfprune, and the features that need TensorFlow's.

Keras reads ``KERAS_BACKEND`` once, at import; tfprune follows it. Pruning, scoring, training with
masks, profiling and saving run on TensorFlow, JAX and PyTorch; a few features are TensorFlow's
own (TFLite export, ``tf.distribute`` strategies, the TF-MOT bridge) and :func:`require_tensorflow`
refuses them elsewhere, before any work, saying what to use instead.

Example:
    >>> require_tensorflow("TFLite export", "save the stripped model as .keras and convert it under "
    ...                    "KERAS_BACKEND=tensorflow")
"""

from __future__ import annotations

import keras

__all__ = ["BackendError", "name", "is_tensorflow", "require_tensorflow", "made_before_switch",
           "require_distribution_for_placement"]


class BackendError(RuntimeError):
    """A feature asked for on a Keras backend that does not provide it."""


def name():
    """The Keras backend in use: ``"tensorflow"``, ``"jax"``, ``"torch"`` or ``"numpy"``."""
    return keras.backend.backend()


def is_tensorflow():
    """Whether Keras runs on TensorFlow."""
    return name() == "tensorflow"


def require_tensorflow(feature, instead):
    """Raises :class:`BackendError` unless Keras runs on TensorFlow.

    Args:
        feature: What was asked for, e.g. ``"TFLite export"``.
        instead: What to do on this backend instead, a phrase.

    Raises:
        BackendError: naming the backend, the feature and ``instead``.
    """
    if not is_tensorflow():
        raise BackendError(f"{feature} needs the TensorFlow backend, but Keras runs on {name()!r} "
                           f"(KERAS_BACKEND={name()}): {instead}")


def made_before_switch(value):
    """The backend a Keras object was made under, if Keras has been re-imported since (by
    ``keras.config.set_backend``), so that it is no longer an instance of Keras' own classes; else ``None``.

    The classes of its variables name the backend (``"tensorflow"``, ...); ``"another backend"`` if it has none.
    """
    if isinstance(value, keras.layers.Layer) or not any(
            cls.__module__.startswith("keras.") for cls in type(value).__mro__):
        return None
    modules = [cls.__module__.split(".") for v in getattr(value, "weights", []) for cls in type(v).__mro__]
    return next((parts[3] for parts in modules
                 if parts[:3] == ["keras", "src", "backend"] and len(parts) > 3 and parts[3] != "common"),
                "another backend")


def require_distribution_for_placement(model):
    """Raises :class:`BackendError` if, on JAX, a variable of ``model`` lies on several devices
    (sharded or replicated by a ``keras.distribution``) while no distribution is set.

    tfprune creates its masks and runs its scoring steps under the distribution in effect; without
    one they would sit whole on one device, outside the model's layout. The message names the
    variable, its placement and what to do.
    """
    if name() != "jax" or keras.distribution.distribution() is not None:
        return
    for variable in model.variables:
        sharding = getattr(variable.value, "sharding", None)
        devices = len(getattr(sharding, "device_set", ()))
        if devices > 1:
            raise BackendError(
                f"the variable {variable.path!r} of {model.name!r} lies on {devices} devices ({sharding}), but no "
                "keras.distribution is set, so tfprune's masks and scoring steps would sit whole on one device: "
                "set the distribution the model was built under first (keras.distribution.set_distribution("
                "distribution), or work inside `with distribution.scope():`)")
