"""Checks at the door: the data a score or a fit reads, and the weights it reads, before any work.

Data comes as ``model.fit`` takes it (:mod:`tfprune.autodiff.batches` reads it): ``(x, y)`` or
``(x, y, sample_weight)``, where ``x`` is an array, a list of arrays (one per input, in
``model.inputs`` order) or a dict of arrays by input name, and ``y`` and ``sample_weight`` an
array or a list/dict per output; or a ``tf.data.Dataset``, ``keras.utils.PyDataset`` or generator
yielding such batches. The checks here compare it with the model and raise a ``ValueError`` that
names the argument, the input or label, the problem and the numbers, instead of the TensorFlow
error a wrong batch gives deep inside a loss: inputs missing, extra or of the wrong shape, no
examples, lengths that differ, ``x`` without labels, a dataset of single examples (not batched),
a ``sample_weight`` that does not fit its labels, labels that are not class ids where the default
loss needs them, and NaN or infinite values — reported as the data's, not a criterion's.
:func:`check_weights` does the same for a model's own weights, naming the weight that is not finite.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfprune import _compat
from tfprune.base import views

__all__ = ["unpack", "check_data", "check_arrays", "check_batch", "check_inputs", "check_weights", "match_inputs",
           "input_names", "class_ids_problem", "num_examples", "shape_fits", "COMPILE_OR_LOSS"]

_BATCH_HINT = "e.g. tf.data.Dataset.from_tensor_slices((x, y)).batch(32)"
_FORMS = "(x, y) or (x, y, sample_weight) arrays, or a dataset of such batches"
COMPILE_OR_LOSS = ("compile the model with the loss it trains with (model.compile(loss=...)), or pass loss= "
                   "(a Keras loss, its name or a callable)")


def unpack(data, name="data"):
    """``(x, y, sample_weight)`` of data given as arrays, or ``None`` for a dataset of batches.

    A tuple or list is always ``(x, y)`` or ``(x, y, sample_weight)`` (as a batch of
    ``model.fit``'s datasets is); a ``tf.data.Dataset``, ``keras.utils.PyDataset``, generator or
    other iterator yields such batches.

    Raises:
        ValueError: for ``x`` alone (an array or a dict), or a tuple of the wrong length.
        TypeError: for anything else.
    """
    if hasattr(data, "shape") or isinstance(data, dict):
        what = f"a single array of shape {tuple(data.shape)}" if hasattr(data, "shape") else "a dict of arrays"
        raise ValueError(f"{name} is {what}: x without labels; give {_FORMS} ({_BATCH_HINT})")
    if isinstance(data, (tuple, list)):
        if len(data) in (2, 3) and data[1] is not None:
            return data[0], data[1], data[2] if len(data) == 3 else None
        if len(data) == 1 or (len(data) in (2, 3) and data[1] is None):
            raise ValueError(f"{name} holds x without labels: give {_FORMS}")
        raise ValueError(f"{name} is a {type(data).__name__} of {len(data)} items, not (x, y) or "
                         f"(x, y, sample_weight): give {_FORMS} ({_BATCH_HINT})")
    if hasattr(data, "__iter__") and not isinstance(data, (str, bytes)):
        return None  # a tf.data.Dataset, keras.utils.PyDataset, generator or other iterable of batches
    raise TypeError(f"{name} must be {_FORMS}, got {type(data).__name__}")


def num_examples(x):
    """The number of examples of ``x`` (any structure): the length of its first array."""
    first = keras.tree.flatten(x)[0]
    return int(first.shape[0]) if len(first.shape) else 0


def input_names(model):
    """The names of ``model``'s inputs in ``model.inputs`` order — the keys of a dict of inputs —,
    or ``None`` for a model that does not know its inputs (subclassed)."""
    structure = _compat.input_structure(model)
    if structure is None:
        return None
    if isinstance(structure, dict):
        return sorted(structure)  # keras.tree flattens a dict in key order, as model.inputs holds them
    return [t.name for t in keras.tree.flatten(structure)]


def match_inputs(model, x, name="data"):
    """``x`` as the model's own input structure, and its arrays in ``model.inputs`` order.

    A dict is matched to the inputs by name, a list or tuple by position, an array to a model of
    one input, as ``model(x)`` does; a model without a graph (subclassed) takes ``x`` as it is.

    Returns:
        ``(x, [(label, array, expected shape or None), ...])``: ``x`` repacked in the structure
        the model was built with, and each input's label (``"x"`` for a single input, else
        ``"input 'name'"``), array and shape without the batch axis.

    Raises:
        ValueError: naming the inputs missing, extra or given in the wrong number or nesting.
    """
    names = input_names(model)
    if names is None:
        leaves = keras.tree.flatten(x)
        return x, [(f"x[{i}]" if keras.tree.is_nested(x) else "x", a, None) for i, a in enumerate(leaves)]
    takes = f"model {model.name!r} takes {len(names)} input{'s' * (len(names) != 1)} ({', '.join(map(repr, names))})"
    if isinstance(x, dict):
        missing, extra = [n for n in names if n not in x], [k for k in x if k not in names]
        if missing or extra:
            problems = ([f"no input {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"input(s) {', '.join(map(repr, extra))} the model does not take"] if extra else [])
            raise ValueError(f"{name}: x has {' and '.join(problems)}: {takes}; give one array per input name")
        arrays = [x[n] for n in names]
    elif isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise ValueError(f"{name}: x holds {len(x)} arrays but {takes}: give one array per input, in this "
                             "order, or a dict by input name")
        arrays = list(x)
    elif len(names) != 1:
        raise ValueError(f"{name}: x is one array but {takes}: give a list of arrays in this order or a dict by "
                         "input name")
    else:
        arrays = [x]
    nested = [(n, a) for n, a in zip(names, arrays) if not hasattr(a, "shape")]
    if nested:
        raise ValueError(f"{name}: input {nested[0][0]!r} must be one array, got a {type(nested[0][1]).__name__}")
    inputs = keras.tree.flatten(_compat.input_structure(model))
    labels = ["x"] if len(names) == 1 else [f"input {n!r}" for n in names]
    matched = [(label, a, tuple(t.shape[1:])) for label, a, t in zip(labels, arrays, inputs)]
    return keras.tree.pack_sequence_as(_compat.input_structure(model), arrays), matched


def check_data(model, data, *, class_ids=True, name="data", examples=None):
    """Checks ``data`` against ``model`` before any work: raises with a clear message, else returns.

    Arrays are checked whole (:func:`check_batch`). A ``tf.data.Dataset`` is checked by its
    element spec — batches of ``(x, y)`` or ``(x, y, sample_weight)``, batched, inputs of the
    model's shapes, labels of the right form —, and the values of each batch by
    :func:`check_batch` when a reader takes it (as :func:`tfprune.autodiff.batches.scoring_batches`
    does); so are the batches of a ``PyDataset`` or generator.

    Args:
        model: The Keras model the data is for; its inputs (names and shapes) and its number of
            outputs (the classes) are compared with the data's where the model knows them.
        data: Data as ``model.fit`` takes it (see the module docstring).
        class_ids: Check ``y`` as integer class ids in ``[0, outputs)``, of shape ``(N,)`` or
            ``(N, 1)`` — what the default loss (sparse categorical cross-entropy) takes. ``False``
            for a compiled model's loss or a loss of your own, which take labels of any form.
        name: The argument's name, used in messages (``"data"``, ``"validation"``).
        examples: Check the values (labels, finiteness) of the first ``examples`` examples of
            arrays only (those a score reads); shapes and lengths are always checked whole.

    Raises:
        ValueError: naming ``name``, the input or label, the problem and the numbers.
        TypeError: if ``data`` is neither arrays nor a dataset of batches.

    Example:
        >>> check_data(model, ({"image": x, "meta": m}, y))   # returns None when the data fits the model
        >>> check_data(model, (x, y[:30]))
        ValueError: data: x has 64 examples but y has 30 labels (shape (30,)): give one label per example
    """
    arrays = unpack(data, name)
    if arrays is not None:
        check_batch(model, *arrays, class_ids=class_ids, name=name, examples=examples)
    elif isinstance(data, tf.data.Dataset):
        _check_spec(model, data.element_spec, class_ids, name)


def check_arrays(model, data, *, class_ids=True, name="data"):
    """:func:`check_data` for readers that take arrays only (they index and shuffle them).

    Returns:
        ``(x, y, sample_weight)``, ``x`` in the model's own input structure and
        ``sample_weight`` ``None`` when not given.

    Raises:
        ValueError: as :func:`check_data`, and for a dataset or other iterable of batches.

    Example:
        >>> x, y, sample_weight = check_arrays(model, train, name="train")
    """
    arrays = unpack(data, name)
    if arrays is None:
        raise ValueError(f"{name} must be (x, y) or (x, y, sample_weight) arrays here (examples are drawn from them "
                         f"by index), got a {type(data).__name__}: give NumPy arrays")
    x = check_batch(model, *arrays, class_ids=class_ids, name=name)
    return x, arrays[1], arrays[2]


def check_inputs(model, x, name="data"):
    """Checks inputs alone (as ``model.predict`` takes them) against ``model``'s inputs.

    Returns:
        ``(x, inputs)`` as :func:`match_inputs` returns them.

    Raises:
        ValueError: for inputs that do not match the model's (names, number, shapes), no
            examples, inputs of different lengths, or a single example where a batch is expected.
    """
    x, inputs = match_inputs(model, x, name)
    for label, a, expected in inputs:
        shape = tuple(a.shape)
        if expected is not None and len(shape) == len(expected) and shape_fits(shape, expected) and len(inputs) == 1:
            raise ValueError(f"{name}: x of shape {shape} is a single example, but model {model.name!r} takes "
                             f"batches of inputs of shape (batch, {', '.join(map(str, expected))}): batch it "
                             f"(x[None] for one example, or {_BATCH_HINT})")
    first = tuple(inputs[0][1].shape)
    if not first or first[0] == 0:
        raise ValueError(f"{name} holds no examples (x has shape {first}): give at least one")
    for label, a, _ in inputs:
        if int(a.shape[0]) != first[0]:
            raise ValueError(f"{name}: {inputs[0][0]} has {first[0]} examples but {label} has {int(a.shape[0])}: give "
                             "every input the same examples")
    for label, a, expected in inputs:
        shape = tuple(a.shape)
        if expected is not None and not (len(shape) == len(expected) + 1 and shape_fits(shape[1:], expected)):
            raise ValueError(f"{name}: {label} has examples of shape {shape[1:]}, but model {model.name!r} takes "
                             f"inputs of shape {expected} (without the batch axis)")
        dtype = _numpy_dtype(a)
        if not (np.issubdtype(dtype, np.number) or dtype == bool):
            raise ValueError(f"{name}: {label} holds {dtype} values, not numbers: give numeric arrays (e.g. float32 "
                             "pixels or features, int token ids)")
    return x, inputs


def _numpy_dtype(a):
    """The NumPy dtype of an array or a tensor (a TensorFlow string tensor's is ``object``)."""
    dtype = getattr(a, "dtype", None)
    dtype = getattr(dtype, "as_numpy_dtype", dtype)
    return np.dtype(dtype) if dtype is not None else np.asarray(a).dtype


def check_batch(model, x, y, sample_weight=None, *, class_ids=True, name="data", examples=None):
    """Checks concrete inputs, labels and sample weights (arrays, tensors or one batch) against ``model``.

    Args:
        model, class_ids, name, examples: As for :func:`check_data`.
        x: The inputs (an array, a list or a dict of arrays), one example per entry of the first axis.
        y: The labels (an array, or a list or dict per output).
        sample_weight: ``None``, or weights of shape ``(N,)`` or of the labels' leading axes.

    Returns:
        ``x`` in the model's own input structure (:func:`match_inputs`).

    Raises:
        ValueError: for inputs that do not match the model's, no examples, lengths that differ, a
            single example where a batch is expected, sample weights that do not fit the labels,
            labels that are not class ids in range (with ``class_ids``), or NaN/infinite values.
    """
    x, inputs = check_inputs(model, x, name)
    if y is None:
        raise ValueError(f"{name} holds x without labels: give {_FORMS}")
    _check_lengths(num_examples(x), y, sample_weight, name)
    if sample_weight is not None:
        _check_sample_weight(y, sample_weight, name)
    if class_ids:
        problem = class_ids_problem(model, y, name, examples)
        if problem:
            raise ValueError(problem)
    checked = [(label, _values(a, examples)) for label, a, _ in inputs] + _labelled(y, "y", examples) + (
        _labelled(sample_weight, "sample_weight", examples) if sample_weight is not None else [])
    for label, values in checked:
        _check_finite(values, f"{name}: {label}", "the data, not the model, is not finite: remove or repair "
                      "those examples")
    return x


def class_ids_problem(model, y, name="data", examples=None):
    """Why ``y`` are not class ids of ``model``'s single output, as the default loss (sparse
    categorical cross-entropy) takes them — one integer in ``[0, outputs)`` per example, of shape
    ``(N,)`` or ``(N, 1)`` —, or ``None`` when they are.

    Example:
        >>> class_ids_problem(model, np.zeros((8, 32, 32)))
        "data: labels must be class ids of shape (N,) or (N, 1) ..., got y of shape (8, 32, 32): compile ..."
    """
    if keras.tree.is_nested(y) or _num_output_tensors(model) > 1:
        return (f"{name}: model {model.name!r} has several outputs, but the default loss (sparse categorical "
                f"cross-entropy) takes the class ids of one output: {COMPILE_OR_LOSS}")
    problem = _label_shape_problem(model, tuple(np.shape(y)), name)
    if problem:
        return problem
    flat = _values(y, examples).reshape(-1)
    if not (np.issubdtype(flat.dtype, np.integer) or np.issubdtype(flat.dtype, np.floating)):
        return f"{name}: labels must be integer class ids, got y of dtype {flat.dtype}"
    if np.issubdtype(flat.dtype, np.floating):
        _check_finite(flat, f"{name}: y", "labels must be integer class ids")
        fractional = np.flatnonzero(flat != np.round(flat))
        if fractional.size:
            return (f"{name}: labels must be integer class ids, got {fractional.size} fractional value(s) such as "
                    f"{flat[fractional[0]]} (example {fractional[0]}): {COMPILE_OR_LOSS}")
    classes = _num_outputs(model)
    high = np.inf if classes is None else classes
    outside = np.flatnonzero((flat < 0) | (flat >= high))
    if outside.size:
        bound = f"[0, {classes}) — model {model.name!r} has {classes} outputs —" if classes else "[0, ∞)"
        return (f"{name}: labels must be class ids in {bound} but {outside.size} of {flat.size} are outside it "
                f"(min {flat.min():g}, max {flat.max():g}; first at example {outside[0]}: {flat[outside[0]]:g})")
    return None


def _label_shape_problem(model, shape, name):
    """Why labels of ``shape`` cannot be class ids of ``model``'s output, or ``None``."""
    classes = _num_outputs(model)
    if len(shape) == 2 and shape[1] not in (1, None) and shape[1] == classes:
        return (f"{name}: y of shape {shape} holds one-hot rows of the {classes} classes, but the default loss "
                "(sparse categorical cross-entropy) takes class ids of shape (N,): pass y.argmax(-1), or, to a "
                "criterion, loss='categorical_crossentropy'")
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, None))):
        return (f"{name}: labels must be class ids of shape (N,) or (N, 1) for the default loss (sparse categorical "
                f"cross-entropy), got y of shape {shape}: {COMPILE_OR_LOSS}")
    return None


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


