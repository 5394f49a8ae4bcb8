"""Reading variables as NumPy arrays without copying them.

``variable.numpy()`` copies the whole value. TensorFlow's variables are copy-on-write instead: a
tensor read from a variable shares its buffer, and a later ``assign`` (or ``assign_add``,
``scatter_update``…) writes a new buffer rather than change one that a read still holds. So a
read-only NumPy view of that tensor is both free and a true snapshot of the value at the time of
the read. This matters for the large models pruning works on: copying ResNet50's 25.5M weights
costs more than selecting its masks. JAX arrays never change, so a view of one is a snapshot too;
PyTorch's variables are written in place, so on that backend a view is a copy.
"""

import keras
import numpy as np
import tensorflow as tf

from tfprune.base import backends

__all__ = ["array", "view", "snapshot", "restore"]


def array(tensor):
    """``tensor`` (of any Keras backend, or anything ``np.asarray`` takes) as a NumPy array, not a
    copy where the backend allows (a PyTorch tensor is detached from autograd first).

    Example:
        >>> array(keras.ops.abs(layer.kernel.value))  # also on KERAS_BACKEND=torch
    """
    if backends.name() == "torch" and keras.ops.is_tensor(tensor):
        return keras.ops.convert_to_numpy(tensor)
    return np.asarray(tensor)


def view(variable):
    """A read-only NumPy array of ``variable``'s current value, not a copy.

    Later writes to the variable do not change the array (copy-on-write).

    Args:
        variable: A Keras 3 variable, or a ``tf.Variable`` (tf_keras's, distributed ones included:
            in cross-replica context their primary value is read).

    Returns:
        A read-only ``np.ndarray`` sharing TensorFlow's buffer.

    Example:
        >>> before = view(layer.kernel)
        >>> layer.kernel.assign(np.zeros(layer.kernel.shape))  # ``before`` keeps the old values
    """
    value = variable if isinstance(variable, tf.Variable) else variable.value
    if isinstance(value, tf.Variable):
        return np.asarray(value.read_value())
    if backends.name() == "torch":
        copy = keras.ops.convert_to_numpy(value).copy()
        copy.flags.writeable = False
        return copy
    return np.asarray(value)


def snapshot(variables):
    """Views of the current values of ``variables`` (:func:`view`), to :func:`restore` them from.

    Example:
        >>> saved = snapshot(model.weights)
        >>> try: ...
        ... except BaseException: restore(model.weights, saved); raise
    """
    return [view(v) for v in variables]


def restore(variables, values):
    """Assigns each variable its value from :func:`snapshot`."""
    for variable, value in zip(variables, values):
        variable.assign(value)
