"""The data of every data-driven part, read as ``model.fit`` reads it.

SNIP, iterative SNIP, FORCE, GraSP, RigL (:class:`tfprune.callbacks.DynamicSparse`), the
structured criteria and :func:`tfprune.structured.prune` take ``data`` in any form ``fit`` takes:

* ``(x, y)`` or ``(x, y, sample_weight)`` arrays, where ``x`` is an array, a list of arrays (one
  per input, in ``model.inputs`` order) or a dict of arrays by input name, and ``y`` and
  ``sample_weight`` an array or a list/dict per output (sample weights one per example, or per
  label entry: a padding mask);
* a ``tf.data.Dataset``, ``keras.utils.PyDataset`` or generator yielding such batches.

Keras's own data adapters read it (:func:`tfprune._compat.data_adapter`; arrays are cast as
``fit`` casts them), :mod:`tfprune.analysis.datachecks` checks it against the model before any
work, and :func:`scoring_batches` returns :class:`Batch` tuples of tensors holding exactly
``samples`` examples, ``x`` in the model's own input structure.

Example:
    >>> batches = scoring_batches(model, ({"tokens": t, "mask": m}, y, m), samples=64, batch_size=32)
    >>> [examples(b) for b in batches]
    [32, 32]
"""

from __future__ import annotations

import collections
import warnings
import types

import keras
import numpy as np
import tensorflow as tf

from tfprune import _compat
from tfprune.analysis import datachecks
from tfprune.autodiff import losses
from tfprune.base import arguments

__all__ = ["Batch", "scoring_batches", "class_balanced", "examples", "take", "halves", "class_ids"]

Batch = collections.namedtuple("Batch", ["x", "y", "sample_weight"])
Batch.__doc__ = """One batch: inputs, labels and sample weights (``None``), each a tensor or a structure of them."""


def examples(batch):
    """The number of examples in a :class:`Batch` (or in any structure of arrays)."""
    return datachecks.num_examples(batch.x if isinstance(batch, Batch) else batch)


def take(structure, index):
    """Every array of ``structure`` indexed along its first axis by ``index`` (a slice or indices);
    ``None`` stays ``None``."""
    return keras.tree.map_structure(lambda a: a if a is None else a[index], structure)


