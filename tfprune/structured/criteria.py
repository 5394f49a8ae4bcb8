"""Unit relevance criteria for structured pruning: which neurons and filters matter.

A *unit* is what a producer layer of the dependency graph removes (role ``"producer"``,
``"recurrent"`` or ``"attention"`` in its spec, :mod:`tfprune.layer_specs`): a ``Dense`` column, a
``Conv1D/2D/3D`` or ``Conv1D/2D/3DTranspose`` filter, an output channel of a ``SeparableConv1D/2D``
(its pointwise kernel), a ``SimpleRNN``/``LSTM``/``GRU`` unit, a ``MultiHeadAttention`` head, or a
unit of a type registered as a producer. Its weights ``W_n`` are its slice of every weight with a
unit axis: the kernel slice along the kernel's unit axis (``[..., n]``; ``[..., n, :]`` for a
transposed convolution) and the bias entry ``[n]``; for a recurrent unit its column of every gate
in the kernel, recurrent kernel and bias; for a head its ``[:, n, :]`` slices of the query, key
and value kernels, ``[n, :]`` of their biases and ``[n, :, :]`` of the output kernel.

A criterion is ``fn(model, layers, data=None, **options) -> {layer name: scores}``: one float64
array per layer, one score per unit, higher = more relevant.

======= ==========================================================================================
name    relevance of unit ``n``
======= ==========================================================================================
l1      ``Σ |W_n|`` (data-free)
l2      ``‖W_n‖₂`` (data-free)
taylor  ``‖W_n ⊙ ∇_{W_n} L‖₂``, first-order Taylor
singe   ``∫₀¹ ‖W_n‖ · ‖∇_{W_n} L(W with W_n ← μ W_n)‖ dμ``, SInGE (Yvinec et al. 2022)
======= ==========================================================================================

``L`` is the mean loss (the model's compiled loss, unless ``loss=`` is given; :mod:`tfprune.autodiff.losses`)
over the scoring examples (:func:`tfprune.autodiff.batches.scoring_batches`;
each batch's mean loss weighted by its share of the examples, so scores do not depend on
``batch_size``), computed in inference mode (``training=False``: batch norm uses its moving
statistics). No variable is ever written: scaled weights are substituted through
``keras.StatelessScope`` in a ``tf.function`` compiled once per model, loss and layer, and reused
for every ``μ`` and unit (the scales are passed as tensors, so nothing retraces).

Criteria score plain models; a model wrapped by :func:`tfprune.wrap` is refused (score
``tfprune.strip(model)``).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune.analysis import datachecks
from tfprune.base.registry import Entry, Registry
from tfprune.layers import specs as layer_specs
from tfprune.base import walk
from tfprune.autodiff import engines, losses
from tfprune.autodiff.batches import examples, scoring_batches
from tfprune.autodiff.gradients import Step, batch_sum, compiled, example_share, substitute
from tfprune.base import arguments
from tfprune.layers.targets import is_wrapped

__all__ = ["Criterion", "register", "get", "available", "producer_layers", "unit_weights", "riemann_path", "l1", "l2",
           "taylor", "singe", "integrated_gradients"]

PATHS = ("uniform", "midpoint", "geometric")
MODES = ("layer", "unit")
DEFAULT_STEPS = 8
DEFAULT_RATIO = 0.9


@dataclasses.dataclass(frozen=True)
class Criterion(Entry):
    """A registered unit relevance criterion.

    Attributes:
        name: The name :func:`get` knows it by.
        fn: ``(model, layers, data=None, **options) -> {layer name: float64 array}``.
        needs_data: Whether ``data`` must be given.
    """

    def __call__(self, model, layers=None, data=None, **options):
        """``fn``'s scores, after checking the options, the data (see :meth:`Entry.check_call`) and
        the model's weights (finite), and checked finite themselves.

        Raises:
            TypeError: for an option ``fn`` does not take.
            ValueError: for missing data, a weight of ``model`` that is not finite (naming it), or
                NaN/infinite scores (naming the layer).
        """
        self.check_call(data, options)
        datachecks.check_weights(model)
        scores = self.fn(model, layers, data, **options)
        for layer, values in scores.items():
            values = np.asarray(values, dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError(
                    f"criterion {self.name!r} gave layer {layer!r} {int(np.isnan(values).sum())} NaN and "
                    f"{int(np.isinf(values).sum())} infinite scores (of {values.size} units); the model's "
                    "weights are finite, so the criterion's own computation failed (e.g. an overflow): a "
                    "criterion must return finite scores"
                )
        return scores


_CRITERIA = Registry(Criterion, "criterion")


def register(name, fn=None, needs_data=False):
    """Registers a criterion under ``name``; without ``fn``, returns a decorator that does.

    Args:
        name: The criterion's name.
        fn: ``(model, layers, data=None, **options) -> {layer name: float64 array}``.
        needs_data: Whether the criterion needs ``data``.

    Returns:
        ``fn`` unchanged (or the decorator).

    Raises:
        ValueError: for an empty name, or a name already registered to another function.

    Example:
        >>> @criteria.register("linf")
        ... def linf(model, layers, data=None):
        ...     return {n: np.abs(w).max(1) for n, w in criteria.unit_weights(model, layers).items()}
    """
    return _CRITERIA.register(name, fn, needs_data=bool(needs_data))


def get(name):
    """The criterion registered under ``name`` (a :class:`Criterion` is returned as it is).

    Raises:
        ArgumentError: for an unknown name (the message lists the known ones).
    """
    return _CRITERIA.get(name)


def available():
    """Names of the registered criteria, sorted."""
    return _CRITERIA.available()


# ---------------------------------------------------------------------------------------------
# producers and their units


_UNIT_ROLES = ("producer", "recurrent", "attention")
_UNIT_SIDES = ("out", "gates")


@dataclasses.dataclass(frozen=True, eq=False)
class _Producer:
    """A layer's units and the weights they are slices of.

    ``parts``: ``((variable, unit axis), ...)``; along the (non-negative) unit axis a variable holds
    the units once, or once per gate, gate-major (index ``g·units + n``).
    """

    layer: keras.layers.Layer
    units: int
    parts: tuple

    @property
    def variables(self):
        return [v for v, _ in self.parts]

    def rows(self, arrays):
        """``arrays`` (shaped like :attr:`variables`) as a (units, weights per unit) float64 matrix."""
        out = []
        for (_, axis), array in zip(self.parts, arrays):
            array = np.moveaxis(np.asarray(array, np.float64), axis, 0)
            gates = array.shape[0] // self.units
            out.append(array.reshape(gates, self.units, -1).transpose(1, 0, 2).reshape(self.units, -1))
        return np.concatenate(out, axis=1)

    def weights(self):
        return self.rows([keras.ops.convert_to_numpy(v.value) for v in self.variables])

    def scaled(self, scale):
        """The variables' values with unit ``n``'s slices multiplied by ``scale[n]`` (a tensor)."""
        values = []
        for v, axis in self.parts:
            shape = [1] * len(v.shape)
            shape[axis] = -1
            per_entry = keras.ops.tile(keras.ops.cast(scale, v.dtype), [int(v.shape[axis]) // self.units])
            values.append(v.value * keras.ops.reshape(per_entry, shape))
        return values


def _producer(layer):
    """The :class:`_Producer` of a layer whose spec gives it units, else ``None``."""
    spec = layer_specs.spec_of(layer)
    if spec is None or spec.role not in _UNIT_ROLES:
        return None
    if spec.groups_key is not None and getattr(layer, spec.groups_key) != 1:
        return None  # a grouped layer is followed per channel, its units go with its inputs'
    own = layer_specs.weights_of(layer)
    weights = [(v, own[v.name]) for v in walk.own_variables(layer) if v.name in own]
    weights += list(spec.inner_weights(layer)) if spec.inner_weights is not None else []
    parts = []
    for v, w in weights:
        unit_axis = w.axes(len(v.shape))[1]
        sides = [side for axis, side in w.channel_axes if unit_axis is not None and axis % len(v.shape) == unit_axis]
        if sides and sides[0] in _UNIT_SIDES:
            parts.append((v, unit_axis))
    return _Producer(layer, int(layer.get_config()[spec.unit_key]), tuple(parts))


def _producers(model, layers):
    """The producers named (or given) by ``layers``, default all of ``model``'s, in that order."""
    if is_wrapped(model):
        raise ValueError(
            f"model {model.name!r} is wrapped by tfprune.wrap: structured criteria score plain models, "
            "score tfprune.strip(model) instead"
        )
    walk.check_built(model)
    units = [unit for unit, _ in walk.units(model)]
    if layers is None:
        return [p for p in map(_producer, units) if p is not None]
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    found = []
    for item in layers:
        if isinstance(item, str):
            matches = [u for u in units if u.name == item]
            if not matches:
                raise ValueError(f"model {model.name!r} has no layer named {item!r}; its layers: "
                                 f"{', '.join(u.name for u in units)}")
            if len(matches) > 1:
                raise ValueError(f"model {model.name!r} has {len(matches)} layers named {item!r}: pass the layer")
            layer = matches[0]
        elif isinstance(item, keras.layers.Layer):
            if not any(u is item for u in units):
                raise ValueError(f"layer {item.name!r} is not a layer of model {model.name!r}")
            layer = item
        else:
            raise TypeError(f"layers must hold layer names or layers, got {type(item).__name__}")
        producer = _producer(layer)
        if producer is None:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) is not a producer: units are scored for "
                "Dense, Conv1D/2D/3D, Conv1D/2D/3DTranspose, SeparableConv1D/2D, SimpleRNN/LSTM/GRU and "
                'MultiHeadAttention layers, and the types registered with tfprune.register_layer(..., role="producer")'
            )
        if any(p.layer is layer for p in found):
            raise ValueError(f"layer {layer.name!r} is listed twice")
        found.append(producer)
    return found