def _check_lengths(n, y, sample_weight, name):
    """Every label and sample weight holds ``n`` examples, as the inputs do."""
    for label, a in _labelled(y, "y", None):
        shape = tuple(np.shape(a))
        if not shape or shape[0] != n:
            raise ValueError(f"{name}: x has {n} examples but {label} has {shape[0] if shape else 0} labels "
                             f"(shape {shape}): give one label per example")
    for label, a in _labelled(sample_weight, "sample_weight", None) if sample_weight is not None else []:
        shape = tuple(np.shape(a))
        if not shape or shape[0] != n:
            raise ValueError(f"{name}: x has {n} examples but {label} has shape {shape}: give one weight "
                             "per example (or per label entry)")


def _check_sample_weight(y, sample_weight, name):
    """Each sample weight has the shape of its labels' leading axes (``(N,)`` for one per example)."""
    if keras.tree.is_nested(sample_weight):
        try:
            keras.tree.assert_same_structure(keras.tree.lists_to_tuples(y), keras.tree.lists_to_tuples(sample_weight))
        except ValueError:
            raise ValueError(f"{name}: sample_weight is a {type(sample_weight).__name__} that does not match the "
                             "labels (a list or dict of one weight array per output, as y): give that, or one array "
                             "of shape (N,)") from None
        pairs = zip(keras.tree.flatten(y), keras.tree.flatten(sample_weight))
    else:
        pairs = [(label, sample_weight) for label in keras.tree.flatten(y)]
    for labels, weights in pairs:
        w, t = tuple(np.shape(weights)), tuple(np.shape(labels))
        if len(w) > 1 and w[-1] == 1 and t[len(w) - 1:len(w)] != (1,):
            w = w[:-1]
        if w != t[:len(w)]:
            raise ValueError(f"{name}: sample_weight of shape {tuple(np.shape(weights))} does not fit labels of shape "
                             f"{t}: give one weight per example, shape ({t[0]},), or per label entry, shape {t}")


