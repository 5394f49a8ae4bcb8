"""Magnitude: s = |θ| of the weight as the network sees it (masked weights score 0)."""

from keras import ops

from tfprune.scores.registry import register


@register("magnitude")
def magnitude(model, targets, data=None):
    """Scores each weight by its absolute value.

    Args:
        model: The model (unused: the targets carry the weights).
        targets: From :func:`tfprune.prunable_weights`.
        data: Unused.

    Returns:
        One tensor ``|θ ⊙ m|`` per target.

    Example:
        >>> scores = tfprune.scores.magnitude(model, tfprune.prunable_weights(model), None)
    """
    return [ops.abs(t.value) for t in targets]