def producer_layers(model):
    """Names of ``model``'s layers whose units the criteria can score, in model order.

    Example:
        >>> criteria.producer_layers(model)
        ['conv', 'separable', 'hidden', 'logits']
    """
    return [p.layer.name for p in _producers(model, None)]


def unit_weights(model, layers=None):
    """Each unit's weights ``W_n`` (kernel slice, then bias entry) as rows of a float64 matrix.

    Args:
        model: A built, plain Keras 3 model.
        layers: Layer names or layers (producers); default all producers.

    Returns:
        ``{layer name: array of shape (units, weights per unit)}``.

    Raises:
        ValueError: for a layer that is not in the model or not a producer, or a wrapped model.
    """
    return {p.layer.name: p.weights() for p in _producers(model, layers)}


# ---------------------------------------------------------------------------------------------
# data-free criteria


def l1(model, layers=None, data=None):
    """``Σ |W_n|`` of each unit (kernel slice and bias), data-free.

    Args:
        model: A built, plain Keras 3 model.
        layers: Layer names or layers (producers); default all producers.
        data: Ignored.

    Returns:
        ``{layer name: float64 array of shape (units,)}``.

    Example:
        >>> criteria.l1(model, ["conv", "hidden"])["conv"].shape
        (8,)
    """
    return {name: np.abs(w).sum(axis=1) for name, w in unit_weights(model, layers).items()}


