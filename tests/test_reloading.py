"""wrap warns, naming the cause, when Keras cannot reload the wrapped model's file; and the warning is right."""

import warnings

import keras
import numpy as np
import pytest

import tfprune


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


@keras.saving.register_keras_serializable(package="test_reloading")
class OwnClass(keras.Model):
    """A functional model of a class of its own, saved as its constructor's arguments (as a KerasHub task)."""

    def __init__(self, units=4, **kwargs):
        x = keras.Input((3,), name="x")
        super().__init__(x, Scale(name="scale")(keras.layers.Dense(units, name="dense")(x)), **kwargs)
        self.units = units

    def get_config(self):
        return {"units": self.units, "name": self.name}


def nested_with_a_shared_layer():
    """A functional model calling a Dense of the model nested in it (as GPT-2's tied token embedding)."""
    shared = keras.layers.Dense(3, name="shared")
    x = keras.Input((3,))
    inner = keras.Model(x, keras.layers.Dense(3, name="inner_dense")(shared(x)), name="inner")
    y = keras.Input((3,))
    return keras.Model(y, shared(inner(y)), name="outer")


def wrap_recording(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = tfprune.wrap(model)
    return wrapped, [str(w.message) for w in caught if "load_model" in str(w.message)]


def test_a_layer_shared_across_a_nested_model_is_named_and_keras_indeed_cannot_reload(tmp_path):
    wrapped, messages = wrap_recording(nested_with_a_shared_layer())
    assert messages == [
        "the wrapped 'outer' will save, but keras.models.load_model cannot reload that file: layer 'shared' is "
        "called by the models ['outer', 'inner']: Keras reloads it as one layer per model and finds the weights "
        "of only one. To save it, use save_weights() and load_weights() on a model wrapped the same way"]
    wrapped.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="'masked_shared' expected 1 variables, but received 0"):
        keras.models.load_model(tmp_path / "m.keras")


def test_a_layer_whose_config_does_not_round_trip_in_a_model_of_its_own_class_is_named(tmp_path):
    model = OwnClass()
    model.save(tmp_path / "own.keras")  # the class saves its arguments: the original reloads
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "own.keras").get_weights()[0],
                                  model.get_weights()[0])
    wrapped, messages = wrap_recording(model)
    assert len(messages) == 1 and (
        "layer 'scale' (Scale) of 'own_class' cannot be rebuilt from its own config: Unrecognized keyword arguments "
        "passed to Scale: {'patches': 4}. To save it, save the stripped model instead (tfprune.strip keeps the class "
        "OwnClass" in messages[0])
    wrapped.save(tmp_path / "wrapped.keras")
    with pytest.raises(TypeError, match="Unrecognized keyword arguments passed to Scale"):
        keras.models.load_model(tmp_path / "wrapped.keras")


def test_a_plain_functional_model_is_wrapped_without_a_warning():
    x = keras.Input((3,))
    _, messages = wrap_recording(keras.Model(x, Scale()(keras.layers.Dense(2)(x))))  # its file held Scale already
    assert messages == []
