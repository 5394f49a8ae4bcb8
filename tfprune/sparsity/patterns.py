"""Sparsity patterns: which masks are allowed, and how scores choose one.

Each pattern maps score tensors to masks under a budget (:class:`tfprune.masks.Budget`: the
amount, the scope and the allocation), in :meth:`Pattern.select`:

* :class:`Unstructured` — any entries; the budget ranks them directly.
* :class:`Block` ``(1, b)`` — whole blocks of ``b`` consecutive entries along a weight's reduction
  axis (``b`` inputs of one output unit), TFLite's 1×4 (float) and 1×16 (int8) blocks for fully
  connected layers. A block scores the sum of its members; the budget ranks blocks.
* :class:`NByM` ``(n, m)`` — every group of ``m`` consecutive entries along the reduction axis keeps
  exactly its ``n`` highest scores (the 2:4 of sparse tensor cores), so the density is ``n/m``
  whatever the budget's scope.

The reduction axis of a weight is the input axis its layer sums over. By default it is axis -2
of a weight with two or more axes — axis 0 of a Dense kernel ``(in, out)``, the input channels of
a convolution kernel ``(kh, kw, in, out)`` — and 1-D weights (biases, normalisation) have none;
:func:`tfprune.masks.from_scores` takes other axes per tensor (``reduction_axes=``).

Strings name patterns wherever one is accepted: ``"unstructured"``, ``"1x4"``, ``"2:4"``
(:func:`get`), and ``str(pattern)`` gives that string back.
"""

from __future__ import annotations

import abc
import warnings

import keras
import numpy as np

from tfprune.base import arguments
from tfprune.base.arguments import ArgumentError

__all__ = ["Pattern", "Unstructured", "Block", "NByM", "get", "reduction_axes"]

# A sparsity matches a pattern's fixed one up to float32 rounding (schedules return float32 values).
_SPARSITY_TOLERANCE = 1e-6

_FORMS = ("give None or 'unstructured', '1xB' such as '1x4' (Block), 'N:M' such as '2:4' (NByM), "
          "a pair (1, b), or a tfprune.patterns.Pattern")


class Pattern(abc.ABC):
    """Base of the sparsity patterns: a rule for which masks are allowed.

    A subclass implements :meth:`select` and ``get_config`` (its constructor's arguments), sets
    ``density`` if it fixes one, and gives its short name in ``__str__``. Patterns compare equal
    when their class and config are equal.
    """

    density = None
    """The density (kept fraction) the pattern fixes, or ``None`` when the budget sets it."""

    @abc.abstractmethod
    def select(self, scores, budget, *, candidates=None, reduction_axes=None, names=None):
        """Masks keeping the best entries this pattern allows.

        Args:
            scores: List of floating-point NumPy score arrays (checked finite).
            budget: A :class:`tfprune.masks.Budget`, called on the units to rank.
            candidates: ``None`` or one boolean array per score array; entries outside them are
                never kept.
            reduction_axes: One non-negative axis or ``None`` per score array (see
                :func:`reduction_axes`); default: those of :func:`reduction_axes`.
            names: Optional tensor names for error messages.

        Returns:
            A list of boolean NumPy arrays shaped like ``scores``.
        """

    @abc.abstractmethod
    def get_config(self):
        """The constructor's arguments, as a dict of plain Python values."""

    @classmethod
    def from_config(cls, config):
        """The pattern ``cls(**config)``: the inverse of :meth:`get_config`."""
        return cls(**config)

    def kept_fraction(self, shape, axis):
        """The fraction of a tensor of ``shape`` this pattern keeps when it fixes the density
        (``axis``: its reduction axis, ``None`` for flattened); ``None`` when the budget sets it."""
        return None

    def warn_unreachable(self, targets, stacklevel=3):
        """Warns, naming each weight, where this pattern keeps more than its own density (groups
        shorter than the pattern's along the reduction axis); returns their names."""
        if self.density is None:
            return []
        short = [f"{t.name} (keeps {kept:.4g})" for t in targets
                 if (kept := self.kept_fraction(t.shape, t.reduction_axis)) > self.density + 1e-12]
        if short:
            warnings.warn(f"pattern {self} cannot reach sparsity {1.0 - self.density:g} on {', '.join(short)}: "
                          f"their groups along the reduction axis are shorter than the pattern's; leave them "
                          "out with policy=", UserWarning, stacklevel=stacklevel)
        return short

    def check_sparsity(self, sparsity):
        """Raises if ``sparsity`` contradicts the density the pattern fixes (up to float32 rounding).

        Raises:
            ValueError: naming the sparsity the pattern implies.
        """
        if self.density is not None and abs((1.0 - sparsity) - self.density) > _SPARSITY_TOLERANCE:
            raise ValueError(f"pattern {self} keeps a fixed fraction {self.density:g} of the weights, i.e. "
                             f"sparsity {1.0 - self.density:g}, but sparsity {sparsity:g} was asked: leave the "
                             f"amount out or ask for {1.0 - self.density:g}")

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(repr(v) for v in self.get_config().values())})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(self.get_config().items())))


