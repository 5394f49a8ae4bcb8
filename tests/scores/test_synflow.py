"""SynFlow against its closed form on a bias-free ReLU MLP; numerics on deep networks."""

import keras
import numpy as np
import pytest
from helpers import L, residual_cnn, subclassed_mlp
from numpy_mlp import keras_mlp, synflow_closed_form

import tfprune

RNG = np.random.default_rng(2)
KERNELS = [RNG.normal(size=(5, 6)), RNG.normal(size=(6, 4)), RNG.normal(size=(4, 3))]


def test_synflow_equals_the_closed_form_without_rescaling():
    model = keras_mlp(KERNELS, use_bias=False)
    scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model), rescale=False)
    for s, e in zip(scores, synflow_closed_form(KERNELS)):
        np.testing.assert_allclose(s, e, rtol=1e-5)


def test_rescaling_multiplies_every_score_by_one_constant():
    model = keras_mlp(KERNELS, use_bias=False)
    targets = tfprune.prunable_weights(model)
    exact = np.concatenate([s.ravel() for s in tfprune.scores.synflow(model, targets, rescale=False)])
    scaled = np.concatenate([s.ravel() for s in tfprune.scores.synflow(model, targets, rescale=True)])
    ratio = scaled / exact
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)


def test_signs_and_weights_untouched_and_masked_weights_score_zero():
    model = tfprune.wrap(keras_mlp(KERNELS, use_bias=False))
    masks = [RNG.random(k.shape) < 0.5 for k in KERNELS]
    tfprune.apply_masks(model, masks)
    before = [v.numpy().copy() for v in model.weights]
    scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model), rescale=False)
    for s, e in zip(scores, synflow_closed_form([k * m for k, m in zip(KERNELS, masks)])):
        np.testing.assert_allclose(s, e, rtol=1e-5, atol=1e-12)
    for v, w in zip(model.weights, before):
        np.testing.assert_array_equal(v.numpy(), w)


def synflow_masks(build, rescale, compression=10, rounds=5):
    keras.utils.set_random_seed(0)
    return np.concatenate([m.ravel() for m in tfprune.get_masks(tfprune.prune_at_init(
        build(), "synflow", compression=compression, rounds=rounds, rescale=rescale, verbose=0))])


def plain_cnn():
    """Conv → BN → ReLU twice, then Dense: a chain of positively homogeneous layers at init."""
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for filters in (8, 16):
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(x)))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(x)))


def test_rescaling_keeps_the_ranking_of_a_homogeneous_chain():
    """Conv/BN/ReLU/Dense at the usual initialisation: rescaled masks equal the exact ones."""
    np.testing.assert_array_equal(synflow_masks(plain_cnn, True), synflow_masks(plain_cnn, False))


def test_auto_is_exact_when_the_exact_scores_are_finite():
    """On a residual network rescaling is only approximate; 'auto' stays exact where it can."""
    exact = synflow_masks(residual_cnn, False)
    np.testing.assert_array_equal(synflow_masks(residual_cnn, "auto"), exact)
    assert (synflow_masks(residual_cnn, True) != exact).sum() < 0.1 * exact.size


def deep_plain_net(depth=50, width=64):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((width,))
    x = inputs
    for i in range(depth - 1):
        x = L.Dense(width, activation="relu", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, L.Dense(10)(x))


def test_fifty_layer_net_overflows_without_rescaling_and_is_finite_with_it():
    model = deep_plain_net()
    targets = tfprune.prunable_weights(model)
    raw = tfprune.scores.synflow(model, targets, rescale=False)
    assert not all(np.isfinite(s).all() for s in raw)
    for rescale in (True, "auto"):
        scaled = tfprune.scores.synflow(model, targets, rescale=rescale)
        assert all(np.isfinite(s).all() and (s > 0).all() for s in scaled)
    pruned = tfprune.prune_at_init(model, "synflow", compression=100, rounds=10, verbose=0)
    assert tfprune.masks.collapsed_layers(tfprune.get_masks(pruned)) == []


def test_scores_are_marked_finite_only_when_every_entry_is():
    """Finite scores come as FiniteScores (from_scores then skips its NaN/inf pass); overflowing
    ones come as a plain list, and from_scores names the tensor."""
    model = deep_plain_net()
    targets = tfprune.prunable_weights(model)
    scaled = tfprune.scores.synflow(model, targets, rescale=True)
    assert isinstance(scaled, tfprune.masks.FiniteScores)
    assert all(np.isfinite(s).all() for s in scaled)
    raw = tfprune.scores.synflow(model, targets, rescale=False)
    assert type(raw) is list
    first_bad = next(t.name for t, s in zip(targets, raw) if not np.isfinite(s).all())
    with pytest.raises(ValueError, match=f"scores of {first_bad} contain"):
        tfprune.masks.from_scores(raw, sparsity=0.5, names=[t.name for t in targets])


def test_a_subclassed_model_is_scored_at_the_shape_it_was_built_with():
    model = subclassed_mlp(features=10)
    targets = tfprune.prunable_weights(model)
    scores = tfprune.scores.synflow(model, targets, input_shape=(10,))
    assert [s.shape for s in scores] == [t.shape for t in targets]
    for a, b in zip(tfprune.scores.synflow(model, targets), scores):
        np.testing.assert_array_equal(a, b)
