"""Machinery the gradient-based scorers share.

* the batches come from :func:`tfprune.autodiff.batches.scoring_batches` (data as ``fit`` takes
  it) and the loss from :func:`tfprune.autodiff.losses.resolve` (the model's compiled loss, one
  given, or sparse categorical cross-entropy);
* :func:`substitute` runs the model with chosen values in place of its weights, without touching
  the weights: the network's weights, signs and batch-norm statistics are exactly as before when
  a scorer returns or raises;
* :func:`effective_gradients` and :func:`hessian_gradient` compute, in steps reused across rounds
  and compiled by the Keras backend's engine (:mod:`tfprune.autodiff.engines`), gradients with
  respect to the *effective* weights ``w = θ ⊙ m``
  (the masks are replaced by ones and ``w`` by a watched tensor, so the gradient is not blocked
  at pruned weights: SNIP multiplies it by ``w``, FORCE by ``θ``).

Forward passes run in inference mode (``training=False``): batch norm uses its moving
statistics, unless a scorer asks for ``batch_statistics=True`` — then batch norm normalises each
scoring batch by that batch's own mean and variance and the gradients flow through them, as in the
authors' PyTorch code run in ``train()`` mode (GraSP, FORCE, iterative SNIP); the moving averages
are not updated (:func:`tfprune.layers.changes.batch_statistics`). Under a ``tf.distribute``
strategy each replica normalises by its own part of the batch, as unsynchronised batch norm does
in training. With the default loss and ``from_logits=True``, a final softmax or sigmoid of the
model is skipped for the score (:func:`tfprune.autodiff.linearized.without_output_activation`), so the
loss sees the logits it expects rather than probabilities taken for logits; with
``from_logits=False`` or a loss of your own the outputs are used as they are.
"""

from __future__ import annotations

import contextlib
import contextvars

import keras
import numpy as np
from keras import ops

from tfprune import _compat
from tfprune.autodiff import engines, losses
from tfprune.autodiff.batches import examples
from tfprune.base import distribute, views
from tfprune.layers.changes import batch_statistics as batch_statistics_mode
from tfprune.layers.masked import effective_values_given
from tfprune.autodiff.linearized import without_output_activation
from tfprune.sparsity.masks import FiniteScores
from tfprune.sparsity.topk import map_parts

__all__ = [
    "batch_sum",
    "example_share",
    "check_logits",
    "substitute",
    "effective_values",
    "effective_gradients",
    "hessian_gradient",
    "compiled",
    "Step",
    "scoring_rounds",
    "normalised",
]

def compiled(model, key, build):
    """The function ``build()`` made once per ``(model, key)`` and kept on the model.

    Scorers call their ``tf.function`` steps many times (once per round); tracing them again each
    time would cost more than the steps. The cache lives on the model (outside Keras's attribute
    tracking), so it goes when the model goes.
    """
    cache = model.__dict__.get("_tfprune_compiled")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_tfprune_compiled", cache)
    if key not in cache:
        cache[key] = build()
    return cache[key]


_ROUNDS = contextvars.ContextVar("tfprune_scoring_rounds", default=1)


@contextlib.contextmanager
def scoring_rounds(rounds):
    """Tells the scoring steps run inside how many rounds the enclosing pruning scores.

    :func:`tfprune.prune_at_init` sets it: with more than one round, a :class:`Step` is compiled
    from its first round on instead of running that one eagerly.

    Example:
        >>> with scoring_rounds(100):
        ...     scores = tfprune.scores.synflow(model, targets)
    """
    token = _ROUNDS.set(int(rounds))
    try:
        yield
    finally:
        _ROUNDS.reset(token)


# Batches holding at least this many input values are compiled from the first round (see Step).
EAGER_BELOW_INPUT_VALUES = 1 << 20