@keras.saving.register_keras_serializable(package="tfprune")
class Unstructured(Pattern):
    """Any entries may be kept: the budget ranks every entry (the default pattern).

    Example:
        >>> tfprune.masks.from_scores([np.array([3., 1., 2., 0.])], sparsity=0.5, pattern=Unstructured())
        [array([ True, False,  True, False])]
    """

    def select(self, scores, budget, *, candidates=None, reduction_axes=None, names=None):
        return budget(scores, candidates, names)

    def get_config(self):
        return {}

    def __str__(self):
        return "unstructured"


@keras.saving.register_keras_serializable(package="tfprune")
class Block(Pattern):
    """Whole blocks of ``1 × b`` — ``b`` consecutive inputs of one output unit — kept or removed.

    A block is ``b`` consecutive entries along a weight's reduction axis; its score is the sum of
    its members' scores, and the budget's exact-count rule applies to blocks: ``kept_count(d,
    number of blocks)`` of them are kept (per scope and allocation, as for entries). A weight
    whose reduction axis is not a multiple of ``b`` ends in a shorter block; weights without a
    reduction axis (1-D: biases) stay element-wise. With candidates, a block is a candidate only
    if all its members are.

    Args:
        outputs: Output units per block: 1 (TFLite's sparse kernels read blocks ``[1, b]``).
        inputs: Inputs per block, ``b``, an int >= 1 (4 for float, 16 for int8 TFLite Dense).

    Raises:
        ArgumentError: unless ``outputs == 1`` and ``inputs`` is an int >= 1.

    Example:
        >>> Block(1, 4), str(Block(1, 4))
        (Block(1, 4), '1x4')
    """

    def __init__(self, outputs, inputs):
        if not (arguments.is_int(outputs) and outputs == 1):
            raise ArgumentError(f"block must be (1, b): b consecutive inputs of one output unit, as TFLite's (1, 4) "
                                f"and (1, 16) blocks; got ({outputs!r}, {inputs!r})")
        self.outputs, self.inputs = 1, arguments.count("b of block (1, b)", inputs)

    def select(self, scores, budget, *, candidates=None, reduction_axes=None, names=None):
        axes = reduction_axes if reduction_axes is not None else _default_axes(scores)
        pooled = [_pool(s, axis, self.inputs, np.sum, 0) for s, axis in zip(scores, axes)]
        pooled_candidates = None if candidates is None else [
            _pool(c, axis, self.inputs, np.all, True) for c, axis in zip(candidates, axes)]
        kept = budget(pooled, pooled_candidates, names)
        return [_unpool(k, s.shape, axis, self.inputs) for k, s, axis in zip(kept, scores, axes)]

    def get_config(self):
        return {"outputs": self.outputs, "inputs": self.inputs}

    def __str__(self):
        return f"{self.outputs}x{self.inputs}"


