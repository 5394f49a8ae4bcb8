"""scoring_batches: the class-balanced draw of the GraSP authors, and its errors."""

import numpy as np
import pytest
import tensorflow as tf
from numpy_mlp import keras_mlp

from tfprune.autodiff.batches import class_balanced, scoring_batches

RNG = np.random.default_rng(2)
W = [RNG.normal(size=(4, 6)), np.zeros(6), RNG.normal(size=(6, 3)), np.zeros(3)]
X = np.arange(40, dtype="float32").reshape(10, 4)
Y = np.array([2, 0, 2, 1, 0, 2, 2, 0, 1, 2])


def test_class_balanced_takes_the_first_of_each_class_grouped_by_class():
    x, y, _ = class_balanced(X, Y, 2)
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(x[:, 0], 4 * np.array([1, 4, 3, 8, 0, 2]))
    with pytest.warns(UserWarning, match=r"samples_per_class=3, but 1 class\(es\) of data have fewer examples "
                      r"\(class 1: 2\): the score uses all they have, 8 examples in all"):
        x, y, _ = class_balanced(X, Y, 3)  # class 1 has only two
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 2, 2, 2])


def test_samples_per_class_gives_the_balanced_batches():
    batches = scoring_batches(keras_mlp(W), (X, Y), batch_size=4, samples_per_class=2)
    assert [b[1].numpy().tolist() for b in batches] == [[0, 0, 1, 1], [2, 2]]


@pytest.mark.parametrize("options, message", [
    (dict(samples=4, samples_per_class=2), "give samples or samples_per_class, not both"),
    (dict(samples_per_class=0), "samples_per_class must be None or an int >= 1, got 0"),
])
def test_bad_requests_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        scoring_batches(keras_mlp(W), (X, Y), **options)


def test_samples_per_class_needs_arrays():
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(5)
    with pytest.raises(ValueError, match="samples_per_class draws from"):
        scoring_batches(keras_mlp(W), dataset, samples_per_class=2)


def test_samples_per_class_needs_class_ids():
    with pytest.raises(ValueError, match="samples_per_class draws the first examples of each class, so it needs "
                                         "class-id labels"):
        scoring_batches(keras_mlp(W), (X, np.eye(3)[Y]), samples_per_class=2, loss="categorical_crossentropy")
