"""FORCE: foresight connection sensitivity (de Jorge et al., ICLR 2021).

``s = |θ ⊙ Σ_b ∂L_b(θ ⊙ m)/∂(θ ⊙ m)|``: the gradient is taken at the masked network but not
blocked at pruned weights, and multiplies the *dense* weights ``θ``, so a pruned weight whose
gradient has grown can come back in a later round. On the first round (no mask yet) FORCE equals
SNIP. The authors ran 60 rounds of the exponential schedule.

Their code never leaves PyTorch's ``train()`` mode, so batch norm normalises each scoring batch by
its own statistics; tfprune does the same by default (``batch_statistics=True``), without
updating the moving averages.
"""

from keras import ops

from tfprune.autodiff import losses
from tfprune.autodiff.batches import scoring_batches
from tfprune.autodiff.gradients import effective_gradients, normalised
from tfprune.scores.registry import register


@register("force", needs_data=True, keeps_pruned=False, default_rounds=60)
def force(model, targets, data, samples=None, batch_size=None, loss=None, from_logits=True, strategy=None,
          batch_statistics=True):
    """FORCE scores ``|θ ⊙ ∂L/∂(θ ⊙ m)|``, normalised to sum 1.

    Args:
        model: The model (wrapped: its masks apply to the forward pass).
        targets: From :func:`tfprune.prunable_weights`.
        data: Data as ``model.fit`` takes it (see :func:`tfprune.scores.snip`).
        samples: Examples to use per round; default 10 × the number of classes.
        batch_size: Batch size for arrays; default all samples in one batch.
        loss: As for :func:`tfprune.scores.snip`: default the model's compiled loss.
        from_logits: For the default loss: score on the logits (``True``; a final softmax or
            sigmoid of the model is skipped for the score) or on the outputs taken as
            probabilities (``False``).
        strategy: A ``tf.distribute`` strategy to score under; default the one the model was
            built under. Each batch is split across its replicas and the gradients all-reduced,
            so every replica and worker gets the global batch's scores.
        batch_statistics: Batch norm normalises each batch by its own statistics, differentiated
            through (the authors' ``train()`` mode); ``False`` uses its moving statistics.

    Returns:
        One float32 array per target.

    Example:
        >>> pruned = tfprune.prune_at_init(model, "force", sparsity=0.995, data=(x[:100], y[:100]))
    """
    loss = losses.resolve(model, loss, from_logits)
    batches = scoring_batches(model, data, samples, batch_size, loss=loss)
    grads = effective_gradients(model, targets, batches, loss, from_logits, strategy=strategy,
                                batch_statistics=batch_statistics)
    return normalised([ops.abs(t.variable.value * g) for t, g in zip(targets, grads)])
