"""SNIP, iterative SNIP and FORCE against a NumPy float64 re-derivation."""

import numpy as np
import pytest
from helpers import assert_equal_but_rounding
from numpy_mlp import grads, keras_mlp

import tfprune

RNG = np.random.default_rng(0)
W = [RNG.normal(size=(5, 7)), RNG.normal(size=7) * 0.1, RNG.normal(size=(7, 3)), RNG.normal(size=3) * 0.1]
X = RNG.normal(size=(12, 5)).astype("float32")
Y = RNG.integers(0, 3, 12)


def summed_grads(kernels, batch_size):
    parts = [grads(kernels, W[1::2], X[i:i + batch_size], Y[i:i + batch_size]) for i in range(0, len(X), batch_size)]
    return [sum(p[j] for p in parts) for j in range(len(kernels))]


def normalise(scores):
    total = sum(s.sum() for s in scores)
    return [s / total for s in scores]


@pytest.mark.parametrize("batch_size", [12, 4])
def test_snip_is_normalised_abs_of_summed_signed_gradients(batch_size):
    """SNIP = |θ ⊙ Σ_b g_b| / Σ (signed sum over batches first)."""
    model = keras_mlp(W)
    targets = tfprune.prunable_weights(model)
    scores = tfprune.scores.snip(model, targets, (X, Y), batch_size=batch_size)
    g = summed_grads(W[0::2], batch_size)
    expected = normalise([np.abs(k * gk) for k, gk in zip(W[0::2], g)])
    for s, e in zip(scores, expected):
        np.testing.assert_allclose(s, e, rtol=2e-4, atol=1e-9)


def masked_model():
    model = tfprune.wrap(keras_mlp(W))
    masks = [RNG.random(k.shape) < 0.6 for k in W[0::2]]
    tfprune.apply_masks(model, masks)
    return model, masks


def test_snip_and_force_on_a_masked_network():
    """With masks: SNIP = |w ⊙ g(w)| with w = θ⊙m; FORCE = |θ ⊙ g(w)|, non-zero at pruned weights."""
    model, masks = masked_model()
    targets = tfprune.prunable_weights(model)
    effective = [k * m for k, m in zip(W[0::2], masks)]
    g = summed_grads(effective, 12)
    snip = tfprune.scores.snip(model, targets, (X, Y))
    force = tfprune.scores.force(model, targets, (X, Y))
    for s, f, e, k, gk, m in zip(snip, force, normalise([np.abs(w * gk) for w, gk in zip(effective, g)]),
                                 W[0::2], g, masks):
        np.testing.assert_allclose(s, e, rtol=2e-4, atol=1e-9)
        assert np.all(s[~m] == 0)
        expected_force = np.abs(k * gk)
        np.testing.assert_allclose(f, expected_force / sum(np.abs(kk * gg).sum() for kk, gg in zip(W[0::2], g)),
                                   rtol=2e-4, atol=1e-9)
        assert (f[~m] > 0).mean() > 0.5  # FORCE sees pruned weights (but not those behind dead ReLUs)


def flat_masks(model):
    return np.concatenate([m.ravel() for m in tfprune.get_masks(model)])


def test_force_equals_iterative_snip_on_the_first_round_and_differs_afterwards():
    kwargs = dict(sparsity=0.8, data=(X, Y), verbose=0)
    one = [flat_masks(tfprune.prune_at_init(keras_mlp(W), m, rounds=1, **kwargs)) for m in ("iter_snip", "force")]
    np.testing.assert_array_equal(*one)
    many = [flat_masks(tfprune.prune_at_init(keras_mlp(W), m, rounds=6, **kwargs)) for m in ("iter_snip", "force")]
    assert (many[0] != many[1]).any()
    assert all(m.sum() == int(np.floor(0.2 * m.size + 0.5)) for m in many)


def test_iterative_snip_and_force_default_to_60_rounds():
    assert tfprune.scores.get("iter_snip").default_rounds == 60
    assert tfprune.scores.get("force").default_rounds == 60 and not tfprune.scores.get("force").keeps_pruned


