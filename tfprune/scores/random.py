"""Random: i.i.d. standard-normal scores, reproducible from a seed."""

import numpy as np

from tfprune.scores.registry import register


@register("random")
def random(model, targets, data=None, seed=None):
    """Scores each weight with an independent N(0, 1) draw.

    Args:
        model: Unused.
        targets: From :func:`tfprune.prunable_weights`.
        data: Unused.
        seed: Seed of NumPy's generator: the same seed gives the same scores.

    Returns:
        One float32 array per target.

    Example:
        >>> scores = tfprune.scores.random(model, targets, None, seed=0)
    """
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(t.shape).astype(np.float32) for t in targets]