@keras.saving.register_keras_serializable(package="tfprune")
class NByM(Pattern):
    """Every ``m`` consecutive entries along the reduction axis keep exactly their ``n`` best.

    The density is ``n/m`` in every tensor, so the budget's scope does not matter; its amount may
    be left out and, if given, must be ``1 - n/m`` (a ``ValueError`` says so otherwise), and its
    allocation must be ``"uniform"``. Ties go to the lower index, as everywhere in tfprune.

    * Reduction axis not a multiple of ``m``: the last group is shorter, ``r < m`` entries, and
      keeps ``min(n, r)`` of them. Padded with ``m - r`` zeros — which is how N:M kernels store
      it — the group still holds at most ``n`` non-zeros, so the tensor runs as N:M, and pruning
      more would remove weights for nothing. The tensor's density is then a little above ``n/m``.
    * Weights without a reduction axis (1-D: biases, normalisation γ/β) are grouped along their
      flattened entries: ``m`` consecutive entries keep their ``n`` best.
    * With candidates (iterative pruning), each group keeps its ``n`` best candidates; a group
      with fewer than ``n`` (``min(n, r)`` for a short group) raises a ``ValueError``.

    Args:
        n: Entries kept per group, an int in [1, m].
        m: Group size, an int >= 1.

    Raises:
        ArgumentError: if ``n`` or ``m`` is not an int, ``m < 1``, ``n < 1`` or ``n > m``.

    Example:
        >>> tfprune.masks.from_scores([np.array([[1., 4., 3., 2.]]).T], pattern=NByM(2, 4))[0].ravel()
        array([False,  True,  True, False])
    """

    def __init__(self, n, m):
        self.m = arguments.count("m of NByM(n, m)", m)
        self.n = arguments.count("n of NByM(n, m)", n, 1, self.m)
        self.density = self.n / self.m

    def kept_fraction(self, shape, axis):
        """``n`` of every full group of ``m`` and ``min(n, r)`` of a last, shorter group of ``r``.

        Example:
            >>> NByM(2, 4).kept_fraction((3, 4), axis=0)   # groups of 3 inputs keep 2
            0.6666666666666666
        """
        length = int(np.prod(shape)) if axis is None else int(shape[axis])
        full, rest = divmod(length, self.m)
        return (full * self.n + min(self.n, rest)) / length if length else 1.0

    def select(self, scores, budget, *, candidates=None, reduction_axes=None, names=None):
        self._check_budget(budget)
        axes = reduction_axes if reduction_axes is not None else _default_axes(scores)
        masks = []
        for i, (s, axis) in enumerate(zip(scores, axes)):
            c = None if candidates is None else candidates[i]
            masks.append(self._select_one(s, c, axis, names[i] if names is not None else f"tensor {i}"))
        return masks

    def _check_budget(self, budget):
        if not (isinstance(budget.allocation, str) and budget.allocation == "uniform"):
            raise ValueError(f"pattern {self} keeps {self.n} of every {self.m} entries in every tensor; "
                             f"allocation={budget.allocation!r} would set other per-tensor densities: leave "
                             "allocation='uniform'")
        if budget.density is not None:
            self.check_sparsity(1.0 - budget.density)

    def _select_one(self, scores, candidates, axis, where):
        """The mask of one tensor: groups of ``m`` along ``axis`` (flattened when ``None``)."""
        def to_rows(a):  # (..., L): the grouped axis last
            return a.reshape(1, -1) if axis is None else np.moveaxis(a, axis, -1)

        rows = to_rows(scores)
        length, pad = rows.shape[-1], -rows.shape[-1] % self.m
        widths = [(0, 0)] * (rows.ndim - 1) + [(0, pad)]
        real = np.pad(np.ones(rows.shape, bool), widths, constant_values=False)
        usable = real if candidates is None else real & np.pad(to_rows(candidates), widths, constant_values=False)
        groups = real.shape[:-1] + (-1, self.m)
        usable = usable.reshape(groups)
        key = np.where(usable, np.pad(rows, widths).reshape(groups), -np.inf)
        rank = np.argsort(np.argsort(-key, axis=-1, kind="stable"), axis=-1)  # 0 = best, ties to lower index
        needed = np.minimum(self.n, real.reshape(groups).sum(axis=-1))
        short = int(np.count_nonzero(usable.sum(axis=-1) < needed))
        if short:
            raise ValueError(f"cannot keep {self.n} of every {self.m} weights of {where}: {short} group(s) along "
                             f"its reduction axis have fewer than {self.n} left in the current masks; pruning "
                             "continues from the current masks and cannot grow them (reset the masks first)")
        keep = ((rank < self.n) & usable).reshape(real.shape)[..., :length]
        return keep.reshape(scores.shape) if axis is None else np.moveaxis(keep, -1, axis)

    def get_config(self):
        return {"n": self.n, "m": self.m}

    def __str__(self):
        return f"{self.n}:{self.m}"


