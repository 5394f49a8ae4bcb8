"""GraSP: Hg against central finite differences of a NumPy float64 gradient, and its sign."""

import numpy as np
import pytest
from numpy_mlp import grads, keras_mlp

import tfprune

RNG = np.random.default_rng(1)
W = [RNG.normal(size=(4, 6)) * 0.7, RNG.normal(size=6) * 0.1, RNG.normal(size=(6, 3)) * 0.7, RNG.normal(size=3) * 0.1]
X = RNG.normal(size=(16, 4)).astype("float32")
Y = RNG.integers(0, 3, 16)


def numpy_grasp(kernels, temperature, eps=1e-4):
    """θ ⊙ Hg / (|Σ θ⊙Hg| + 1e-10), Hg by central differences of the float64 gradient along g."""
    g = grads(kernels, W[1::2], X, Y, "tanh", temperature)
    plus = grads([k + eps * gk for k, gk in zip(kernels, g)], W[1::2], X, Y, "tanh", temperature)
    minus = grads([k - eps * gk for k, gk in zip(kernels, g)], W[1::2], X, Y, "tanh", temperature)
    hg = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
    raw = [k * h for k, h in zip(kernels, hg)]
    return [r / (abs(sum(x.sum() for x in raw)) + 1e-10) for r in raw]


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_matches_finite_differences(temperature):
    model = keras_mlp(W, activation="tanh")
    scores = tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), temperature=temperature)
    for s, e in zip(scores, numpy_grasp(W[0::2], temperature)):
        np.testing.assert_allclose(s, e, rtol=2e-3, atol=2e-5 * np.abs(e).max())


def gradient_norm(kernels):
    return sum((g**2).sum() for g in grads(kernels, W[1::2], X, Y, "tanh", 1.0))


def test_grasp_sign_removing_the_highest_minus_theta_hg_preserves_gradient_flow():
    """Removing the weights GraSP removes (the highest −θ⊙Hg, i.e. the lowest kept score) keeps a
    larger gradient norm than removing those it keeps: the sign is the authors'."""
    model = keras_mlp(W, activation="tanh")
    scores = tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), temperature=1.0)
    flat = np.concatenate([s.ravel() for s in scores])
    kernels = W[0::2]
    sizes = np.cumsum([k.size for k in kernels])[:-1]

    def remove(indices):
        keep = np.ones(flat.size, bool)
        keep[indices] = False
        return [k * m.reshape(k.shape) for k, m in zip(kernels, np.split(keep, sizes))]

    order = np.argsort(flat)
    pruned_by_grasp = gradient_norm(remove(order[:3]))   # lowest θ⊙Hg = highest −θ⊙Hg
    pruned_against = gradient_norm(remove(order[-3:]))
    assert pruned_by_grasp > gradient_norm(kernels) > pruned_against
    masks = tfprune.get_masks(tfprune.prune_at_init(keras_mlp(W, activation="tanh"), "grasp", data=(X, Y),
                                                    sparsity=3 / flat.size, temperature=1.0, verbose=0))
    removed = np.flatnonzero(~np.concatenate([m.ravel() for m in masks]))
    np.testing.assert_array_equal(np.sort(removed), np.sort(order[:3]))


def test_reinit_dense_scores_with_glorot_kernels_but_leaves_weights():
    model = keras_mlp(W, activation="tanh")
    targets = tfprune.prunable_weights(model)
    before = [v.numpy().copy() for v in model.weights]
    a = tfprune.scores.grasp(model, targets, (X, Y), reinit_dense=True, seed=3)
    b = tfprune.scores.grasp(model, targets, (X, Y), reinit_dense=True, seed=3)
    c = tfprune.scores.grasp(model, targets, (X, Y))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], c[0])
    for v, w in zip(model.weights, before):
        np.testing.assert_array_equal(v.numpy(), w)


def test_temperature_needs_logits():
    model = keras_mlp(W)
    with pytest.raises(ValueError, match="temperature divides logits"):
        tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), from_logits=False)