def l2(model, layers=None, data=None):
    """``‖W_n‖₂`` of each unit (kernel slice and bias), data-free.

    Args, Returns: as :func:`l1`.
    """
    return {name: np.sqrt(np.square(w).sum(axis=1)) for name, w in unit_weights(model, layers).items()}


# ---------------------------------------------------------------------------------------------
# gradients at scaled units


def _gradient_step(model, producers, loss):
    """``step(x, y, sample_weight, global_size, scales, weight)``: gradients of ``weight`` × the batch's mean loss
    with respect to each producer's kernel and bias, at the point where unit ``n`` of producer ``i``
    is scaled by ``scales[i][n]`` (inference mode; nothing is written)."""
    variables = [v for p in producers for v in p.variables]
    engine = engines.current()  # chosen here, not inside the traced step

    def step(x, y, sample_weight, global_size, scales, weight):
        values = [value for p, scale in zip(producers, scales) for value in p.scaled(scale)]

        def weighted_loss(values):
            with substitute((), (), others=zip(variables, values)):
                value = loss(x, y, model(x, training=False), sample_weight)
            return value * example_share(x, global_size) * weight, None

        return engine.value_and_gradients(weighted_loss, values)[2]

    return Step(step, model.variables)


class _Gradients:
    """Mean-loss gradients of some producers' weights at scaled units, over fixed scoring batches."""

    def __init__(self, model, producers, batches, loss, strategy):
        self.model, self.producers, self.batches, self.strategy = model, producers, batches, strategy
        key = ("structured_gradient", loss.key, tuple(id(v) for p in producers for v in p.variables))
        self.step = compiled(model, key, lambda: _gradient_step(model, producers, loss))
        total = sum(examples(b) for b in batches)
        self.shares = [keras.ops.convert_to_tensor(examples(b) / total, "float32") for b in batches]

    def __call__(self, scales):
        """Gradient rows ``(units, weights per unit)`` per producer, with unit ``n`` of producer ``i``
        scaled by ``scales[i][n]`` (``None`` for no scaling)."""
        scales = [keras.ops.ones((p.units,), "float32") if s is None else keras.ops.convert_to_tensor(s, "float32")
                  for p, s in zip(self.producers, scales)]
        total = None
        for batch, share in zip(self.batches, self.shares):
            part = batch_sum(self.model, self.step, [batch], self.strategy, scales, share)
            total = part if total is None else [a + b for a, b in zip(total, part)]
        out, i = [], 0
        for p in self.producers:
            n = len(p.variables)
            out.append(p.rows([keras.ops.convert_to_numpy(g) for g in total[i:i + n]]))
            i += n
        return out


