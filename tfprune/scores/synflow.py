"""SynFlow: iterative synaptic flow pruning (Tanaka, Kunin, Yamins and Ganguli, NeurIPS 2020).

Data-free. Every parameter is replaced by its absolute value (kernels, biases, batch-norm γ/β and
moving statistics), the network runs in inference mode on one all-ones input, ``R = Σ outputs``,
and ``s = w ⊙ ∂R/∂w`` for the effective weights ``w = |θ| ⊙ m`` (already ≥ 0). The absolute
values are substituted for the forward pass only (a ``keras.StatelessScope``): the model's weights
and signs never change, also on error.

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

import numpy as np
import tensorflow as tf
from keras import ops

from tfprune.scores.gradients import compiled, substitute
from tfprune.scores.registry import register


@register("synflow", default_rounds=100)
def synflow(model, targets, data=None, rescale="auto", input_shape=None):
    """SynFlow scores ``|θ ⊙ m| ⊙ ∂R/∂|θ ⊙ m|`` on an all-ones input.

    Args:
        model: The model (wrapped: its masks apply).
        targets: From :func:`tfprune.prunable_weights`.
        data: Unused (SynFlow is data-free).
        rescale: ``"auto"`` (exact scores, rescaled only if those are not finite), ``True`` or
            ``False`` (see the module docstring).
        input_shape: Shape of one input without the batch axis, for models that do not know it
            (subclassed models); one shape, or a list for several inputs.

    Returns:
        One float32 array per target (non-negative).

    Example:
        >>> pruned = tfprune.prune_at_init(model, "synflow", compression=100)  # 100 rounds
    """
    if rescale not in ("auto", True, False):
        raise ValueError(f"rescale must be 'auto', True or False, got {rescale!r}")
    inputs = _ones_inputs(model, input_shape)
    key = tuple(id(t.variable) for t in targets)
    overflowed = compiled(model, ("synflow_overflowed", key), lambda: [False])
    if rescale is not True and not (rescale == "auto" and overflowed[0]):
        step = compiled(model, ("synflow", key, False), lambda: _synflow_step(model, targets, False))
        scores = [np.asarray(s) for s in step(inputs)]
        if rescale is False or all(np.isfinite(s).all() for s in scores):
            return scores
        overflowed[0] = True
    step = compiled(model, ("synflow", key, True), lambda: _synflow_step(model, targets, True))
    return [np.asarray(s) for s in step(inputs)]


def _synflow_step(model, targets, rescale):
    """A compiled step: the scores of the network with every parameter made non-negative."""
    substituted = {id(t.variable) for t in targets} | {id(t.mask) for t in targets if t.mask is not None}
    others = [v for v in model.variables if id(v) not in substituted and v.dtype.startswith("float")]

    @tf.function(reduce_retracing=True)
    def step(inputs):
        values = [ops.abs(t.value) for t in targets]
        if rescale:
            values = [v * _fan_in_scale(v, t.kind) for v, t in zip(values, targets)]
        with tf.GradientTape() as tape:
            tape.watch(values)
            with substitute(targets, values, [(v, ops.abs(v.value)) for v in others]):
                outputs = model(inputs, training=False)
            flow = tf.add_n([tf.reduce_sum(o) for o in tf.nest.flatten(outputs)])
        return [v * g for v, g in zip(values, tape.gradient(flow, values))]

    return step


def _fan_in_scale(value, kind):
    """``1 / mean fan-in sum of |w|`` (the sum over the kernel's input axes, averaged over its
    outputs; for depthwise kernels over the spatial axes only); 1 for an all-zero kernel."""
    axes = list(range(len(value.shape) - 2)) if kind == "depthwise" else list(range(len(value.shape) - 1))
    mean_sum = ops.mean(ops.sum(value, axis=axes)) if axes else ops.mean(value)
    return ops.where(mean_sum > 0, 1.0 / ops.maximum(mean_sum, 1e-30), 1.0)


def _ones_inputs(model, input_shape):
    if input_shape is not None:
        shapes = input_shape if isinstance(input_shape[0], (tuple, list)) else [input_shape]
        ones = [tf.ones((1, *shape)) for shape in shapes]
        return ones[0] if len(ones) == 1 else ones
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"cannot tell the input shape of model {model.name!r}: pass input_shape= (one "
            "example's shape, without the batch axis)"
        )
    ones = [tf.ones((1, *x.shape[1:]), dtype=x.dtype) for x in inputs]
    return ones[0] if len(ones) == 1 else ones

