"""GraSP: Hg against central finite differences of a NumPy float64 gradient (with batch norm on
batch or moving statistics), its sign, the authors' defaults."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_equal_but_rounding, assert_unchanged, snapshot
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
    scores = tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), temperature=temperature,
                                  reinit_dense=False)
    for s, e in zip(scores, numpy_grasp(W[0::2], temperature)):
        np.testing.assert_allclose(s, e, rtol=2e-3, atol=2e-5 * np.abs(e).max())


def gradient_norm(kernels):
    return sum((g**2).sum() for g in grads(kernels, W[1::2], X, Y, "tanh", 1.0))


def test_grasp_sign_removing_the_highest_minus_theta_hg_preserves_gradient_flow():
    """Removing the weights GraSP removes (the highest −θ⊙Hg, i.e. the lowest kept score) keeps a
    larger gradient norm than removing those it keeps: the sign is the authors'."""
    model = keras_mlp(W, activation="tanh")
    scores = tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), temperature=1.0, reinit_dense=False)
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
                                                    sparsity=3 / flat.size, temperature=1.0, reinit_dense=False,
                                                    verbose=0))
    removed = np.flatnonzero(~np.concatenate([m.ravel() for m in masks]))
    np.testing.assert_array_equal(np.sort(removed), np.sort(order[:3]))


def test_reinit_dense_scores_with_glorot_kernels_but_leaves_weights():
    model = keras_mlp(W, activation="tanh")
    targets = tfprune.prunable_weights(model)
    before = snapshot(model)
    a = tfprune.scores.grasp(model, targets, (X, Y), reinit_dense=True, seed=3)
    b = tfprune.scores.grasp(model, targets, (X, Y), reinit_dense=True, seed=3)
    c = tfprune.scores.grasp(model, targets, (X, Y), reinit_dense=False)
    assert_equal_but_rounding(a, b, rtol=2e-4)
    assert not np.allclose(a[0], c[0])
    assert_unchanged(model, before)


def test_temperature_needs_logits():
    model = keras_mlp(W)
    with pytest.raises(ValueError, match="temperature divides logits"):
        tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), from_logits=False)


# --- Batch norm: the scoring batch's statistics, as the authors' train() mode -------------------

BN_EPSILON = 1e-3
BN = dict(gamma=1 + 0.3 * RNG.normal(size=6), beta=0.2 * RNG.normal(size=6),
          mean=0.5 * RNG.normal(size=6), variance=0.5 + RNG.random(6))


def keras_bn_net():
    """Dense(6) -> BatchNormalization -> tanh -> Dense(3), with W's weights and BN's parameters."""
    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, name="d0")(inputs)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="bn")(x)
    x = keras.layers.Activation("tanh")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="d1")(x))
    model.get_layer("d0").set_weights([W[0], W[1]])
    model.get_layer("bn").set_weights([BN["gamma"], BN["beta"], BN["mean"], BN["variance"]])
    model.get_layer("d1").set_weights([W[2], W[3]])
    return model


def _cross_entropy(h, kernel, x, y):
    logits = h @ kernel + W[3]
    logits = logits - logits.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(y)), y]))


def bn_loss(kernels, x, y, batch_statistics):
    """Mean softmax cross-entropy of the float64 network, batch norm on x's or the moving statistics."""
    z = x.astype(np.float64) @ kernels[0] + W[1]
    mean, variance = (z.mean(0), z.var(0)) if batch_statistics else (BN["mean"], BN["variance"])
    return _cross_entropy(np.tanh((z - mean) / np.sqrt(variance + BN_EPSILON) * BN["gamma"] + BN["beta"]),
                          kernels[1], x, y)


def fd_gradient(loss, kernels, x, y, eps=1e-6):
    """Central differences of ``loss(kernels, x, y)`` in every kernel entry."""
    out = []
    for i, k in enumerate(kernels):
        g = np.zeros_like(k)
        for index in np.ndindex(k.shape):
            shifted = [[c.copy() for c in kernels] for _ in (0, 1)]
            shifted[0][i][index] += eps
            shifted[1][i][index] -= eps
            g[index] = (loss(shifted[0], x, y) - loss(shifted[1], x, y)) / (2 * eps)
        out.append(g)
    return out


