"""Pruning a trained model: one-shot with prune_at_init, and gradually during fine-tuning.

Both start from the same trained MLP on the embedded 8×8 digits. The masks are checked against a
NumPy re-derivation from the trained weights, the kept weights keep their trained values, and the
fine-tuned pruned network is checked to still classify the held-out digits.
"""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.sparsity.masks import kept_count

L = keras.layers


@pytest.fixture(scope="module")
def digits():
    return tfprune.data.load("digits", "train"), tfprune.data.load("digits", "test")


@pytest.fixture(scope="module")
def trained(digits):
    (x, y), (x_test, y_test) = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(64, activation="relu"),
                              L.Dense(32, activation="relu"), L.Dense(10)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    weights = [w.numpy() for w in model.weights]
    return model, weights, _accuracy(model, x_test, y_test)


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def _fresh_copy(trained):
    model, weights, _ = trained
    copy = keras.models.clone_model(model)
    copy.set_weights(weights)
    return copy


def test_the_trained_model_is_accurate(trained):
    assert trained[2] > 0.9


def test_one_shot_pruning_of_trained_weights_then_fine_tuning(trained, digits):
    (x, y), (x_test, y_test) = digits
    model = _fresh_copy(trained)
    kernels = [w for w in trained[1] if w.ndim == 2]
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.8, verbose=0)

    flat = np.concatenate([np.abs(k).astype(np.float64).ravel() for k in kernels])
    k = kept_count(0.2, flat.size)
    threshold = np.sort(flat)[::-1][k - 1]
    masks = tfprune.get_masks(pruned)
    assert sum(int(m.sum()) for m in masks) == k
    for mask, kernel in zip(masks, kernels):
        np.testing.assert_array_equal(mask, np.abs(kernel) >= threshold)  # no ties among trained weights
    stripped = tfprune.strip(pruned)
    for w, kernel, mask in zip([w.numpy() for w in stripped.weights if w.ndim == 2], kernels, masks):
        np.testing.assert_array_equal(w, np.where(mask, kernel, 0))  # kept weights keep their trained values

    pruned.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   jit_compile=False)
    pruned.fit(x, y, epochs=3, batch_size=64, verbose=0)
    np.testing.assert_array_equal(tfprune.get_masks(pruned)[0], masks[0])
    assert _accuracy(pruned, x_test, y_test) > trained[2] - 0.05


def test_gradual_pruning_of_a_trained_model(trained, digits):
    (x, y), (x_test, y_test) = digits
    wrapped = tfprune.wrap(_fresh_copy(trained))
    steps_per_epoch = int(np.ceil(len(x) / 64))
    end = 3 * steps_per_epoch
    schedule = tfprune.schedules.PolynomialDecay(0.0, 0.8, 0, end, frequency=steps_per_epoch // 2)
    wrapped.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    jit_compile=False)
    wrapped.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[tfprune.callbacks.GradualPruning(schedule)])

    targets = tfprune.prunable_weights(wrapped)
    final = schedule(end)[1]
    assert [int(m.sum()) for m in tfprune.get_masks(wrapped)] == [kept_count(1 - final, t.size) for t in targets]
    assert _accuracy(wrapped, x_test, y_test) > trained[2] - 0.05
