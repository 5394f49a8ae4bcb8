"""SynFlow: iterative synaptic flow pruning (Tanaka, Kunin, Yamins and Ganguli, NeurIPS 2020).

Data-free. Every parameter is replaced by its absolute value (kernels, biases, batch-norm γ/β and
moving statistics), the network runs in inference mode on one all-ones input, ``R = Σ outputs``,
and ``s = w ⊙ ∂R/∂w`` for the effective weights ``w = |θ| ⊙ m`` (already ≥ 0). The absolute
values are substituted for the forward pass only (a ``keras.StatelessScope``): the model's weights
and signs never change, also on error.

What is scored is the network the paper defines, for any model:

* non-linearities that are not positively homogeneous are made so for the score (ReLU6 becomes
  ReLU; sigmoid, hard-sigmoid, swish, hard-swish, gelu, tanh, softmax — also a softmax head, so
  ``R`` is taken on the logits, and the softmax inside ``MultiHeadAttention`` — become the
  identity; see :mod:`tfprune.linearized`). ReLU networks are scored exactly as before;
* an ``Embedding`` reads the paper's all-ones *one-hot* input, every token at once: each lookup
  returns the sum of all rows, so every row gets a score (``|E[i, j]| · ∂R/∂h_j``), not only the
  row of token 1.

Where a prunable tensor still gets the same score for all its kept weights (no flow reaches it,
or its gradient is constant), :func:`synflow` warns and names it: its mask is then decided by
ties, not by the criterion. This depends on the network's structure, so it is checked in the
first round a model is scored (in later rounds a collapse is what :mod:`tfprune.connectivity`
reports). Activations a subclassed model computes inline in ``call`` are not
reached and run unchanged.

Numerics: ``R`` is a product over layers and overflows float32 on deep networks. Rescaling
multiplies each pruned kernel by a positive constant ``c_l`` that makes its mean fan-in sum of
``|w|`` equal to 1, which keeps ``R`` near the number of outputs. For a chain of positively
homogeneous layers — no residual connections; biases and batch-norm shifts zero, as at the usual
initialisation — this multiplies *every* score by the same ``Π c_l`` and leaves the ranking
unchanged. Across a residual addition the two branches are scaled differently, so there the
rescaled ranking is an approximation. ``rescale="auto"`` (the default) therefore scores exactly
and rescales only when the exact scores are not finite (and keeps rescaling for that model from
then on); ``True`` and ``False`` force either.
"""

import warnings

import keras
import numpy as np
from keras import ops

from tfprune.analysis import inputs as example_inputs
from tfprune.autodiff import engines
from tfprune.autodiff.flow import flow_network, rescaled
from tfprune.base import arguments, views
from tfprune.sparsity.masks import FiniteScores
from tfprune.autodiff.gradients import Step, compiled
from tfprune.scores.registry import register

__all__ = ["synflow"]

@register("synflow", default_rounds=100)
def synflow(model, targets, data=None, rescale="auto", input_shape=None):
    """SynFlow scores ``|θ ⊙ m| ⊙ ∂R/∂|θ ⊙ m|`` on an all-ones input.

    Args:
        model: The model (wrapped: its masks apply).
        targets: From :func:`tfprune.prunable_weights`.
        data: Unused (SynFlow is data-free).
        rescale: ``"auto"`` (exact scores, rescaled only if those are not finite), ``True`` or
            ``False`` (see the module docstring).
        input_shape: One example's shape without the batch axis, where the model does not know it
            (a subclassed model, a dimension of unknown size): one shape, or for several inputs a
            dict by input name or a list in ``model.inputs`` order
            (:mod:`tfprune.analysis.inputs`; integer inputs get token id 1).

    Returns:
        One float32 array per target (non-negative); a :class:`tfprune.masks.FiniteScores` when
        every tensor's summed score is finite, which :func:`tfprune.masks.from_scores` then does
        not search again for NaN or ±inf.

    Warns:
        UserWarning: naming the targets whose kept weights all get the same score (their masks
            are then decided by ties).

    Example:
        >>> pruned = tfprune.prune_at_init(model, "synflow", compression=100)  # 100 rounds
    """
    arguments.choice("rescale", rescale, ("auto", True, False))
    inputs = example_inputs.ones(model, input_shape)
    key = tuple(id(t.variable) for t in targets)
    overflowed = compiled(model, ("synflow_overflowed", key), lambda: [False])
    scores = None
    if rescale is not True and not (rescale == "auto" and overflowed[0]):
        step = compiled(model, ("synflow", key, False), lambda: _synflow_step(model, targets, False))
        scores, finite = step(inputs)
        if rescale == "auto" and not np.asarray(finite).all():  # a score is NaN or infinite
            overflowed[0] = True
            scores = None
    if scores is None:
        step = compiled(model, ("synflow", key, True), lambda: _synflow_step(model, targets, True))
        scores, finite = step(inputs)
    if step.rounds == 1:  # a property of the network: checked in the first round it is scored
        _warn_unranked(targets, scores)
    arrays = [views.array(s) for s in scores]
    return FiniteScores(arrays) if np.asarray(finite).all() else arrays


def _synflow_step(model, targets, rescale):
    """A compiled step: the scores of the network with every parameter made non-negative."""
    engine = engines.current()  # chosen here, not inside the traced step

    def step(inputs):
        values = [ops.abs(t.value) for t in targets]
        if rescale:
            values = rescaled(values, targets)

        def flow(values):
            with flow_network(model, targets, values):
                outputs = model(inputs, training=False)
            return sum(ops.sum(o) for o in keras.tree.flatten(outputs)), None

        _, _, grads = engine.value_and_gradients(flow, values)
        scores = [v * g for v, g in zip(values, grads)]
        # A tensor's sum is finite only if every entry is (one pass, no boolean tensor). The
        # scores are non-negative and a tensor's sum is at most R (synaptic flow is conserved
        # across a layer), so with a finite R the sum does not overflow on finite scores.
        return scores, ops.stack([ops.isfinite(ops.sum(s)) for s in scores])

    return Step(step, model.variables)


def _kept_range(scores, mask):
    """``(highest, lowest, count)`` of the scores of the kept weights (all weights if unmasked)."""
    def number(x):  # through NumPy: a PyTorch tensor may still require gradients
        return ops.convert_to_numpy(x).item()

    if mask is None:
        return number(ops.max(scores)), number(ops.min(scores)), int(np.prod(scores.shape))
    kept = ops.not_equal(mask.value, 0)
    return (number(ops.max(ops.where(kept, scores, -np.inf))), number(ops.min(ops.where(kept, scores, np.inf))),
            int(number(ops.sum(ops.cast(kept, "int32")))))


def _warn_unranked(targets, scores):
    """Warns naming the targets whose kept weights (two or more) all have the same score."""
    unranked = []
    for t, s in zip(targets, scores):
        highest, lowest, count = _kept_range(s, t.mask)
        if count >= 2 and np.isfinite(highest) and highest == lowest:  # non-finite: masks.check_scores
            unranked.append(f"{t.name} (all {count} kept weights score {highest:.3g})")
    if unranked:
        warnings.warn(
            f"SynFlow cannot rank the weights of {len(unranked)} tensor(s): {', '.join(unranked)}. Their "
            "masks are decided by ties (the earliest weights are kept), not by synaptic flow: no flow "
            "from the all-ones input reaches them, or it is the same for every weight. Prune these "
            "tensors by another criterion, or leave them out with a policy.",
            UserWarning,
            stacklevel=2,
        )
