"""Data-driven scorers on models whose output applies softmax: with from_logits=True (the
default) they score the logits, never probabilities taken for logits."""

import keras
import numpy as np
import pytest
from keras import ops

import tfprune

L = keras.layers
RNG = np.random.default_rng(5)
X = RNG.normal(size=(20, 5)).astype("float32")
Y = RNG.integers(0, 3, 20)
KERNEL, BIAS = RNG.normal(size=(5, 3)), RNG.normal(size=3)


def one_layer(activation):
    inputs = keras.Input((5,))
    model = keras.Model(inputs, L.Dense(3, activation=activation)(inputs))
    model.set_weights([KERNEL.astype("float32"), BIAS.astype("float32")])
    return model


def numpy_snip():
    """|W ⊙ ∂L/∂W| / Σ for the mean cross-entropy of softmax(xW + b), float64: ∂L/∂W = xᵀ(p − onehot)/n."""
    logits = X.astype(np.float64) @ KERNEL + BIAS
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    s = np.abs(KERNEL * (X.T @ (p - np.eye(3)[Y]) / len(X)))
    return s / s.sum()


@pytest.mark.parametrize("from_logits", [True, False])
def test_snip_on_a_softmax_head_scores_the_logits(from_logits):
    """Logits for from_logits=True; probabilities for False — the same cross-entropy either way."""
    model = one_layer("softmax")
    [scores] = tfprune.scores.snip(model, tfprune.prunable_weights(model), (X, Y), from_logits=from_logits)
    np.testing.assert_allclose(scores, numpy_snip(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(model(X)).sum(axis=1), 1.0, rtol=1e-6)  # the head is back


def mlp(head):
    """Dense(8, relu) → Dense(3) → the given head; the same weights for every head."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5,))
    x = L.Dense(8, activation="relu")(inputs)
    if head == "dense_softmax":
        outputs = L.Dense(3, activation="softmax")(x)
    elif head == "activation_layer":
        outputs = L.Activation("softmax")(L.Dense(3)(x))
    elif head == "softmax_layer":
        outputs = L.Softmax()(L.Dense(3)(x))
    elif head == "ops_softmax":
        outputs = ops.softmax(L.Dense(3)(x))
    elif head == "nested_sequential":
        outputs = keras.Sequential([keras.Input((8,)), L.Dense(3, activation="softmax")])(x)
    else:
        outputs = L.Dense(3)(x)
    return keras.Model(inputs, outputs)


HEADS = ["dense_softmax", "activation_layer", "softmax_layer", "ops_softmax", "nested_sequential"]


@pytest.mark.parametrize("head", HEADS)
def test_snip_scores_equal_those_of_the_linear_head(head):
    expected = tfprune.scores.snip(linear := mlp("linear"), tfprune.prunable_weights(linear), (X, Y))
    model = mlp(head)
    scores = tfprune.scores.snip(model, tfprune.prunable_weights(model), (X, Y))
    for s, e in zip(scores, expected):
        np.testing.assert_allclose(s, e, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("method, options", [("iter_snip", {"rounds": 3}), ("force", {"rounds": 3}),
                                             ("grasp", {})])
def test_iterative_scorers_and_grasp_give_the_masks_of_the_linear_head(method, options):
    masks = [tfprune.get_masks(tfprune.prune_at_init(mlp(head), method, sparsity=0.6, data=(X, Y), verbose=0,
                                                     **options))
             for head in ("linear", "dense_softmax")]
    for a, b in zip(*masks):
        np.testing.assert_array_equal(a, b)


def test_a_loss_of_your_own_sees_the_outputs_as_they_are():
    """A given loss decides itself what it expects (here probabilities): nothing is skipped."""
    model = one_layer("softmax")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=False)
    [scores] = tfprune.scores.snip(model, tfprune.prunable_weights(model), (X, Y), loss=loss)
    np.testing.assert_allclose(scores, numpy_snip(), rtol=1e-4, atol=1e-7)


class SoftmaxInCall(keras.Model):
    """A subclassed model that applies softmax in its own call: no graph to look through."""

    def __init__(self):
        super().__init__()
        self.dense = L.Dense(3)

    def call(self, x):
        return ops.softmax(self.dense(x))


def test_a_softmax_tfprune_cannot_skip_raises_with_from_logits():
    model = SoftmaxInCall()
    model(X[:1])
    targets = tfprune.prunable_weights(model)
    with pytest.raises(ValueError, match="outputs probabilities .* pass from_logits=False"):
        tfprune.scores.snip(model, targets, (X, Y), samples=20)
    model.dense.set_weights([KERNEL.astype("float32"), BIAS.astype("float32")])
    [scores] = tfprune.scores.snip(model, targets, (X, Y), samples=20, from_logits=False)
    np.testing.assert_allclose(scores, numpy_snip(), rtol=1e-4, atol=1e-7)