def numpy_grasp_in_halves(loss, kernels, eps=1e-4):
    """GraSP as the authors compute it: the batch split in halves, g = Σ_h ∇L_h, Hg = Σ_h H_h g."""
    kernels = [k.astype(np.float64) for k in kernels]
    halves = [(X[:8], Y[:8]), (X[8:], Y[8:])]
    g = [sum(parts) for parts in zip(*(fd_gradient(loss, kernels, x, y) for x, y in halves))]
    hg = [np.zeros_like(k) for k in kernels]
    for x, y in halves:
        plus = fd_gradient(loss, [k + eps * gk for k, gk in zip(kernels, g)], x, y)
        minus = fd_gradient(loss, [k - eps * gk for k, gk in zip(kernels, g)], x, y)
        hg = [h + (p - m) / (2 * eps) for h, p, m in zip(hg, plus, minus)]
    raw = [k * h for k, h in zip(kernels, hg)]
    return [r / (abs(sum(a.sum() for a in raw)) + 1e-10) for r in raw]


def numpy_grasp_bn(batch_statistics):
    return numpy_grasp_in_halves(lambda k, x, y: bn_loss(k, x, y, batch_statistics), [W[0], W[2]])


@pytest.mark.parametrize("batch_statistics", [True, False])
def test_grasp_with_batch_norm_matches_finite_differences(batch_statistics):
    model = keras_bn_net()
    bn = model.get_layer("bn")
    before = snapshot(model)
    scores = tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), temperature=1.0, reinit_dense=False,
                                  batch_statistics=batch_statistics)
    for s, e in zip(scores, numpy_grasp_bn(batch_statistics)):
        np.testing.assert_allclose(s, e, rtol=2e-3, atol=2e-4 * np.abs(e).max())
    assert_unchanged(model, before)  # the moving averages too: scoring updates nothing
    np.testing.assert_array_equal(bn.moving_mean.numpy(), BN["mean"].astype("float32"))
    assert "call" not in vars(bn)  # the batch-statistics change is undone


# --- Layer and group normalisation: the second derivative through the mean inside the variance ----

MID = [RNG.normal(size=(6, 6)) * 0.7, RNG.normal(size=6) * 0.1]


def normalization_loss(kernels, x, y, groups):
    """The float64 Dense(6) → tanh → Dense(6) → normalisation over ``groups`` groups of features
    (1: LayerNormalization) → tanh → Dense(3) network."""
    z = np.tanh(x.astype(np.float64) @ kernels[0] + W[1]) @ kernels[1] + MID[1]
    grouped = z.reshape(len(z), groups, -1)
    normalised = ((grouped - grouped.mean(2, keepdims=True))
                  / np.sqrt(grouped.var(2, keepdims=True) + BN_EPSILON)).reshape(z.shape)
    return _cross_entropy(np.tanh(normalised * BN["gamma"] + BN["beta"]), kernels[2], x, y)


@pytest.mark.parametrize("groups", [1, 2])
def test_grasp_through_layer_and_group_normalization_matches_finite_differences(groups):
    """Through a ``LayerNormalization`` (``groups`` = 1) or a ``GroupNormalization`` fed by a
    nonlinear path (so the Hessian-vector direction does not sum to zero over the features), the
    Hessian term is exact on TensorFlow too: the second derivative goes through the mean inside the
    variance, where ``tf.nn.moments`` stops the gradient; Keras's own moments are back in place
    afterwards."""
    from keras.src.backend.tensorflow import nn as tensorflow_nn  # only to check that it is restored

    original = tensorflow_nn._compute_moments
    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, activation="tanh", name="d0")(inputs)
    norm = (keras.layers.LayerNormalization(epsilon=BN_EPSILON, name="norm") if groups == 1 else
            keras.layers.GroupNormalization(groups, epsilon=BN_EPSILON, name="norm"))
    x = norm(keras.layers.Dense(6, name="mid")(x))
    model = keras.Model(inputs, keras.layers.Dense(3, name="d1")(keras.layers.Activation("tanh")(x)))
    for name, weights in (("d0", W[:2]), ("mid", MID), ("norm", [BN["gamma"], BN["beta"]]), ("d1", W[2:])):
        model.get_layer(name).set_weights(weights)
    scores = tfprune.scores.grasp(model, tfprune.prunable_weights(model), (X, Y), temperature=1.0, reinit_dense=False)
    oracle = numpy_grasp_in_halves(lambda k, x, y: normalization_loss(k, x, y, groups), [W[0], MID[0], W[2]])
    for s, e in zip(scores, oracle):
        np.testing.assert_allclose(s, e, rtol=2e-3, atol=2e-4 * np.abs(e).max())
    assert tensorflow_nn._compute_moments is original