def test_dataset_input_reads_exactly_the_samples_asked_for():
    """A dataset of batches is read until `samples` examples: the result equals the arrays' score."""
    import tensorflow as tf

    model = keras_mlp(W)
    targets = tfprune.prunable_weights(model)
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(5)  # 5 + 5 + 2 of the first 12
    from_dataset = tfprune.scores.snip(model, targets, dataset, samples=12)
    g = [sum(p[j] for p in [grads(W[0::2], W[1::2], X[a:b], Y[a:b]) for a, b in ((0, 5), (5, 10), (10, 12))]) for j in range(2)]
    expected = normalise([np.abs(k * gk) for k, gk in zip(W[0::2], g)])
    for s, e in zip(from_dataset, expected):
        np.testing.assert_allclose(s, e, rtol=2e-4, atol=1e-9)


def test_softmax_outputs_with_from_logits_false():
    """A model ending in softmax scores like the logits model with from_logits=True."""
    import keras

    logits_model = keras_mlp(W)
    softmax_model = keras.Model(logits_model.inputs, keras.layers.Softmax()(logits_model.outputs[0]))
    a = tfprune.scores.snip(logits_model, tfprune.prunable_weights(logits_model), (X, Y))
    b = tfprune.scores.snip(softmax_model, tfprune.prunable_weights(softmax_model), (X, Y), from_logits=False)
    for s, t in zip(a, b):
        np.testing.assert_allclose(s, t, rtol=1e-3, atol=1e-8)


def bn_net():
    """Dense(7) -> BatchNormalization (moving statistics away from the batch's) -> ReLU -> Dense(3)."""
    import keras

    inputs = keras.Input((5,))
    x = keras.layers.Dense(7, name="d0")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="d1")(keras.layers.ReLU()(x)))
    model.get_layer("d0").set_weights(W[:2])
    model.get_layer("d1").set_weights(W[2:])
    model.get_layer("bn").set_weights([np.ones(7), np.zeros(7), np.full(7, 3.0), np.full(7, 9.0)])
    return model


def test_batch_norm_statistics_follow_each_methods_code():
    """SNIP scores with moving statistics (its code's is_train=False); iterative SNIP and FORCE with
    the batch's (their code's train() mode). The moving statistics are far from the batch's, so
    the two modes give different scores."""
    model = bn_net()
    targets = tfprune.prunable_weights(model)
    moving = tfprune.scores.snip(model, targets, (X, Y))
    batch = tfprune.scores.snip(model, targets, (X, Y), batch_statistics=True)
    assert np.abs(moving[0] - batch[0]).max() > 0.1 * np.abs(batch[0]).max()
    for method in (tfprune.scores.iter_snip, tfprune.scores.force):  # equal to SNIP on an unmasked network
        assert_equal_but_rounding(method(model, targets, (X, Y)), batch)
        assert_equal_but_rounding(method(model, targets, (X, Y), batch_statistics=False), moving)


@pytest.mark.parametrize("absolute_sum", [False, True])
def test_normalised_divides_by_the_float64_sum_and_marks_finite_scores(absolute_sum):
    """Signed float32 scores over two tensors: each divided by the float64 sum (or |sum| + ε), as
    float32, and marked finite; a NaN comes back undivided, unmarked, and is then named."""
    from tfprune.autodiff.gradients import normalised

    scores = [RNG.normal(size=(40, 30)).astype("float32"), RNG.normal(size=7).astype("float32") + 0.5]
    total = sum(float(s.astype(np.float64).sum()) for s in scores)
    denominator = abs(total) + 1e-10 if absolute_sum else total
    got = normalised(scores, absolute_sum=absolute_sum, epsilon=1e-10 if absolute_sum else 0.0)
    assert isinstance(got, tfprune.masks.FiniteScores)
    for g, s in zip(got, scores):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, s.astype(np.float64) / denominator, rtol=1e-6)
    scores[1][3] = np.nan
    bad = normalised(scores)
    assert type(bad) is list and np.array_equal(bad[0], scores[0])
    with pytest.raises(ValueError, match="scores of b contain 1 NaN"):
        tfprune.masks.from_scores(bad, sparsity=0.5, names=["a", "b"])
