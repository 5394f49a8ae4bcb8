"""SNIP: connection sensitivity (Lee, Ajanthan and Torr, ICLR 2019), and iterative SNIP.

``s = |w ⊙ Σ_b g_b|`` with ``w = θ ⊙ m`` the effective weights and ``g_b = ∂L_b/∂w`` the
gradient of batch ``b``'s mean loss: the signed gradients are summed over batches first and the
absolute value taken after, as in the SynFlow paper's reference code (the official SNIP uses one
batch). Scores are divided by their sum over all weights. That normalisation — which reviewers
of the paper asked about — changes no ranking, global or local: it only makes scores comparable
across runs and models. It does not make layers comparable in any deeper sense, and it does not
protect a layer from being pruned away.

Iterative SNIP (de Jorge et al., ICLR 2021) is the same score over rounds on the masked network:
a pruned weight has ``w = 0``, scores 0, and stays pruned.

Batch norm, as in each method's own code: SNIP's official code (TensorFlow) scores with
``is_train=False``, so batch norm uses its moving statistics (``batch_statistics=False``);
iterative SNIP's (the FORCE code, PyTorch) never leaves ``train()`` mode, so batch norm
normalises each scoring batch by its own statistics (``batch_statistics=True``; moving averages
are not updated).
"""

from keras import ops

from tfprune.autodiff import losses
from tfprune.autodiff.batches import scoring_batches
from tfprune.autodiff.gradients import effective_gradients, effective_values, normalised
from tfprune.scores.registry import register


@register("snip", needs_data=True)
def snip(model, targets, data, samples=None, batch_size=None, loss=None, from_logits=True, strategy=None,
         batch_statistics=False):
    """SNIP scores ``|w ⊙ Σ_b ∂L_b/∂w|``, normalised to sum 1.

    Args:
        model: The model (wrapped: its masks apply).
        targets: From :func:`tfprune.prunable_weights`.
        data: Data as ``model.fit`` takes it: ``(x, y)`` or ``(x, y, sample_weight)`` arrays (``x``
            a list or dict of arrays for several inputs) or a dataset of such batches
            (:mod:`tfprune.autodiff.batches`).
        samples: Examples to use; default 10 × the number of classes.
        batch_size: Batch size for arrays; default all samples in one batch.
        loss: A Keras loss, its name or a callable ``(y_true, y_pred)``; default the model's
            compiled loss (``model.compute_loss``: loss dicts, ``loss_weights`` and sample weights
            as in ``fit``), or sparse categorical cross-entropy for an uncompiled model
            (:mod:`tfprune.autodiff.losses`).
        from_logits: For the default loss: score on the logits (``True``; a final softmax or
            sigmoid of the model is skipped for the score) or on the outputs taken as
            probabilities (``False``).
        strategy: A ``tf.distribute`` strategy to score under; default the one the model was
            built under. Each batch is split across its replicas and the gradients all-reduced,
            so every replica and worker gets the global batch's scores.
        batch_statistics: Batch norm normalises each batch by its own statistics, differentiated
            through (PyTorch's ``train()`` mode); default its moving statistics, as SNIP's code.

    Returns:
        One float32 array per target.

    Example:
        >>> pruned = tfprune.prune_at_init(model, "snip", sparsity=0.98, data=(x[:100], y[:100]))
        >>> pruned = tfprune.prune_at_init(bert, "snip", sparsity=0.5, data=({"token_ids": t, "padding_mask": m,
        ...                                "segment_ids": s}, y), samples=64)
    """
    loss = losses.resolve(model, loss, from_logits)
    batches = scoring_batches(model, data, samples, batch_size, loss=loss)
    values = effective_values(targets)
    grads = effective_gradients(model, targets, batches, loss, from_logits, values, strategy=strategy,
                                batch_statistics=batch_statistics)
    return normalised([ops.abs(w * g) for w, g in zip(values, grads)])


@register("iter_snip", needs_data=True, default_rounds=60)
def iter_snip(model, targets, data, samples=None, batch_size=None, loss=None, from_logits=True, strategy=None,
              batch_statistics=True):
    """Iterative SNIP's round: :func:`snip`'s score, with batch norm on batch statistics by default.

    Args and Returns as :func:`snip`; ``batch_statistics`` defaults to ``True``, as the FORCE
    code that iterative SNIP comes from (``train()`` mode).

    Example:
        >>> pruned = tfprune.prune_at_init(model, "iter_snip", sparsity=0.995, data=(x[:100], y[:100]))
    """
    return snip(model, targets, data, samples, batch_size, loss, from_logits, strategy, batch_statistics)
