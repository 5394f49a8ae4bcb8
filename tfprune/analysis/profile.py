"""Accounting of a pruned network: parameters, kept weights and multiply-accumulates (MACs).

:func:`report` lists the prunable weights, :func:`profile` every layer that has weights. MACs are
counted for one example (batch 1) and only for multiplications by weights — ``Dense``,
``EinsumDense``, convolutions, RNN cells — plus the two activation matmuls of attention layers
(most pruning papers call these counts "FLOPs"). Bias additions, normalisation, activations,
pooling, merges and embedding look-ups count zero. *Effective* MACs scale each kernel's MACs by its
density (its non-zero entries, after masking, over its entries), as a sparse kernel would cost.

MAC formulas and the symbolic pass that finds the shapes are in :mod:`tfprune.macs`.
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np

from tfprune.analysis import macs as macs_lib
from tfprune.base import walk
from tfprune.analysis.macs import UnknownShapeError
from tfprune.base.deprecation import warn_once
from tfprune.layers import quantized
from tfprune.layers.targets import describe_unpruned, is_wrapped, prunable_weights, unpruned_layers, warn_unpruned

__all__ = ["Row", "Report", "report", "LayerProfile", "Profile", "profile", "UnknownShapeError"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One prunable weight, or the total.

    Attributes:
        name: The weight's path (``"TOTAL"`` for the total row).
        kind: Kind of weight (see :mod:`tfprune.kinds`); empty for the total.
        shape: Weight shape (empty for the total).
        params: Number of entries.
        kept: Entries kept: the mask's ones in a wrapped model, the non-zero entries otherwise.
        macs: Multiply-accumulates per example through this weight; ``None`` when the model's
            input shape is unknown.
        effective_macs: ``macs`` times the density; ``None`` with ``macs``.
    """

    name: str
    kind: str
    shape: tuple
    params: int
    kept: int
    macs: int | None = None
    effective_macs: float | None = None

    @property
    def density(self):
        """Kept fraction."""
        return self.kept / self.params if self.params else 0.0


@dataclasses.dataclass(frozen=True)
class Report:
    """Per-weight rows, their total, and the parameters of the model that are not pruned.

    Attributes:
        rows: One :class:`Row` per prunable weight.
        total: Sums over ``rows``.
        other_params: Parameters of the model outside ``rows`` (biases, normalisation, skipped
            layers), always dense.
    """

    rows: list
    total: Row
    other_params: int

    def __str__(self):
        show_macs = self.total.macs is not None
        head = ["weight", "kind", "shape", "params", "kept", "density"]
        head += ["MACs", "effective MACs"] if show_macs else []
        lines = []
        for r in self.rows + [self.total]:
            cells = [r.name, r.kind, "x".join(map(str, r.shape)), f"{r.params:,}", f"{r.kept:,}", f"{r.density:.4f}"]
            cells += [f"{r.macs:,}", f"{round(r.effective_macs):,}"] if show_macs else []
            lines.append(cells)
        return _table(head, lines, left_columns=3, footer=f"other parameters (not pruned): {self.other_params:,}")