def halves(batch):
    """A :class:`Batch` split in its first and second half (one of a single example stays whole)."""
    n = examples(batch)
    if n < 2:
        return [batch]
    return [Batch(*(take(part, s) for part in batch)) for s in (slice(0, n // 2), slice(n // 2, n))]


def class_balanced(x, y, per_class, sample_weight=None):
    """The first ``per_class`` examples of each class, grouped by class in increasing order (the
    GraSP authors' draw); a class with fewer examples gives what it has, with a ``UserWarning``
    naming the classes that are short.

    Args:
        x: Inputs (an array, list or dict of arrays).
        y: Class ids, shape ``(N,)`` or ``(N, 1)``.
        per_class: Examples per class.
        sample_weight: ``None`` or weights, drawn with the examples.

    Returns:
        ``(x, y, sample_weight)`` of the chosen examples.

    Example:
        >>> class_balanced(x, np.array([2, 0, 2, 1, 0]), 1)[1]
        array([0, 1, 2])
    """
    labels = np.asarray(y).reshape(len(y), -1)[:, 0]
    classes, counts = np.unique(labels, return_counts=True)
    short = {c.item(): n.item() for c, n in zip(classes, counts) if n < per_class}
    if short:
        warnings.warn(f"samples_per_class={per_class}, but {len(short)} class(es) of data have fewer examples "
                      f"({', '.join(f'class {c}: {n}' for c, n in short.items())}): the score uses all they have, "
                      f"{int(np.minimum(counts, per_class).sum())} examples in all", UserWarning, stacklevel=3)
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
    as_arrays = keras.tree.map_structure(np.asarray, x)
    return take(as_arrays, chosen), np.asarray(y)[chosen], take(sample_weight, chosen)


def class_ids(model, batches):
    """Whether the labels of every batch are class ids of ``model``'s single output (see
    :func:`tfprune.analysis.datachecks.class_ids_problem`)."""
    return all(datachecks.class_ids_problem(model, b.y) is None for b in batches)


def _num_classes(model):
    try:
        return int(model.output_shape[-1])
    except (AttributeError, TypeError, ValueError):
        raise ValueError(
            f"cannot tell the number of classes of model {model.name!r}: pass samples= (the "
            "number of examples to score with)"
        ) from None


def scoring_batches(model, data, samples=None, batch_size=None, *, loss=None, samples_per_class=None, name="data"):
    """The batches a data-driven score uses, checked against the model and its loss first.

    Args:
        model: The model (its output size gives the default number of samples).
        data: Data as ``model.fit`` takes it (see the module docstring).
        samples: Number of examples, whatever their structure; default 10 × the number of
            classes (a dataset is read until it has given that many).
        batch_size: Examples per batch for arrays; default all ``samples`` in one batch.
            Batches of a dataset are used as they come (the last one is cut to size).
        loss: The loss the score takes (anything :func:`tfprune.autodiff.losses.resolve`
            takes): the default loss needs class ids, another one is run once on the first
            examples to check that the labels and sample weights fit it.
        samples_per_class: Instead of ``samples``: the first this many examples of each class,
            grouped by class (:func:`class_balanced`); arrays of class-id labels only.
        name: The argument's name, used in messages.

    Returns:
        A list of :class:`Batch` holding exactly ``samples`` examples (fewer only if the data
        has fewer).

    Raises:
        ValueError: if ``samples``/``batch_size``/``samples_per_class`` are not positive, if
            ``samples_per_class`` is given with ``samples``, a dataset or labels other than class
            ids, or the data does not fit the model or its loss
            (:mod:`tfprune.analysis.datachecks`: inputs, lengths, shapes, labels, sample weights,
            NaN/inf — each named with its numbers).

    Example:
        >>> batches = scoring_batches(model, (x, y, sample_weight), samples=100, batch_size=50)
    """
    loss = losses.resolve(model, loss)
    samples = arguments.count("samples", samples, optional=True)
    batch_size = arguments.count("batch_size", batch_size, optional=True)
    samples_per_class = arguments.count("samples_per_class", samples_per_class, optional=True)
    arrays = datachecks.unpack(data, name)
    if samples_per_class is not None:
        arrays = _balanced(model, arrays, samples, samples_per_class, loss, name)
        samples = examples(arrays[0])
    if samples is None:
        samples = 10 * _num_classes(model)
    if arrays is not None:
        batches = _from_arrays(model, arrays, samples, batch_size, loss, name)
    else:
        batches = _from_batches(model, data, samples, loss, name)
    batches = [Batch(*keras.tree.map_structure(lambda a: a if a is None else keras.ops.convert_to_tensor(a), tuple(b)))
               for b in batches]
    loss.check(model, batches[0], name)
    return batches


def _balanced(model, arrays, samples, per_class, loss, name):
    if samples is not None:
        raise ValueError("give samples or samples_per_class, not both")
    if arrays is None:
        raise ValueError("samples_per_class draws from arrays of class ids: give (x, y) arrays, or samples= with a "
                         "dataset")
    x = datachecks.check_batch(model, *arrays, class_ids=loss.class_ids, name=name)
    problem = datachecks.class_ids_problem(model, arrays[1], name)
    if problem:
        raise ValueError(f"samples_per_class draws the first examples of each class, so it needs class-id labels; "
                         f"give samples= instead ({problem})")
    return class_balanced(x, arrays[1], per_class, arrays[2])


def _from_arrays(model, arrays, samples, batch_size, loss, name):
    x = datachecks.check_batch(model, *arrays, class_ids=loss.class_ids, name=name, examples=samples)
    x, y, sample_weight = (take(part, slice(0, samples)) for part in (x, arrays[1], arrays[2]))
    adapter = _compat.data_adapter(x, y, sample_weight, batch_size=batch_size or examples(x))
    return [Batch(*keras.utils.unpack_x_y_sample_weight(b)) for b in adapter.get_numpy_iterator()]


def _from_batches(model, data, samples, loss, name):
    datachecks.check_data(model, data, class_ids=loss.class_ids, name=name)
    if not isinstance(data, (tf.data.Dataset, keras.utils.PyDataset, types.GeneratorType)):
        data = (batch for batch in data)  # any other iterable, as Keras reads a generator
    batches, seen = [], 0
    for i, element in enumerate(_compat.data_adapter(data).get_numpy_iterator()):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(element)
        x = datachecks.check_batch(model, x, y, sample_weight, class_ids=loss.class_ids, name=f"batch {i} of {name}")
        count = min(examples(x), samples - seen)
        batches.append(Batch(*(take(part, slice(0, count)) for part in (x, y, sample_weight))))
        seen += count
        if seen >= samples:
            break
    if not batches:
        raise ValueError(f"{name} holds no batches: give (x, y) arrays or a dataset of (x, y) batches")
    return batches