class Step:
    """A scoring step that runs eagerly in a lone first round and compiled otherwise.

    Tracing a step costs more than running it once on small inputs (0.5–3 s on a CIFAR ResNet or
    VGG, batch 100): a one-shot score (SNIP, GraSP) never repays it there. So a step runs eagerly
    in its first round, unless more rounds follow (:func:`scoring_rounds`: SynFlow, iterative
    SNIP, FORCE under :func:`tfprune.prune_at_init`) or its batches are large (at least
    ``EAGER_BELOW_INPUT_VALUES`` = 2^20 input values: an ImageNet batch of 32 at 224×224 holds
    4.8M). On large batches graph execution is faster and frees intermediate tensors sooner:
    SNIP on ResNet50, batch 32, took 7.0 s and 3.0 GB compiled against 10.5 s and 7.4 GB eager
    (``docs/benchmarks.md``). A round is one call, or one :func:`batch_sum` over all its batches.
    Results of the two modes agree up to float32 rounding. Under a ``tf.distribute`` strategy,
    :func:`batch_sum` always runs ``compiled`` (the strategy wraps the whole replicated call in it).
    Compiled means a ``tf.function`` on TensorFlow and ``jax.jit`` on JAX, where every round runs
    compiled (op-by-op dispatch costs more there); PyTorch runs every round op by op
    (:mod:`tfprune.autodiff.engines`).

    Args:
        function: The step, a Python function of tensors returning tensors.
        variables: The variables it reads (the model's): a compiled JAX step takes their values
            as arguments.

    Example:
        >>> step = compiled(model, key, lambda: Step(gradient_of_batch, model.variables))
        >>> step(x)  # eagerly; later calls compiled
    """

    def __init__(self, function, variables):
        self.python_function = function
        self.compiled = engines.current().compile(function, variables)
        self.rounds = 0

    def next_round(self, input_values=0):
        """The function to run the next round with, on batches of at most ``input_values`` input
        values: eager in a lone first round on small batches, compiled otherwise."""
        self.rounds += 1
        eager = (self.rounds == 1 and _ROUNDS.get() == 1 and input_values < EAGER_BELOW_INPUT_VALUES
                 and not engines.current().COMPILES_FIRST_ROUND)
        return self.python_function if eager else self.compiled

    def __call__(self, *args):
        """Runs one round of one call."""
        return self.next_round()(*args)


def effective_values(targets):
    """``θ ⊙ m`` of each target (``θ`` for an unmasked one), as tensors."""
    return [t.value for t in targets]


@contextlib.contextmanager
def substitute(targets, values, others=()):
    """Runs the enclosed forward passes with ``values`` as the targets' effective weights.

    Each target's variable reads as its value and its wrapper does not multiply it by the mask
    (:func:`tfprune.layers.masked.effective_values_given`), so the forward pass uses exactly ``values``
    and gradients with respect to them are not blocked by masks. ``others`` adds
    ``(variable, value)`` pairs (SynFlow's absolute values). No variable changes.
    """
    mapping = list(others) + [(t.variable, value) for t, value in zip(targets, values)]
    with _compat.inheriting_stateless_scope(mapping), effective_values_given(targets):
        yield


def check_logits(model, batches, loss):
    """Raises if the score should see logits but ``model``'s outputs are probabilities.

    With the default loss and ``from_logits=True`` (``loss.on_logits``), a final softmax found in
    the model's graph is skipped (see the module docstring); one the graph does not show (a
    subclassed model's ``call``, a ``Lambda``) is caught here: every output row of the first batch
    in [0, 1] and summing to 1. Checked once per model; :func:`effective_gradients` checks the
    rows of its own forward passes instead of running one more.

    Raises:
        ValueError: naming the model and saying what to pass instead.
    """
    if not loss.on_logits or _logits_checked(model)[0]:
        return
    with without_output_activation(model):
        outputs = model(batches[0].x, training=False)
    _raise_if_probabilities(model, _rows_not_probabilities(outputs))


def _logits_checked(model):
    return compiled(model, ("logits_checked",), lambda: [False])


def _rows_not_probabilities(outputs):
    """Per output: the rows that are not a probability vector — an entry below 0, or a sum more
    than 2e-5 from 1 — and all rows of an output with a single column."""
    counts = []
    for o in keras.tree.flatten(outputs):
        rows = ops.reshape(o, (-1, o.shape[-1]))
        bad = ops.logical_or(ops.any(rows < 0, axis=1), ops.abs(ops.sum(rows, axis=1) - 1.0) > 2e-5)
        if o.shape[-1] <= 1:
            bad = ops.ones_like(bad)
        counts.append(ops.sum(ops.cast(bad, "float32")))
    return ops.stack(counts)


