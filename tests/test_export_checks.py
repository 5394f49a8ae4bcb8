"""tfprune.export.tflite refuses, before converting, a path it cannot write, NaN/inf weights
(named) and non-finite check data."""

import os

import keras
import numpy as np
import pytest

from tfprune.export import tflite_export as export


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    layers = [keras.Input((6,)), keras.layers.Dense(5, name="hidden"), keras.layers.Dense(2, name="out")]
    return keras.Sequential(layers, name="small")


@pytest.fixture
def no_convert(monkeypatch):
    monkeypatch.setattr(export, "_convert", lambda *a, **k: pytest.fail("converted before checking"))


def test_a_missing_folder_or_a_folder_path_is_refused_before_converting(model, tmp_path, no_convert):
    with pytest.raises(FileNotFoundError, match=r"the folder of path '.*missing/m\.tflite' does not exist"):
        export.tflite(model, tmp_path / "missing" / "m.tflite")
    (tmp_path / "m.tflite").mkdir()
    with pytest.raises(IsADirectoryError, match=r"path '.*m\.tflite' is a folder"):
        export.tflite(model, tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_a_non_finite_weight_is_named_with_its_counts(model, tmp_path, no_convert):
    kernel = model.get_layer("out").kernel
    values = kernel.numpy()
    values[0, 1], values[3, 1] = np.nan, np.inf
    kernel.assign(values)
    with pytest.raises(ValueError) as error:
        export.tflite(model, tmp_path / "m.tflite")
    assert str(error.value).startswith(
        "weight 'small/out/kernel' of model 'small' holds 1 NaN and 1 infinite values (of 10; first at flat index 1)")
    assert os.listdir(tmp_path) == []


def test_non_finite_check_data_is_blamed_on_the_data(model, tmp_path, no_convert):
    x = np.ones((4, 6), "float32")
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"check_data array\(s\) \[0\] hold NaN or infinite values"):
        export.tflite(model, tmp_path / "m.tflite", check_data=x)
    assert os.listdir(tmp_path) == []



def _volumes():
    x = keras.Input((4, 4, 4, 1))
    pooled = keras.layers.MaxPooling3D(name="pool")(keras.layers.Conv3D(2, 3, padding="same", name="conv3d")(x))
    return keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(pooled)), name="volumes")


def _recurrent():
    x = keras.Input((5, 3))
    return keras.Model(x, keras.layers.Dense(2)(keras.layers.LSTM(4, name="lstm")(x)), name="recurrent")


@pytest.mark.parametrize("make, blamed", [
    (_volumes, r"layer 'pool' \(op MaxPool3D\) of model 'volumes': 'tf\.MaxPool3D' op is neither a custom op nor "
               r"a flex op"),
    (_recurrent, r"layer 'lstm' \(op TensorListReserve\) of model 'recurrent': 'tf\.TensorListReserve' op requires "
                 r"element_shape to be static"),
])
def test_a_converter_failure_names_the_layer_the_op_and_the_option(make, blamed, tmp_path):
    with pytest.raises(export.ConversionError, match=f"TFLite cannot convert {blamed}.*; pass select_tf_ops=True"):
        export.tflite(make(), tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_select_tf_ops_converts_and_the_check_says_what_it_needs(tmp_path):
    """Converted with TensorFlow kernels; TensorFlow's own tf.lite interpreter may lack the Flex delegate, and
    then the check says so (nothing is written unchecked)."""
    try:
        report = export.tflite(_volumes(), tmp_path / "m.tflite", select_tf_ops=True, runtime="tf.lite")
    except RuntimeError as error:
        assert "cannot run without TFLite's Flex delegate" in str(error)
        assert os.listdir(tmp_path) == []
    else:
        assert "FlexMaxPool3D" in report.ops and report.max_abs_diff <= report.tolerance
