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

__all__ = ["BackendError", "name", "is_tensorflow", "require_tensorflow"]


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
