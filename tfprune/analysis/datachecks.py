"""Checks at the door: the data a score or a fit reads, and the weights it reads, before any work.

A data-driven criterion, :func:`tfprune.structured.prune` and :func:`tfprune.training.fit` take
``(x, y)`` arrays or a dataset of ``(x, y)`` batches. :func:`check_data` compares them with the
model and raises a ``ValueError`` that names the argument, the problem and the numbers, instead of
the TensorFlow error a wrong batch gives deep inside a loss: features of the wrong shape, labels
that are not class ids in ``[0, outputs)`` (one-hot rows, negative or too large ids), ``x`` and
``y`` of different lengths, no examples at all, ``x`` without labels, a dataset of single examples
(not batched), and NaN or infinite values — reported as the data's, not a criterion's.
:func:`check_weights` does the same for a model's own weights, naming the weight that is not finite.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfprune.base import views

__all__ = ["check_data", "check_arrays", "check_examples", "check_weights", "is_array_pair", "pair", "shape_fits"]

_BATCH_HINT = "e.g. tf.data.Dataset.from_tensor_slices((x, y)).batch(32)"


def is_array_pair(data):
    """Whether ``data`` is ``(x, y)`` arrays (or tensors), rather than a dataset or other iterable of batches."""
    return isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "shape")


def check_data(model, data, *, class_ids=True, name="data", examples=None):
    """Checks ``data`` against ``model`` before any work: raises with a clear message, else returns.

    ``(x, y)`` arrays are checked whole (:func:`check_examples`). A ``tf.data.Dataset`` is checked
    by its element spec — batches of ``(x, y)`` pairs, batched, features of the model's input
    shape, labels of the right form —, and the values of each batch by :func:`check_examples` when
    a reader takes it (as :func:`tfprune.autodiff.gradients.scoring_batches` does). Any other
    iterable of ``(x, y)`` batches is checked batch by batch as read.

    Args:
        model: The Keras model the data is for; its input shape and its number of outputs (the
            classes) are compared with the data's where the model knows them.
        data: ``(x, y)`` arrays or tensors, or a ``tf.data.Dataset`` / iterable of ``(x, y)`` batches.
        class_ids: Check ``y`` as integer class ids in ``[0, outputs)``, of shape ``(N,)`` or
            ``(N, 1)`` — what the default loss (sparse categorical cross-entropy) takes. ``False``
            for a loss of your own, which takes labels of any form.
        name: The argument's name, used in messages (``"data"``, ``"validation"``).
        examples: Check the values (labels, finiteness) of the first ``examples`` examples of
            arrays only (those a score reads); shapes and lengths are always checked whole.

    Raises:
        ValueError: naming ``name``, the problem and the numbers.
        TypeError: if ``data`` is neither arrays nor an iterable of batches.

    Example:
        >>> check_data(model, (x, y))                 # returns None when the data fits the model
        >>> check_data(model, (x, y[:30]))
        ValueError: data: x has 64 examples but y has 30 labels (shape (30,)): give one label per example
    """
    if is_array_pair(data):
        check_examples(model, data[0], data[1], class_ids=class_ids, name=name, examples=examples)
    elif hasattr(data, "shape"):
        raise ValueError(f"{name} is a single array of shape {tuple(data.shape)}: x without labels; "
                         f"give (x, y) arrays or a dataset of (x, y) batches ({_BATCH_HINT})")
    elif isinstance(data, tf.data.Dataset):
        _check_spec(model, data.element_spec, class_ids, name)
    elif isinstance(data, (tuple, list)) and data and not isinstance(data[0], (tuple, list)):
        raise ValueError(f"{name} is a {type(data).__name__} of {len(data)} items, not (x, y) arrays: "
                         f"give (x, y) arrays or a dataset of (x, y) batches ({_BATCH_HINT})")
    elif not hasattr(data, "__iter__"):
        raise TypeError(f"{name} must be (x, y) arrays or a dataset of (x, y) batches, got {type(data).__name__}")


def check_arrays(model, data, *, class_ids=True, name="data"):
    """:func:`check_data` for readers that take ``(x, y)`` arrays only (they index and shuffle them).

    Returns:
        ``(x, y)``.

    Raises:
        ValueError: as :func:`check_data`, and for a dataset or other iterable of batches.

    Example:
        >>> x, y = check_arrays(model, train, name="train")
    """
    check_data(model, data, class_ids=class_ids, name=name)
    if not is_array_pair(data):
        raise ValueError(f"{name} must be (x, y) arrays here (examples are drawn from them by index), got a "
                         f"{type(data).__name__}: give (x, y) NumPy arrays")
    return data[0], data[1]


def pair(batch, name="data"):
    """``(x, y)`` of one batch read from a dataset or iterable; raises if it is not such a pair.

    Raises:
        ValueError: for a batch of x without labels, or of more or fewer than two items.
    """
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if hasattr(batch, "shape"):
        raise ValueError(f"{name} yields single tensors of shape {tuple(batch.shape)}: x without labels; "
                         f"give a dataset of (x, y) batches ({_BATCH_HINT})")
    size = f"{len(batch)} items" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
    raise ValueError(f"{name} yields {size} per batch, not (x, y) pairs: give a dataset of (x, y) batches")


def check_examples(model, x, y, *, class_ids=True, name="data", examples=None):
    """Checks concrete examples ``x`` and labels ``y`` (arrays, tensors or one batch) against ``model``.

    Args:
        model, class_ids, name, examples: As for :func:`check_data`.
        x: The inputs, one example per entry of the first axis.
        y: The labels.

    Raises:
        ValueError: for no examples, lengths that differ, a single example where a batch is
            expected, features that do not match the model's input shape or are not numbers
            (strings), labels that are not class
            ids in range (with ``class_ids``), or NaN/infinite values in ``x`` or ``y``.
    """
    inputs = tf.nest.flatten(x)  # several for a model with several inputs
    x_shape, y_shape = tuple(inputs[0].shape), tuple(np.shape(y))
    expected = _input_shape(model)
    if expected is not None and len(x_shape) == len(expected) and shape_fits(x_shape, expected):
        raise ValueError(f"{name}: x of shape {x_shape} is a single example, but model {model.name!r} takes "
                         f"batches of inputs of shape (batch, {', '.join(map(str, expected))}): batch it "
                         f"(x[None] for one example, or {_BATCH_HINT})")
    if not x_shape or x_shape[0] == 0:
        raise ValueError(f"{name} holds no examples (x has shape {x_shape}): give at least one")
    if not y_shape or y_shape[0] != x_shape[0]:
        raise ValueError(f"{name}: x has {x_shape[0]} examples but y has {y_shape[0] if y_shape else 0} labels "
                         f"(shape {y_shape}): give one label per example")
    if expected is not None and not (len(x_shape) == len(expected) + 1 and shape_fits(x_shape[1:], expected)):
        raise ValueError(f"{name}: x has examples of shape {x_shape[1:]}, but model {model.name!r} takes inputs "
                         f"of shape {expected} (without the batch axis)")
    xs = [_values(a, examples) for a in inputs]
    not_numbers = [a.dtype for a in xs if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool)]
    if not_numbers:
        raise ValueError(f"{name}: x holds {not_numbers[0]} values, not numbers: give numeric arrays (e.g. float32 "
                         "pixels or features)")
    y = _values(y, examples)
    if class_ids:
        _check_class_ids(model, y, name)
    for label, values in [("x", a) for a in xs] + [("y", y)]:
        _check_finite(values, f"{name}: {label}", "the data, not the model, is not finite: remove or repair "
                      "those examples")


def check_weights(model):
    """Raises if a weight of ``model`` holds NaN or infinite values, naming it.

    Scores and losses of a network with such a weight are NaN; this says which weight it is,
    before a criterion runs (Keras 3 and tf_keras models).

    Raises:
        ValueError: naming the first weight that is not finite and how many entries are not.
    """
    for v in model.weights:
        _check_finite(views.view(v), f"weight {getattr(v, 'path', v.name)!r} of model {model.name!r}",
                      "the model's weights must be finite to be scored or trained: re-initialise or reload "
                      "the model (a diverged training leaves such weights; lower the learning rate)",
                      per_example=False)


def _check_spec(model, spec, class_ids, name):
    if not isinstance(spec, tuple) or len(spec) != 2:
        if isinstance(spec, tf.TensorSpec):
            raise ValueError(f"{name} is a dataset of single tensors (spec {spec}): x without labels; give a "
                             f"dataset of (x, y) batches ({_BATCH_HINT})")
        raise ValueError(f"{name} is a dataset of {spec}, not of (x, y) pairs: give a dataset of (x, y) "
                         "batches")
    x_spec, y_spec = spec
    expected = _input_shape(model)
    if not isinstance(x_spec, tf.TensorSpec) or x_spec.shape.rank is None or expected is None:
        return
    x_shape = tuple(x_spec.shape)
    if len(x_shape) == len(expected) and shape_fits(x_shape, expected):
        raise ValueError(f"{name} yields single examples (x of shape {x_shape}), but model {model.name!r} takes "
                         f"batches of inputs of shape (batch, {', '.join(map(str, expected))}): batch the "
                         f"dataset, e.g. {name}.batch(32)")
    if not (len(x_shape) == len(expected) + 1 and shape_fits(x_shape[1:], expected)):
        raise ValueError(f"{name} yields x of shape {x_shape}, but model {model.name!r} takes inputs of shape "
                         f"{expected} (without the batch axis)")
    if class_ids and isinstance(y_spec, tf.TensorSpec) and y_spec.shape.rank is not None:
        _check_label_shape(model, tuple(y_spec.shape), name)


def _check_label_shape(model, shape, name):
    classes = _num_outputs(model)
    if len(shape) == 2 and shape[1] not in (1, None) and shape[1] == classes:
        raise ValueError(f"{name}: y of shape {shape} holds one-hot rows of the {classes} classes, but the default "
                         f"loss (sparse categorical cross-entropy) takes class ids of shape (N,): pass "
                         "y.argmax(-1), or, to a criterion, loss='categorical_crossentropy'")
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, None))):
        raise ValueError(f"{name}: labels must be class ids of shape (N,) or (N, 1), got y of shape {shape}")


def _check_class_ids(model, y, name):
    _check_label_shape(model, y.shape, name)
    flat = y.reshape(-1)
    if not (np.issubdtype(flat.dtype, np.integer) or np.issubdtype(flat.dtype, np.floating)):
        raise ValueError(f"{name}: labels must be integer class ids, got y of dtype {flat.dtype}")
    if np.issubdtype(flat.dtype, np.floating):
        _check_finite(y, f"{name}: y", "labels must be integer class ids")
        fractional = np.flatnonzero(flat != np.round(flat))
        if fractional.size:
            raise ValueError(f"{name}: labels must be integer class ids, got {fractional.size} fractional value(s) "
                             f"such as {flat[fractional[0]]} (example {fractional[0]})")
    classes = _num_outputs(model)
    high = np.inf if classes is None else classes
    outside = np.flatnonzero((flat < 0) | (flat >= high))
    if outside.size:
        bound = f"[0, {classes}) — model {model.name!r} has {classes} outputs —" if classes else "[0, ∞)"
        raise ValueError(f"{name}: labels must be class ids in {bound} but {outside.size} of {flat.size} are outside "
                         f"it (min {flat.min():g}, max {flat.max():g}; first at example {outside[0]}: "
                         f"{flat[outside[0]]:g})")


def _check_finite(values, what, advice, per_example=True):
    """Raises if the float ``values`` hold NaN or ±inf, saying how many and where the first is."""
    if not np.issubdtype(values.dtype, np.floating) or np.isfinite(values.sum(dtype=np.float64)):
        return
    bad = ~np.isfinite(values)
    if not bad.any():  # the float64 sum overflowed on finite values
        return
    first = np.flatnonzero(bad.reshape(-1))[0]
    where = f"first at example {first // max(1, values[0].size)}" if per_example else f"first at flat index {first}"
    raise ValueError(f"{what} holds {int(np.isnan(values).sum())} NaN and {int(np.isinf(values).sum())} infinite "
                     f"values (of {values.size}; {where}): {advice}")


def _values(a, examples):
    a = a if examples is None else a[:examples]
    return np.asarray(a)


def shape_fits(shape, expected):
    """Whether ``shape`` matches ``expected`` where both dimensions are known (``None`` is unknown)."""
    return all(a is None or b is None or a == b for a, b in zip(shape, expected))


def _input_shape(model):
    """One example's input shape (``None`` dims unknown), or ``None`` when the model has several
    inputs or does not know its input (a subclassed model)."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def _num_outputs(model):
    """The size of the model's single output's last axis (its classes), or ``None`` when unknown."""
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not isinstance(shape, tuple) or not shape or not isinstance(shape[-1], int):
        return None
    return shape[-1]