def _labelled(structure, name, examples):
    """``[(label, values)]`` of each array of ``structure``: ``name`` for one, ``name[key]`` for several."""
    if not keras.tree.is_nested(structure):
        return [(name, _values(structure, examples))]
    return [(f"{name}[{'.'.join(map(repr, path))}]", _values(a, examples))
            for path, a in keras.tree.flatten_with_path(structure)]


def _check_spec(model, spec, class_ids, name):
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        if isinstance(spec, tf.TensorSpec):
            raise ValueError(f"{name} is a dataset of single tensors (spec {spec}): x without labels; give a "
                             f"dataset of (x, y) batches ({_BATCH_HINT})")
        raise ValueError(f"{name} is a dataset of {spec}, not of (x, y) or (x, y, sample_weight) batches: give a "
                         "dataset of such batches")
    x_spec, y_spec = spec[0], spec[1]
    names = input_names(model)
    if names is None:
        return
    try:
        _, inputs = match_inputs(model, x_spec, name)
    except ValueError as error:
        raise ValueError(str(error).replace(f"{name}: x ", f"{name} yields x that ")) from None
    for label, s, expected in inputs:
        if not isinstance(s, tf.TensorSpec) or s.shape.rank is None:
            continue
        shape = tuple(s.shape)
        if len(shape) == len(expected) and shape_fits(shape, expected):
            raise ValueError(f"{name} yields single examples ({label} of shape {shape}), but model {model.name!r} "
                             f"takes batches of inputs of shape (batch, {', '.join(map(str, expected))}): batch the "
                             f"dataset, e.g. {name}.batch(32)")
        if not (len(shape) == len(expected) + 1 and shape_fits(shape[1:], expected)):
            raise ValueError(f"{name} yields {label} of shape {shape}, but model {model.name!r} takes inputs of shape "
                             f"{expected} (without the batch axis)")
    if class_ids and keras.tree.is_nested(y_spec):
        raise ValueError(class_ids_problem(model, y_spec, name))
    if class_ids and isinstance(y_spec, tf.TensorSpec) and y_spec.shape.rank is not None:
        problem = _label_shape_problem(model, tuple(y_spec.shape), name)
        if problem:
            raise ValueError(problem)


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


def _num_output_tensors(model):
    """How many output tensors ``model`` has (1 when it does not know: a subclassed model)."""
    try:
        return len(keras.tree.flatten(model.outputs)) or 1
    except (AttributeError, ValueError, TypeError):
        return 1


def _num_outputs(model):
    """The size of the model's single output's last axis (its classes), or ``None`` when unknown."""
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not isinstance(shape, tuple) or not shape or not isinstance(shape[-1], int):
        return None
    return shape[-1]
