"""Wrapped models and keras.models.load_model: a functional model of a class of its own wraps into a WrappedModel that
reloads with its masks, even holding what Keras cannot reload from layer configs; for other models, wrap warns of
that, naming the cause, and the warning is right."""

import warnings

import keras
import numpy as np
import pytest

import tfprune
from tfprune.layers.wrapping import WrappedModel


@keras.saving.register_keras_serializable(package="test_reloading")
class Scale(keras.layers.Layer):
    """Writes a key its constructor refuses into its config (as KerasHub's ViTPatchingAndEmbedding does)."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "patches": 4}


def tied():
    """Inputs and outputs calling a Dense of the model nested in them (as GPT-2's tied token embedding)."""
    shared = keras.layers.Dense(3, name="shared")
    x = keras.Input((3,))
    inner = keras.Model(x, keras.layers.Dense(3, name="inner_dense")(shared(x)), name="inner")
    y = keras.Input((3,), name="y")
    return y, shared(inner(y))


@keras.saving.register_keras_serializable(package="test_reloading")
class OwnClass(keras.Model):
    """A functional model of a class of its own, saved as its constructor's arguments (as a KerasHub task), holding
    both things Keras cannot rebuild from layer configs."""

    def __init__(self, **kwargs):
        y, outputs = tied()
        super().__init__(y, Scale(name="scale")(outputs), **{"name": "own_class", **kwargs})

    def get_config(self):
        return {"name": self.name}


def wrap_recording(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = tfprune.wrap(model)
    return wrapped, [str(w.message) for w in caught if "load_model" in str(w.message)]


def test_a_model_of_its_own_class_wraps_into_a_wrapped_model_that_reloads_with_its_masks(tmp_path):
    keras.utils.set_random_seed(0)
    wrapped, messages = wrap_recording(OwnClass())
    assert type(wrapped) is WrappedModel and messages == []
    masks = [np.arange(t.variable.numpy().size).reshape(t.shape) % 3 == 0 for t in tfprune.prunable_weights(wrapped)]
    tfprune.apply_masks(wrapped, masks)
    wrapped.save(tmp_path / "wrapped.keras")
    reloaded = keras.models.load_model(tmp_path / "wrapped.keras")
    assert type(reloaded) is WrappedModel
    assert [t.name for t in tfprune.prunable_weights(reloaded)] == [t.name for t in tfprune.prunable_weights(wrapped)]
    assert all(np.array_equal(a, b) for a, b in zip(tfprune.get_masks(reloaded), masks))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    k_shared, k_inner = (t.variable.numpy() * m for t, m in zip(tfprune.prunable_weights(wrapped), masks))
    b_shared, b_inner = (wrapped.get_layer("inner").get_layer(f"masked_{n}").layer.bias.numpy()
                         for n in ("shared", "inner_dense"))
    inner = (x @ k_shared + b_shared) @ k_inner + b_inner
    np.testing.assert_allclose(np.asarray(reloaded(x)), 2 * (inner @ k_shared + b_shared), rtol=1e-5, atol=1e-6)
    plain = tfprune.strip(reloaded)
    assert type(plain) is OwnClass
    np.testing.assert_array_equal(np.asarray(plain(x)), np.asarray(reloaded(x)))


def test_a_plain_model_around_a_nested_model_of_its_own_class_is_warned_of_and_keras_indeed_cannot_reload(tmp_path):
    x = keras.Input((3,))
    wrapped, messages = wrap_recording(keras.Model(x, OwnClass()(x), name="outer"))
    assert messages == [
        "the wrapped 'outer' will save, but keras.models.load_model cannot reload that file: layer 'scale' (Scale) of "
        "'own_class' cannot be rebuilt from its own config: Unrecognized keyword arguments passed to Scale: "
        "{'patches': 4}; layer 'shared' is called by the models ['own_class', 'inner']: Keras reloads it as one layer "
        "per model and finds the weights of only one. To save it, use save_weights() and load_weights() on a model "
        "wrapped the same way"]
    wrapped.save(tmp_path / "wrapped.keras")
    with pytest.raises(TypeError, match="Unrecognized keyword arguments passed to Scale"):
        keras.models.load_model(tmp_path / "wrapped.keras")


def test_a_layer_shared_across_a_nested_model_is_named_and_keras_indeed_cannot_reload(tmp_path):
    y, outputs = tied()
    wrapped, messages = wrap_recording(keras.Model(y, keras.layers.Dense(2, name="head")(outputs), name="outer"))
    assert len(messages) == 1 and "layer 'shared' is called by the models ['outer', 'inner']" in messages[0]
    wrapped.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="'masked_shared' expected 1 variables, but received 0"):
        keras.models.load_model(tmp_path / "m.keras")


def test_a_plain_functional_model_is_wrapped_without_a_warning():
    x = keras.Input((3,))
    _, messages = wrap_recording(keras.Model(x, Scale()(keras.layers.Dense(2)(x))))  # its file held Scale already
    assert messages == []