def _batches(model, data, samples, batch_size, loss, from_logits, name):
    """The scoring batches and the resolved loss (:func:`tfprune.autodiff.losses.resolve`)."""
    if data is None:
        raise ValueError(f"{name} needs data: pass data=(x, y) or a dataset of (x, y) batches")
    loss = losses.resolve(model, loss, from_logits)
    return scoring_batches(model, data, samples, batch_size, loss=loss), loss


def riemann_path(steps=DEFAULT_STEPS, path="uniform", ratio=None):
    """The points ``μ_s`` and weights ``w_s`` of the Riemann sum ``∫₀¹ f(μ) dμ ≈ Σ_s w_s f(μ_s)``.

    * ``"uniform"``: right endpoints ``μ_s = s/S``, ``s = 1..S``, ``w_s = 1/S`` (error ``O(1/S)``);
    * ``"midpoint"``: ``μ_s = (s − ½)/S``, ``w_s = 1/S`` (error ``O(1/S²)`` where ``f`` is smooth);
    * ``"geometric"``: ``μ_s = ratio^s``, ``s = 1..S``, each point weighted by the width
      ``ratio^(s−1)·(1 − ratio)`` of its interval ``[ratio^s, ratio^(s−1)]``, the weights normalised to
      sum 1. It is the mean of ``f`` over ``[ratio^S, 1]``, sampled densely near ``μ = 1`` (small
      perturbations of the unit); it reaches ``μ ≈ 0`` only when ``ratio^S`` is small.

    Args:
        steps: ``S``, the number of points (>= 1).
        path: ``"uniform"``, ``"midpoint"`` or ``"geometric"``.
        ratio: For the geometric path, in (0, 1); default 0.9.

    Returns:
        ``(mu, weights)``, two float64 arrays of length ``steps``; the weights sum to 1.

    Example:
        >>> criteria.riemann_path(4)
        (array([0.25, 0.5 , 0.75, 1.  ]), array([0.25, 0.25, 0.25, 0.25]))
    """
    steps = arguments.count("steps", steps)
    arguments.choice("path", path, PATHS)
    if path != "geometric" and ratio is not None:
        raise ValueError(f"ratio applies to the geometric path only, got ratio={ratio!r} with path={path!r}")
    s = np.arange(1, steps + 1, dtype=np.float64)
    if path == "uniform":
        return s / steps, np.full(steps, 1.0 / steps)
    if path == "midpoint":
        return (s - 0.5) / steps, np.full(steps, 1.0 / steps)
    ratio = arguments.number("ratio", DEFAULT_RATIO if ratio is None else ratio, 0, 1, low_open=True, high_open=True)
    mu = ratio ** s
    widths = ratio ** (s - 1) * (1 - ratio)
    return mu, widths / widths.sum()


