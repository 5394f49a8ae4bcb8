"""One example's inputs when there is no data: SynFlow's all-ones input, the collapse check's, and
the symbolic example that counts MACs.

``input_shape=`` gives one example's shape without the batch axis: one shape for a model of one
input; for several, a dict by input name (inputs left out keep the shape the model knows) or a
list in ``model.inputs`` order. Each input keeps the model's dtype, so an integer token input gets
valid token ids (ones: token 1; a padding mask of ones marks every position real). A dimension
the model does not know and ``input_shape`` does not give is an error naming the input and the
argument, as is a shape for an input the model does not have.

Example:
    >>> ones(bert_backbone, {"token_ids": (16,), "segment_ids": (16,), "padding_mask": (16,)})
    {'padding_mask': <tf.Tensor: shape=(1, 16), dtype=int32>, 'segment_ids': ..., 'token_ids': ...}
"""

from __future__ import annotations

import dataclasses

import keras

from tfprune import _compat
from tfprune.analysis.datachecks import input_names

__all__ = ["UnknownShapeError", "Spec", "example_specs", "ones", "symbolic"]


@dataclasses.dataclass(frozen=True)
class Spec:
    """One input of one example: its shape (batch axis 1 first) and dtype."""

    shape: tuple
    dtype: str


class UnknownShapeError(ValueError):
    """The shape of an example cannot be found, so MACs cannot be counted: pass ``input_shape``."""


def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, int) for d in value)


def example_specs(model, input_shape=None, name="input_shape"):
    """The :class:`Spec` of one example (batch 1) of each input, in the model's own input structure.

    Args:
        model: A Keras 3 model.
        input_shape: See the module docstring; ``None`` takes the shapes the model knows.
        name: The argument's name, used in messages.

    Returns:
        A :class:`Spec`, or a list or dict of them (the structure ``model`` takes).

    Raises:
        UnknownShapeError: naming the input and ``name``, for a dimension of unknown size, a
            model that does not know its inputs and no ``input_shape``, or an ``input_shape``
            that does not fit the model's inputs.
    """
    names = input_names(model)
    if names is None:
        return _without_graph(model, input_shape, name)
    inputs = keras.tree.flatten(_compat.input_structure(model))
    known = {n: (tuple(t.shape[1:]), t.dtype) for n, t in zip(names, inputs)}
    given = _given(model, names, input_shape, name)
    specs = []
    for n in names:
        shape, dtype = known[n]
        if n in given:
            shape = _merged(model, n, shape, given[n], name)
        if any(d is None for d in shape):
            sized = tuple(16 if d is None else d for d in shape)
            example = f"{sized}" if len(names) == 1 else f"{{{n!r}: {sized}, ...}}"
            label = "its input" if len(names) == 1 else f"input {n!r}"
            raise UnknownShapeError(
                f"model {model.name!r} takes {label} of shape {(None, *shape)}, with a dimension of unknown size: "
                f"pass {name}= (the shape of one example, without the batch axis), e.g. {name}={example}")
        specs.append(Spec((1, *shape), dtype))
    return keras.tree.pack_sequence_as(_compat.input_structure(model), specs)


def _given(model, names, input_shape, name):
    """``input_shape`` as ``{input name: shape}``, checked against the model's inputs."""
    if input_shape is None:
        return {}
    takes = f"model {model.name!r} takes {len(names)} input{'s' * (len(names) != 1)} ({', '.join(map(repr, names))})"
    if isinstance(input_shape, dict):
        extra = [k for k in input_shape if k not in names]
        if extra:
            raise UnknownShapeError(f"{name} names input(s) {', '.join(map(repr, extra))} that the model does not "
                                    f"have: {takes}")
        return dict(input_shape)
    if _is_shape(input_shape):
        if len(names) != 1:
            raise UnknownShapeError(f"{name}={tuple(input_shape)} is one shape, but {takes}: give a dict by input "
                                    "name or a list in model.inputs order")
        return {names[0]: input_shape}
    if isinstance(input_shape, (tuple, list)) and all(_is_shape(s) for s in input_shape):
        if len(input_shape) != len(names):
            raise UnknownShapeError(f"{name} holds {len(input_shape)} shapes, but {takes}")
        return dict(zip(names, input_shape))
    raise UnknownShapeError(f"{name} must be a shape, a list of shapes or a dict of shapes by input name, got "
                            f"{input_shape!r}")


def _merged(model, input_name, known, shape, name):
    """A given ``shape`` where it fits the ``known`` one."""
    shape = tuple(shape)
    if len(shape) != len(known) or any(k is not None and d != k for k, d in zip(known, shape)):
        raise UnknownShapeError(f"{name} gives input {input_name!r} of model {model.name!r} the shape {shape}, but "
                                f"the model takes {known} (without the batch axis)")
    return shape


def _without_graph(model, input_shape, name):
    """Specs of a model without a graph (subclassed): ``input_shape``, else the one shape it was built with."""
    if input_shape is None:
        shapes = list(_compat.build_shapes(model).values())
        if len(shapes) != 1:
            raise UnknownShapeError(f"cannot tell the input shape of model {model.name!r}: pass {name}= (one "
                                    "example's shape, without the batch axis)")
        input_shape = keras.tree.map_shape_structure(lambda s: tuple(s)[1:], shapes[0])
    specs = keras.tree.map_shape_structure(lambda s: Spec((1, *s), "float32"), input_shape)
    unknown = [spec.shape for spec in keras.tree.flatten(specs) if None in spec.shape]
    if unknown:
        raise UnknownShapeError(f"{name} of model {model.name!r} has a dimension of unknown size {unknown[0][1:]}: "
                                "give every dimension")
    return specs


def ones(model, input_shape=None, name="input_shape"):
    """One all-ones example (batch 1) for each input, in the model's own input structure and dtypes.

    Example:
        >>> ones(model, (32, 32, 3)).shape
        (1, 32, 32, 3)
    """
    return keras.tree.map_structure(lambda s: keras.ops.ones(s.shape, s.dtype), example_specs(model, input_shape, name))


def symbolic(model, input_shape=None, name="input_shape"):
    """One symbolic example (``keras.KerasTensor``, batch 1) for each input, as :func:`ones`."""
    return keras.tree.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype),
                                    example_specs(model, input_shape, name))