def get(pattern):
    """A pattern from a pattern object, a string or a ``(1, b)`` pair.

    Args:
        pattern: ``None`` or ``"unstructured"`` (:class:`Unstructured`); ``"1xB"`` such as
            ``"1x4"`` or a pair ``(1, b)`` (:class:`Block`); ``"N:M"`` such as ``"2:4"``
            (:class:`NByM`); or a :class:`Pattern` (returned as it is).

    Returns:
        A :class:`Pattern`.

    Raises:
        ArgumentError: on anything else, or on a pattern's own bad arguments (``"3:2"``).

    Example:
        >>> get("2:4"), get("1x4"), get(None)
        (NByM(2, 4), Block(1, 4), Unstructured())
    """
    if pattern is None:
        return Unstructured()
    if isinstance(pattern, Pattern):
        return pattern
    if isinstance(pattern, (tuple, list)):
        return _block_from_pair(pattern)
    if isinstance(pattern, str):
        text = pattern.strip().lower()
        if text == "unstructured":
            return Unstructured()
        for separator, kind in ((":", NByM), ("x", Block)):
            parts = text.split(separator)
            if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
                return kind(int(parts[0]), int(parts[1]))
    raise ArgumentError(f"unknown sparsity pattern {pattern!r}: {_FORMS}")


def reduction_axes(shapes, axes=None):
    """Each tensor's reduction axis, checked and made non-negative; ``None`` where it has none.

    Args:
        shapes: The tensors' shapes.
        axes: ``None`` for the defaults — axis -2 of a tensor with two or more axes, none for 1-D
            tensors — or one int (negative counts from the end) or ``None`` per tensor.

    Returns:
        A list of non-negative ints or ``None``, one per shape.

    Raises:
        ArgumentError: on a wrong number of axes or an axis out of a tensor's range.

    Example:
        >>> reduction_axes([(784, 300), (3, 3, 16, 32), (300,)])
        [0, 2, None]
    """
    shapes = [tuple(s) for s in shapes]
    if axes is None:
        return [len(s) - 2 if len(s) >= 2 else None for s in shapes]
    axes = list(axes)
    if len(axes) != len(shapes):
        raise ArgumentError(f"reduction_axes has {len(axes)} entries for {len(shapes)} tensors: give one axis "
                         "(or None) per tensor")
    out = []
    for i, (axis, shape) in enumerate(zip(axes, shapes)):
        axis = arguments.count(f"reduction_axes[{i}] (tensor of shape {shape})", axis, -len(shape), len(shape) - 1,
                               optional=True)
        out.append(None if axis is None else axis % len(shape))
    return out


def _default_axes(scores):
    return reduction_axes([s.shape for s in scores])


def _block_from_pair(pair):
    if len(pair) != 2:
        raise ArgumentError(f"block must be (1, b): b consecutive inputs of one output unit, got {tuple(pair)!r}")
    return Block(*pair)


def _pool(a, axis, size, reduce, fill):
    """Groups ``axis`` of ``a`` into blocks of ``size`` (padding with ``fill``), reduced by ``reduce``."""
    if axis is None:
        return a
    pad = -a.shape[axis] % size
    if pad:
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, pad)
        a = np.pad(a, widths, constant_values=fill)
    grouped = a.reshape(a.shape[:axis] + (a.shape[axis] // size, size) + a.shape[axis + 1:])
    return reduce(grouped, axis=axis + 1)


def _unpool(mask, shape, axis, size):
    """Expands a block mask back to the weight's ``shape``."""
    if axis is None:
        return mask
    return np.repeat(mask, size, axis=axis)[(slice(None),) * axis + (slice(0, shape[axis]),)]