# ---------------------------------------------------------------------------------------------
# data-driven criteria


def taylor(model, layers=None, data=None, samples=None, batch_size=None, loss=None, from_logits=True,
           strategy=None):
    """First-order Taylor relevance ``‖W_n ⊙ ∇_{W_n} L‖₂``, the baseline SInGE compares with.

    (Molchanov et al., CVPR 2019, square the *sum* ``(Σ W ⊙ ∇L)²`` over the unit instead; this is
    the norm of the per-weight products.)

    Args:
        model: A built, plain Keras 3 model.
        layers: Layer names or layers (producers); default all producers.
        data: Data as ``model.fit`` takes it (:mod:`tfprune.autodiff.batches`): ``(x, y)`` or
            ``(x, y, sample_weight)`` arrays, or a dataset of such batches.
        samples: Examples to use; default 10 × the number of classes.
        batch_size: Batch size for arrays; default all samples in one batch.
        loss: A Keras loss, its name or a callable; default the model's compiled loss, or sparse
            categorical cross-entropy for an uncompiled model (:mod:`tfprune.autodiff.losses`).
        from_logits: Whether the model outputs logits (for the default loss).
        strategy: A ``tf.distribute`` strategy to score under; default the model's.

    Returns:
        ``{layer name: float64 array of shape (units,)}``; ``∇L`` is the gradient of the mean loss
        over all scoring examples, in inference mode.

    Example:
        >>> scores = criteria.taylor(model, ["conv"], (x[:256], y[:256]), batch_size=64)
    """
    producers = _producers(model, layers)
    batches, loss = _batches(model, data, samples, batch_size, loss, from_logits, "taylor")
    if not producers:
        return {}
    grads = _Gradients(model, producers, batches, loss, strategy)([None] * len(producers))
    return {p.layer.name: np.sqrt(np.square(p.weights() * g).sum(axis=1)) for p, g in zip(producers, grads)}


def singe(model, layers=None, data=None, steps=DEFAULT_STEPS, path="uniform", ratio=None, mode="layer",
          samples=None, batch_size=None, loss=None, from_logits=True, strategy=None):
    """SInGE integrated-gradient relevance (Yvinec et al., NeurIPS 2022).

    ``I(n) = ∫₀¹ ‖W_n‖ · ‖∇_{W_n} L(W with W_n ← μ W_n)‖ dμ ≈ ‖W_n‖ · Σ_s w_s ‖∇_{W_n} L(μ_s)‖``, the
    Riemann sum of :func:`riemann_path`; ``∇L`` is the gradient of the mean loss over the scoring
    examples, in inference mode, evaluated at the scaled weights.

    Args:
        model: A built, plain Keras 3 model.
        layers: Layer names or layers (producers); default all producers.
        data: Data as ``model.fit`` takes it (see :func:`taylor`).
        steps: Riemann steps ``S``. Default 8: the rule's error is O(1/S) (uniform) and the
            ranking, all that pruning uses, settles well before the integral does; a pass costs a
            backward pass over the scoring data, S per layer in layer mode.
        path: ``"uniform"`` (``μ_s = s/S``), ``"midpoint"`` or ``"geometric"`` (``μ_s = ratio^s``).
        ratio: The geometric path's ratio; default 0.9.
        mode: ``"layer"`` (default) scales all units of one layer together by ``μ`` — S backward
            passes per layer, the other layers untouched: the practical approximation, since a
            unit's gradient is then taken with its siblings scaled too. ``"unit"`` scales each unit
            alone as the definition says — exact, but N·S passes for a layer of N units (slow).
        samples, batch_size, loss, from_logits, strategy: As for :func:`taylor`.

    Returns:
        ``{layer name: float64 array of shape (units,)}``.

    Example:
        >>> scores = criteria.singe(model, ["conv", "hidden"], (x[:256], y[:256]), steps=8)
    """
    arguments.choice("mode", mode, MODES)
    mu, weights = riemann_path(steps, path, ratio)
    producers = _producers(model, layers)
    batches, loss = _batches(model, data, samples, batch_size, loss, from_logits, "singe")
    out = {}
    for p in producers:
        gradients = _Gradients(model, [p], batches, loss, strategy)
        norms = np.zeros(p.units)
        if mode == "layer":
            for m, w in zip(mu, weights):
                g = gradients([np.full(p.units, m)])[0]
                norms += w * np.linalg.norm(g, axis=1)
        else:
            for n in range(p.units):
                for m, w in zip(mu, weights):
                    scale = np.ones(p.units)
                    scale[n] = m
                    norms[n] += w * np.linalg.norm(gradients([scale])[0][n])
        out[p.layer.name] = np.linalg.norm(p.weights(), axis=1) * norms
    return out


