"""GraSP: gradient signal preservation (Wang, Zhang and Grosse, ICLR 2020).

The authors score ``S = −θ ⊙ (H g)`` and *remove* the highest; tfprune keeps the highest, so it
returns ``θ ⊙ (H g)`` (the same ranking), divided by ``|Σ θ ⊙ H g| + 1e-10`` as in their code.
``g = Σ_b ∂L_b/∂θ`` is accumulated first and held constant; ``H g`` is then
``Σ_b ∂(g · ∂L_b/∂θ)/∂θ`` by double backprop (nested ``tf.GradientTape``). Logits are divided
by a temperature ``T = 200`` before the loss. With ``reinit_dense=True`` the scores are computed
as if every Dense kernel were Glorot-normal initialised, as the authors' code does on a copy of
the network (the model's own weights are not changed).
"""

import keras
from keras import ops

from tfprune.scores.gradients import (effective_gradients, effective_values, hessian_gradient, normalised,
                                      scoring_batches)
from tfprune.scores.registry import register


@register("grasp", needs_data=True)
def grasp(model, targets, data, samples=None, batch_size=None, loss=None, from_logits=True,
          temperature=200.0, reinit_dense=False, seed=None, strategy=None):
    """GraSP scores ``θ ⊙ H g`` (keep the highest), normalised by ``|Σ| + 1e-10``.

    Args:
        model: The model (wrapped: its masks apply).
        targets: From :func:`tfprune.prunable_weights`.
        data: ``(x, y)`` arrays or a dataset of ``(x, y)`` batches.
        samples: Examples to use; default 10 × the number of classes.
        batch_size: Batch size for arrays; default all samples in one batch.
        loss: A Keras loss or callable; default sparse categorical cross-entropy.
        from_logits: For the default loss: score on the logits (``True``; a final softmax or
            sigmoid of the model is skipped for the score) or on the outputs taken as
            probabilities (``False``).
            The temperature divides logits: with ``from_logits=False`` it must be 1.
        temperature: Logits are divided by it before the loss (the authors' 200).
        reinit_dense: Score with Glorot-normal Dense kernels, as the authors' code does.
        seed: Seed of that re-initialisation.
        strategy: A ``tf.distribute`` strategy to score under; default the one the model was
            built under (gradients and Hessian-vector products all-reduced over its replicas).

    Returns:
        One float32 array per target.

    Raises:
        ValueError: for a temperature other than 1 with ``from_logits=False``.

    Example:
        >>> pruned = tfprune.prune_at_init(model, "grasp", sparsity=0.9, data=(x[:100], y[:100]))
    """
    if not from_logits and temperature != 1:
        raise ValueError("GraSP's temperature divides logits: use a model with logit outputs, or temperature=1")
    batches = scoring_batches(model, data, samples, batch_size, class_ids=loss is None)
    values = effective_values(targets)
    if reinit_dense:
        values = _glorot_dense(targets, values, seed)
    options = dict(loss=loss, from_logits=from_logits, values=values, temperature=temperature, strategy=strategy)
    g = effective_gradients(model, targets, batches, **options)
    hg = hessian_gradient(model, targets, batches, g, **options)
    return normalised([w * h for w, h in zip(values, hg)], absolute_sum=True, epsilon=1e-10)


def _glorot_dense(targets, values, seed):
    """Glorot-normal draws for the kernels of Dense layers, masked; other values unchanged."""
    init = keras.initializers.GlorotNormal(seed=seed)
    out = []
    for t, v in zip(targets, values):
        if isinstance(t.layer, keras.layers.Dense) and t.kind == "dense":
            fresh = init(t.shape, dtype=t.variable.dtype)
            v = fresh if t.mask is None else ops.multiply(fresh, t.mask.value)
        out.append(v)
    return out