def report(model, input_shape=None, verbose=1):
    """Counts parameters, kept weights and MACs of every prunable weight of ``model``.

    Takes the arguments of :func:`profile`, in the same order (before 1.0 ``verbose`` came second:
    an int there is still read as ``verbose``, with a ``DeprecationWarning``).

    Layers with trainable weights of their own that tfprune does not know (see
    :func:`tfprune.register_layer`) are named in a ``UserWarning``: their weights are not pruned.

    Args:
        model: A wrapped model (kept = mask ones) or a plain one such as a stripped model
            (kept = non-zero entries of the prunable weights).
        input_shape: Shape of one example without the batch dimension, for models whose
            recorded input shape is incomplete (e.g. sequences of any length). Without it such a
            model's report has no MACs (``Row.macs`` is ``None``).
        verbose: 1 prints the table, 0 only returns it.

    Returns:
        A :class:`Report`; ``str(report)`` is the printed table.

    Example:
        >>> r = tfprune.report(pruned)
        >>> r.total.density, r.total.effective_macs / r.total.macs
    """
    if isinstance(input_shape, (bool, int)):  # report(model, 0): 0.1's order
        warn_once(("report", "verbose"), "report(model, verbose): the second argument is now input_shape, as in "
                                         "profile; pass verbose= by keyword")
        input_shape, verbose = None, input_shape
    targets = prunable_weights(model)
    warn_unpruned(model)
    wrapped = is_wrapped(model)
    owners = macs_lib.owners(model)
    try:
        calls = macs_lib.trace_calls(model, [layer for layer, _ in owners], input_shape)
        macs = {id(v): m for layer, _ in owners for v, m in macs_lib.kernel_macs(layer, calls[id(layer)])}
    except macs_lib.UnknownShapeError:
        macs = None
    rows = []
    for t in targets:
        kept = int(np.count_nonzero(t.mask.numpy())) if wrapped else quantized.nonzero(t.layer, t.variable)
        weight_macs = None if macs is None else macs.get(id(t.variable), 0)
        effective = None if macs is None else weight_macs * kept / t.size
        rows.append(Row(t.name, t.kind, t.shape, t.size, kept, weight_macs, effective))
    total = Row(
        "TOTAL", "", (), sum(r.params for r in rows), sum(r.kept for r in rows),
        None if macs is None else sum(r.macs for r in rows),
        None if macs is None else sum(r.effective_macs for r in rows),
    )
    pruned_ids = {id(t.variable) for t in targets}
    masks = {id(t.mask) for t in targets if t.mask is not None}
    other = sum(
        quantized.size_of(layer, v) for layer, variables in owners for v in variables
        if id(v) not in pruned_ids and id(v) not in masks and not quantized.is_state(layer, v)
    )
    result = Report(rows, total, other)
    if verbose:
        print(result)
    return result


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """Parameters and MACs of one layer, or the total.

    Attributes:
        name: The layer's name (``"TOTAL"`` for the total row).
        type: The layer's class name; empty for the total.
        params: All its weights' entries: kernels, biases, normalisation statistics (masks are not
            parameters).
        nonzero: Non-zero entries; a masked weight counts the non-zero entries of ``w * mask``.
        macs: Multiply-accumulates per example with dense weights.
        effective_macs: ``macs`` with each kernel's share scaled by that kernel's density (for an
            RNN the input and recurrent kernels, for a separable convolution the depthwise and
            pointwise kernels, each by its own); equal to ``macs`` for attention matmuls.
    """

    name: str
    type: str
    params: int
    nonzero: int
    macs: int
    effective_macs: float

    def to_dict(self):
        return dataclasses.asdict(self)


_TOTALS = ("params", "nonzero", "macs", "effective_macs")


@dataclasses.dataclass(frozen=True)
class Profile:
    """Per-layer parameters and MACs of a model, and their total.

    Attributes:
        layers: One :class:`LayerProfile` per layer that has weights (the layers inside wrappers
            and composite layers; an RNN with its cells) and per attention layer (its matmuls).
        total: Sums over ``layers``.
    """

    layers: list
    total: LayerProfile

    def to_dict(self):
        """The profile as JSON-serialisable dicts: ``{"layers": [...], "total": {...}}``."""
        total = {key: getattr(self.total, key) for key in _TOTALS}
        return {"layers": [layer.to_dict() for layer in self.layers], "total": total}

    def __str__(self):
        head = ["layer", "type", "params", "nonzero", "MACs", "effective MACs"]
        lines = [
            [r.name, r.type, f"{r.params:,}", f"{r.nonzero:,}", f"{r.macs:,}", f"{round(r.effective_macs):,}"]
            for r in self.layers + [self.total]
        ]
        footer = (
            "MACs: multiply-accumulates per example (weight layers, attention matmuls); effective MACs:\n"
            "each kernel's MACs times its density"
        )
        return _table(head, lines, left_columns=2, footer=footer)