def _raise_if_probabilities(model, rows_not_probabilities):
    """Raises if some output has no row that is not a probability vector; else marks the model
    checked (:func:`check_logits`)."""
    if not np.all(np.asarray(rows_not_probabilities) > 0):
        raise ValueError(
            f"model {model.name!r} outputs probabilities (each output row is in [0, 1] and sums to 1), but "
            "from_logits=True scores the loss on logits, and its final softmax is not one tfprune can skip "
            "(it looks through functional and Sequential graphs): pass from_logits=False, or a loss of "
            "your own"
        )
    _logits_checked(model)[0] = True


def _loss_at(model, targets, loss, temperature, batch_statistics, x, y, sample_weight, values, *,
             second_derivative=False):
    """The loss of the network whose effective weights are ``values`` (inference mode; batch norm
    on the batch's statistics when ``batch_statistics``, differentiable twice when
    ``second_derivative``), on its logits (a final softmax or sigmoid skipped) when
    ``loss.on_logits``, its outputs divided by ``temperature``. The loss is computed inside the
    substitution too, so a compiled loss's regularisation terms read ``values``."""
    head = without_output_activation(model) if loss.on_logits else contextlib.nullcontext()
    norm = batch_statistics_mode(model, second_derivative) if batch_statistics else contextlib.nullcontext()
    with substitute(targets, values), head, norm:
        outputs = model(x, training=False)
        scaled = outputs if temperature == 1 else keras.tree.map_structure(lambda o: o / temperature, outputs)
        return loss(x, y, scaled, sample_weight), outputs


def example_share(x, global_size):
    """The fraction of the global batch this (replica's) batch holds: losses are means over a
    batch, so scaling each replica's by its share makes their sum the global batch's mean."""
    return ops.cast(ops.shape(keras.tree.flatten(x)[0])[0], "float32") / global_size


def _gradient_step(model, targets, loss, temperature, batch_statistics):
    """The gradients of one batch, and its output rows that are not probabilities (the
    :func:`check_logits` test, from the same forward pass)."""
    engine = engines.current()  # chosen here, not inside the traced step

    def step(x, y, sample_weight, global_size, values):
        def loss_and_outputs(values):
            value, outputs = _loss_at(model, targets, loss, temperature, batch_statistics, x, y, sample_weight, values)
            return value * example_share(x, global_size), outputs

        _, outputs, grads = engine.value_and_gradients(loss_and_outputs, values)
        return [*grads, _rows_not_probabilities(outputs)]

    return Step(step, model.variables)


def batch_sum(model, step, batches, strategy, *args):
    """``Σ_b step(x_b, y_b, w_b, n_b, *args)`` over :class:`tfprune.autodiff.batches.Batch` es for a
    :class:`Step` (``n_b`` the batch's examples); under a strategy each batch is split across
    replicas and the replicas' results are all-reduced (see :mod:`tfprune.distribute`)."""
    strategy = distribute.strategy_of(model, strategy)
    run = step.next_round(max(sum(int(np.prod(t.shape)) for t in keras.tree.flatten(b.x)) for b in batches))
    total = None
    for batch in batches:
        size = ops.convert_to_tensor(float(examples(batch)))
        if strategy is None:
            out = run(*batch, size, *args)
        else:
            out = distribute.replica_sum(strategy, step.compiled, batch, size, *args)
        total = list(out) if total is None else [a + b for a, b in zip(total, out)]
    return total


def _step_key(kind, loss, temperature, batch_statistics, targets):
    return (kind, loss.key, float(temperature), bool(batch_statistics), tuple(id(t.variable) for t in targets))


