"""The random scorer: seeded N(0, 1) scores."""

import numpy as np
from helpers import residual_cnn

import tfprune


def test_random_scores_are_numpy_normal_draws_in_target_order():
    model = residual_cnn()
    targets = tfprune.prunable_weights(model)
    scores = tfprune.scores.random(model, targets, seed=7)
    rng = np.random.default_rng(7)
    for s, t in zip(scores, targets):
        np.testing.assert_array_equal(s, rng.standard_normal(t.shape).astype(np.float32))


def test_same_seed_same_masks_other_seed_other_masks():
    def masks(seed):
        return np.concatenate([m.ravel() for m in tfprune.get_masks(
            tfprune.prune_at_init(residual_cnn(), "random", sparsity=0.7, seed=seed, verbose=0))])

    a, b, c = masks(3), masks(3), masks(4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).sum() > 100