def integrated_gradients(model, layer, unit, data, steps=DEFAULT_STEPS, path="uniform", ratio=None, samples=None,
                         batch_size=None, loss=None, from_logits=True, strategy=None):
    """Signed integrated-gradient attributions of one unit's weights along the path ``μ W_n``.

    ``A_i = W_i · Σ_s w_s ∂L/∂W_i (W with W_n ← μ_s W_n)`` for each weight ``i`` of unit ``n``, the
    other units untouched. With the uniform or midpoint path the attributions are complete up to
    the Riemann error: ``Σ_i A_i ≈ L(W) − L(W with W_n ← 0)`` (the geometric path's normalised
    weights average over ``[ratio^S, 1]`` instead). ``singe(mode="unit")`` is
    ``‖W_n‖ · Σ_s w_s ‖∂L/∂W_n(μ_s)‖`` of the same gradients.

    Args:
        model: A built, plain Keras 3 model.
        layer: A producer layer of the model, or its name.
        unit: The output channel, ``0 <= unit < units``.
        data: Data as ``model.fit`` takes it (see :func:`taylor`).
        steps, path, ratio: The Riemann sum, as for :func:`singe`.
        samples, batch_size, loss, from_logits, strategy: As for :func:`taylor`.

    Returns:
        ``{variable name: float64 array}``: the unit's slice of each of its weights (the weight's
        shape without its unit axis, with a leading gate axis for a recurrent layer's), e.g.
        ``"kernel"`` and, when the layer has a bias, ``"bias"`` (a 0-d array); the weights of
        layers inside it are named by their path below it (``"query/kernel"``).

    Example:
        >>> a = criteria.integrated_gradients(model, "hidden", 3, (x, y), steps=64)
        >>> sum(v.sum() for v in a.values())  # ≈ loss(W) − loss(W with unit 3 removed)
    """
    if isinstance(layer, (list, tuple)):
        raise TypeError("integrated_gradients takes one layer (or its name)")
    mu, weights = riemann_path(steps, path, ratio)
    (p,) = _producers(model, [layer])
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or not 0 <= unit < p.units:
        raise ValueError(f"unit must be an integer in [0, {p.units}) for layer {p.layer.name!r}, got {unit!r}")
    batches, loss = _batches(model, data, samples, batch_size, loss, from_logits, "integrated_gradients")
    gradients = _Gradients(model, [p], batches, loss, strategy)
    mean = 0.0
    for m, w in zip(mu, weights):
        scale = np.ones(p.units)
        scale[unit] = m
        mean = mean + w * gradients([scale])[0][unit]
    row = p.weights()[unit] * mean
    out, start = {}, 0
    for v, axis in p.parts:
        gates = int(v.shape[axis]) // p.units
        shape = [gates] * (gates > 1) + [d for i, d in enumerate(v.shape) if i != axis]
        size = int(np.prod(shape))
        out[_relative_path(p.layer, v)] = row[start:start + size].reshape(shape)
        start += size
    return out


def _relative_path(layer, variable):
    """``variable``'s path below ``layer`` (``"kernel"``, ``"query/kernel"``)."""
    head, sep, tail = variable.path.partition(f"{layer.name}/")
    return tail if sep and not head else variable.name


register("l1", l1)
register("l2", l2)
register("taylor", taylor, needs_data=True)
register("singe", singe, needs_data=True)