def test_batch_and_moving_statistics_give_different_scores():
    """The two oracles differ, so each test above can only pass in its own mode."""
    a, b = numpy_grasp_bn(True), numpy_grasp_bn(False)
    assert max(np.abs(x - y).max() / np.abs(x).max() for x, y in zip(a, b)) > 0.05


def test_defaults_are_the_authors_two_halves_and_reinit():
    """Default GraSP = explicit halves (batch_size = n // 2), batch statistics, Glorot Dense kernels."""
    model = keras_bn_net()
    targets = tfprune.prunable_weights(model)
    default = tfprune.scores.grasp(model, targets, (X, Y), seed=4)
    explicit = tfprune.scores.grasp(model, targets, (X, Y), batch_size=8, batch_statistics=True, reinit_dense=True,
                                    temperature=200.0, seed=4)
    one_batch = tfprune.scores.grasp(model, targets, (X, Y), batch_size=16, seed=4)
    assert_equal_but_rounding(default, explicit, rtol=2e-4)
    assert not np.allclose(default[0], one_batch[0], rtol=1e-3)


def test_grasp_on_bn_vgg_keeps_no_sign_bias(shared_data):
    """On the quarter-width BN VGG-11 at compression 10 (CIFAR-10, 100 scoring images), GraSP
    with batch statistics keeps about as many positive as negative weights in the first seven
    convolutions (≤ 0.6); scored in inference mode, where batch norm is the identity at
    initialisation, it keeps mostly positive ones (> 0.7) — the masks that do not train."""
    x, y = tfprune.data.load("cifar10", "train", shared_data)
    data = (x[:100], y[:100])
    shares = {}
    for batch_statistics in (True, False):
        keras.utils.set_random_seed(0)
        pruned = tfprune.prune_at_init(tfprune.models.vgg(11, width=0.25), "grasp", compression=10, data=data,
                                       batch_statistics=batch_statistics, verbose=0)
        targets = tfprune.prunable_weights(pruned)[:7]
        shares[batch_statistics] = [float((np.asarray(t.variable.value)[np.asarray(t.mask.value, bool)] > 0).mean())
                                    for t in targets]
    assert max(shares[True]) <= 0.6, shares
    assert np.mean(shares[False]) > 0.7, shares


def test_grasp_on_an_embedding_model_equals_a_dense_gradient_oracle():
    """An Embedding's gradient is a tf.IndexedSlices; GraSP equals θ ⊙ H g of the same network written with
    a one-hot matrix product (dense gradients), by plain nested tapes."""
    keras.utils.set_random_seed(5)
    tokens = keras.Input((5,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(11, 4, name="embedding")(tokens))
    model = keras.Model(tokens, keras.layers.Dense(3, name="logits")(pooled))
    rng = np.random.default_rng(3)
    ids, labels = rng.integers(0, 11, (12, 5)), rng.integers(0, 3, 12)
    targets = tfprune.prunable_weights(model)
    assert [t.name for t in targets] == ["embedding/embeddings", "logits/kernel"]
    scores = tfprune.scores.grasp(model, targets, (ids, labels), reinit_dense=False, batch_statistics=False)

    table, kernel, bias = (tf.constant(v) for v in (model.get_layer("embedding").embeddings.numpy(),
                                                    model.get_layer("logits").kernel.numpy(),
                                                    model.get_layer("logits").bias.numpy()))
    one_hot = tf.one_hot(ids, 11)

    def loss(weights):
        logits = tf.reduce_mean(one_hot @ weights[0], axis=1) @ weights[1] + bias
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits / 200.0))

    weights = [table, kernel]
    with tf.GradientTape() as outer:
        outer.watch(weights)
        with tf.GradientTape() as inner:
            inner.watch(weights)
            value = loss(weights)
        g = inner.gradient(value, weights)
        product = tf.add_n([tf.reduce_sum(a * tf.stop_gradient(a)) for a in g])
    hg = outer.gradient(product, weights)
    expected = [w.numpy() * h.numpy() for w, h in zip(weights, hg)]
    total = abs(sum(e.sum() for e in expected)) + 1e-10
    for got, want in zip(scores, expected):
        np.testing.assert_allclose(got, want / total, rtol=1e-3, atol=1e-7)
