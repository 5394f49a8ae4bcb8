"""tfprune.views: read-only NumPy views of variables that stay snapshots (copy-on-write)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune.base import views


@pytest.fixture(params=["keras", "tf"])
def variable(request):
    value = np.arange(12, dtype=np.float32).reshape(3, 4)
    return keras.Variable(value) if request.param == "keras" else tf.Variable(value)


def test_a_view_is_the_value_read_only_and_not_a_copy(variable):
    first, second = views.view(variable), views.view(variable)
    np.testing.assert_array_equal(first, np.arange(12).reshape(3, 4))
    assert not first.flags.writeable
    assert np.shares_memory(first, second)  # both read TensorFlow's buffer: nothing was copied


@pytest.mark.parametrize("write", [
    lambda v: v.assign(np.zeros((3, 4), np.float32)),
    lambda v: v.assign_add(np.ones((3, 4), np.float32)),
    lambda v: (v if isinstance(v, tf.Variable) else v.value).scatter_nd_update([[0, 0]], [99.0]),
])
def test_a_view_keeps_the_value_it_read_when_the_variable_is_written(variable, write):
    before = views.view(variable)
    write(variable)
    np.testing.assert_array_equal(before, np.arange(12).reshape(3, 4))
    assert not np.array_equal(views.view(variable), before)


def test_restore_writes_back_a_snapshot_of_a_models_weights():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    expected = [v.numpy().copy() for v in model.weights]
    saved = views.snapshot(model.weights)
    for v in model.weights:
        v.assign(np.full(v.shape, 7.0, np.float32))
    views.restore(model.weights, saved)
    for v, e in zip(model.weights, expected):
        np.testing.assert_array_equal(v.numpy(), e)
