"""The magnitude scorer: |θ ⊙ m|."""

import numpy as np
from helpers import residual_cnn

import tfprune


def test_magnitude_is_absolute_masked_weight():
    model = tfprune.wrap(residual_cnn())
    targets = tfprune.prunable_weights(model)
    mask = np.random.default_rng(1).random(targets[0].shape) < 0.5
    tfprune.apply_masks(model, {targets[0].name: mask})
    scores = tfprune.scores.magnitude(model, targets)
    np.testing.assert_array_equal(scores[0], np.abs(targets[0].variable.numpy() * mask))
    for s, t in zip(scores[1:], targets[1:]):
        np.testing.assert_array_equal(s, np.abs(t.variable.numpy()))


def test_magnitude_global_masks_match_numpy_top_k():
    """prune_at_init('magnitude') keeps exactly the floor(d·N+½) largest |θ| over all layers."""
    model = residual_cnn()
    weights = [t.variable.numpy() for t in tfprune.prunable_weights(model)]
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.8, verbose=0)
    flat = np.concatenate([np.abs(w).ravel() for w in weights]).astype(np.float64)
    k = int(np.floor(0.2 * flat.size + 0.5))
    order = np.lexsort((np.arange(flat.size), -flat))
    expected = np.zeros(flat.size, bool)
    expected[order[:k]] = True
    got = np.concatenate([m.ravel() for m in tfprune.get_masks(pruned)])
    np.testing.assert_array_equal(got, expected)


def test_magnitude_local_scope_prunes_each_tensor_to_the_same_density():
    model = residual_cnn()
    weights = [t.variable.numpy() for t in tfprune.prunable_weights(model)]
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.5, scope="local", verbose=0)
    for w, m in zip(weights, tfprune.get_masks(pruned)):
        k = int(np.floor(0.5 * w.size + 0.5))
        assert m.sum() == k
        assert np.abs(w[m]).min() >= np.abs(w[~m]).max()