def profile(model, input_shape=None, verbose=1):
    """Counts parameters, non-zero parameters and MACs of every layer of ``model``.

    MACs per example (batch 1): ``Dense`` in·out per position (``T·in·out`` on a ``(T, in)``
    input); ``EinsumDense`` the product of the sizes of all the equation's indices; convolutions
    ``k·(C_in/groups)·C_out`` per output position (depthwise ``k·C·multiplier``, separable the
    depthwise plus the pointwise part ``C·multiplier·C_out``); transposed convolutions
    ``k·C_in·C_out`` per *input* position; ``SimpleRNN``/``LSTM``/``GRU``
    ``T·(input_dim + units)·units·gates`` (gates 1/4/3); ``MultiHeadAttention`` its four
    projections plus ``heads·T_q·T_k·(key_dim + value_dim)`` for QKᵀ and AV. Embedding look-ups,
    normalisation and bias additions count zero; layers of other types with weights count zero
    with one warning, which also names those whose weights are not pruned and says how to
    register their types (:func:`tfprune.register_layer`).

    Args:
        model: A built Keras 3 model, wrapped (masked weights count ``w * mask``), stripped or
            plain (weights count their non-zero entries).
        input_shape: Shape of one example without the batch dimension (a list or dict of shapes
            for several inputs). Needed only if the model is unbuilt (it is then built) or its
            recorded input shape is incomplete (e.g. sequences of any length).
        verbose: 1 prints the table, 0 only returns it.

    Returns:
        A :class:`Profile`; ``str(profile)`` is the printed table, ``profile.to_dict()`` its data.

    Raises:
        ValueError: if the model is unbuilt and ``input_shape`` is not given.
        UnknownShapeError: if the example's shape cannot be found and ``input_shape`` is not given.

    Example:
        >>> p = tfprune.profile(pruned, verbose=0)
        >>> p.total.effective_macs / p.total.macs
    """
    _build(model, input_shape)
    masks = {id(t.variable): t.mask for t in prunable_weights(model)} if is_wrapped(model) else {}
    owners = macs_lib.owners(model)
    _warn_unknown(model, owners)
    calls = macs_lib.trace_calls(model, [layer for layer, _ in owners], input_shape)
    rows = [
        _layer_profile(layer, variables, calls[id(layer)], masks)
        for layer, variables in _in_call_order(owners, calls)
    ]
    total = LayerProfile("TOTAL", "", *(sum(getattr(r, key) for r in rows) for key in _TOTALS))
    result = Profile(rows, total)
    if verbose:
        print(result)
    return result


def _warn_unknown(model, owners):
    """One warning naming the layers whose MACs are not counted, and those that are not pruned either."""
    uncounted = macs_lib.uncounted(owners)
    unpruned = unpruned_layers(model)
    parts = []
    if uncounted:
        names = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in uncounted)
        parts.append(
            f"MACs of these layers are not counted (0): {names}. To count a layer type, give it a MAC "
            "formula: tfprune.register_layer(LayerType, ..., macs=formula)"
        )
    if unpruned:
        parts.append(describe_unpruned(unpruned))
    if parts:
        text = ". Also, ".join(parts) if uncounted else parts[0][0].upper() + parts[0][1:]
        warnings.warn(text, UserWarning, stacklevel=3)


def _table(head, lines, left_columns, footer):
    """A text table: header, rows, total (the last line), left-aligned first columns, a footer."""
    lines = [head] + lines
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = [
        "  ".join(c.ljust(w) if i < left_columns else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in lines
    ]
    text.insert(1, "-" * len(text[0]))
    text.insert(len(text) - 1, "-" * len(text[0]))
    text.append(footer)
    return "\n".join(text)


def _build(model, input_shape):
    """Builds an unbuilt ``model`` for examples of ``input_shape``; checks that it is built."""
    if not model.built:
        if input_shape is None:
            raise ValueError(
                f"model {model.name!r} is not built, so its weights and layer shapes are unknown: pass "
                "input_shape (the shape of one example, without the batch dimension), or call the "
                "model once on a batch"
            )
        if walk.is_graph_model(model):
            model.build(keras.tree.map_shape_structure(lambda s: (None, *s), input_shape))
        else:
            model(keras.tree.map_shape_structure(lambda s: np.zeros((1, *s), "float32"), input_shape))
    walk.check_built(model)


def _layer_profile(layer, variables, calls, masks):
    variables = [v for v in variables if not quantized.is_state(layer, v)]
    nonzero = {id(v): _nonzero(layer, v, masks) for v in variables}
    parts = macs_lib.kernel_macs(layer, calls)
    return LayerProfile(
        layer.name,
        type(layer).__name__,
        sum(quantized.size_of(layer, v) for v in variables),
        sum(nonzero.values()),
        sum(macs for _, macs in parts),
        float(sum(macs if v is None else macs * nonzero[id(v)] / quantized.size_of(layer, v) for v, macs in parts)),
    )


def _nonzero(layer, variable, masks):
    """Non-zero entries of the weight as the forward pass sees it: ``w * mask`` for a masked
    weight, the dequantized weight of a layer quantized by Keras."""
    mask = masks.get(id(variable))
    if mask is None:
        return quantized.nonzero(layer, variable)
    return int(np.count_nonzero(variable.numpy() * mask.numpy()))


def _in_call_order(owners, calls):
    """``owners`` in the order the forward pass first calls them; layers it never calls last."""
    def first_call(owner):
        return min((call.index for call in calls[id(owner[0])]), default=np.inf)

    return sorted(owners, key=first_call)