def effective_gradients(model, targets, batches, loss=None, from_logits=True, values=None, temperature=1.0,
                        strategy=None, batch_statistics=False):
    """``Σ_b ∂L_b/∂w`` over the batches, for the effective weights ``w`` of each target.

    Args:
        model: The model.
        targets: The targets whose gradients are wanted.
        batches: From :func:`tfprune.autodiff.batches.scoring_batches`.
        loss: Anything :func:`tfprune.autodiff.losses.resolve` takes: ``None`` for the model's
            compiled loss (sparse categorical cross-entropy if it has none), a Keras loss, its
            name or a callable ``(y_true, y_pred)``.
        from_logits: For the default loss: whether to score on logits (a final softmax or
            sigmoid of the model is then skipped; see the module docstring).
        values: The effective weights to differentiate at; default ``θ ⊙ m``.
        temperature: Outputs are divided by it before the loss (GraSP's T).
        strategy: The ``tf.distribute`` strategy to score under; default the one holding the
            model's variables (none for a single device).
        batch_statistics: Run batch norm on each batch's own statistics (see the module
            docstring); default its moving statistics.

    Returns:
        A list of dense gradient tensors (the signed sum over batches), one per target.

    Raises:
        ValueError: if the score should see logits but the model outputs probabilities (see
            :func:`check_logits`).
    """
    loss = losses.resolve(model, loss, from_logits)
    values = effective_values(targets) if values is None else values
    step = compiled(model, _step_key("gradient", loss, temperature, batch_statistics, targets),
                    lambda: _gradient_step(model, targets, loss, temperature, batch_statistics))
    *grads, rows_not_probabilities = batch_sum(model, step, batches, strategy, values)
    if loss.on_logits and not _logits_checked(model)[0]:
        _raise_if_probabilities(model, rows_not_probabilities)
    return grads


def _hessian_step(model, targets, scoring_loss, temperature, batch_statistics):
    engine = engines.current()  # chosen here, not inside the traced step

    def step(x, y, sample_weight, global_size, values, direction):
        def loss(values):
            value, _ = _loss_at(model, targets, scoring_loss, temperature, batch_statistics, x, y, sample_weight,
                                values, second_derivative=True)
            return value * example_share(x, global_size)

        return engine.hessian_vector_product(loss, values, direction)

    return Step(step, model.variables)


def hessian_gradient(model, targets, batches, direction, loss=None, from_logits=True, values=None, temperature=1.0,
                     strategy=None, batch_statistics=False):
    """``Σ_b H_b v``: the Hessian of each batch's loss times ``direction`` (double backprop on
    TensorFlow and PyTorch, forward-over-reverse on JAX).

    Args:
        model, targets, batches, loss, from_logits, values, temperature, strategy, batch_statistics:
            As for :func:`effective_gradients`.
        direction: One tensor per target (GraSP: the accumulated gradient ``g``, held constant).

    Returns:
        A list of dense tensors ``H v``, one per target.
    """
    loss = losses.resolve(model, loss, from_logits)
    check_logits(model, batches, loss)
    values = effective_values(targets) if values is None else values
    step = compiled(model, _step_key("hessian", loss, temperature, batch_statistics, targets),
                    lambda: _hessian_step(model, targets, loss, temperature, batch_statistics))
    direction = [ops.stop_gradient(d) for d in direction]
    return batch_sum(model, step, batches, strategy, values, direction)


def normalised(scores, absolute_sum=False, epsilon=0.0):
    """Scores divided by their sum over all targets (or by ``|sum| + epsilon``).

    Dividing every score by one positive number changes no ranking, global or local; it makes
    the numbers comparable across runs and models. The sums are taken in float64 and the
    quotients in float32, tensor by tensor on all cores. A float64 sum of float32 values cannot
    overflow, so it is finite exactly when every entry is: then the result is a
    :class:`tfprune.masks.FiniteScores`, which the mask selection does not search again.

    Returns:
        A list of float32 NumPy arrays: a :class:`tfprune.masks.FiniteScores` when they are all
        finite (NaN or ±inf scores come back undivided, for the selection to name them).
    """
    arrays = [views.array(s) for s in scores]
    sums = map_parts(lambda a: float(np.sum(a, dtype=np.float64)), arrays)
    if not all(np.isfinite(sums)):
        return [a.astype(np.float32, copy=False) for a in arrays]
    total = sum(sums)
    denominator = abs(total) + epsilon if absolute_sum else total
    if denominator == 0:
        return FiniteScores(a.astype(np.float32, copy=False) for a in arrays)
    return FiniteScores(map_parts(lambda a: np.divide(a, denominator, dtype=np.float32), arrays))
