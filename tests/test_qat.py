"""Pruning-preserving quantization-aware training: tfprune.fake_quantize on a pruned CNN."""

import keras
import numpy as np
import pytest

import tfprune
from helpers import pruned_digits_cnn
from tfprune.export import tflite_export as export

L = keras.layers


def test_fake_quant_int8_matches_numpy_and_keeps_zeros():
    w = np.random.default_rng(0).standard_normal((5, 3)).astype("float32")
    w[np.random.default_rng(1).random(w.shape) < 0.5] = 0
    scale = np.abs(w).max(axis=0) / 127
    expected = np.clip(np.round(w / scale), -127, 127) * scale
    got = keras.ops.convert_to_numpy(tfprune.quantization.fake_quant_int8(keras.ops.convert_to_tensor(w)))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert np.all(got[w == 0] == 0)


def _int8_activation(x, low, high):
    """NumPy: per-tensor asymmetric int8 as TFLite's converter quantizes an activation over [low, high]
    (ties of x / scale rounded up, as TensorFlow's FakeQuantWithMinMaxVars rounds them)."""
    scale = (high - low) / 255
    zero_point = np.clip(np.round(-128 - low / scale), -128, 127)
    return (np.clip(np.floor(x / scale + 0.5) + zero_point, -128, 127) - zero_point) * scale


def test_fake_quant_activation_matches_numpy():
    x = np.concatenate([np.linspace(-3, 5, 4001), np.random.default_rng(0).standard_normal(1000) * 3]).astype("float32")
    steps = x / (6.5 / 255)
    x = x[np.abs(steps - np.floor(steps) - 0.5) > 1e-3]  # no ties, where float32 and float64 may round apart
    got = keras.ops.convert_to_numpy(tfprune.quantization.fake_quant_activation(x, [-2.5, 4.0]))
    expected = _int8_activation(x, -2.5, 4.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert len(np.unique(got)) == 256  # every int8 code, and nothing else


def test_fake_quant_layer_tracks_output_and_input_ranges_by_moving_average():
    rng = np.random.default_rng(0)
    dense = L.Dense(6)
    dense.build((None, 8))
    dense.kernel.assign(rng.standard_normal((8, 6)).astype("float32"))
    mask = (rng.random((8, 6)) < 0.3).astype("float32")
    layer = tfprune.quantization.FakeQuantMaskedLayer(dense, quantize_inputs=True)
    layer.masks[0].assign(mask)
    weights_only = tfprune.quantization.FakeQuantMaskedLayer(dense, activations=False)
    weights_only.masks[0].assign(mask)
    assert [v.name for v in weights_only.weights if "range" in v.name] == []

    x = [rng.standard_normal((16, 8)).astype("float32") + 0.5 for _ in range(3)]
    assert np.allclose(layer(x[0]), weights_only(x[0]))  # ranges untracked: passed unquantized

    def ranges_of(a):
        return np.array([min(a.min(), 0), max(a.max(), 0)])

    decay = tfprune.quantization.ACTIVATION_EMA_DECAY
    in_range = out_range = None
    for i, batch in enumerate(x):
        training = i < 2
        if training:
            in_range = ranges_of(batch) if i == 0 else decay * in_range + (1 - decay) * ranges_of(batch)
        quantized_in = _int8_activation(batch, *in_range)
        y = keras.ops.convert_to_numpy(weights_only(quantized_in))
        if training:
            out_range = ranges_of(y) if i == 0 else decay * out_range + (1 - decay) * ranges_of(y)
        got = keras.ops.convert_to_numpy(layer(batch, training=training))
        np.testing.assert_allclose(layer.input_range.numpy(), in_range, rtol=1e-6)
        np.testing.assert_allclose(layer.output_range.numpy(), out_range, rtol=1e-6)
        np.testing.assert_allclose(got, _int8_activation(y, *out_range), atol=1e-5)
    assert np.all(keras.ops.convert_to_numpy(dense.kernel)[mask == 0] != 0)  # masked only in the forward pass


def test_tracked_ranges_save_and_load(tmp_path):
    wrapped = tfprune.wrap(keras.Sequential([keras.Input((6,)), L.Dense(4, activation="relu"), L.Dense(3)]))
    tfprune.apply_masks(wrapped, [np.arange(t.size).reshape(t.shape) % 3 > 0 for t in tfprune.prunable_weights(wrapped)])
    qat = tfprune.fake_quantize(wrapped)
    x = np.random.default_rng(0).standard_normal((8, 6)).astype("float32")
    qat(x, training=True)
    qat.save(tmp_path / "qat.keras")
    loaded = keras.models.load_model(tmp_path / "qat.keras")
    ranges = [[v.numpy() for v in layer.weights if "range" in v.name] for layer in (qat, loaded)]
    assert [r.tolist() for r in ranges[0]] == [r.tolist() for r in ranges[1]] and len(ranges[0]) == 3  # in, out, out
    assert all(low <= 0 < high for low, high in ranges[0])
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), qat.predict(x, verbose=0))


def test_qat_keeps_every_masked_weight_zero_in_training_and_in_the_int8_file(tmp_path):
    pruned, loss, (x, y), (x_test, y_test) = pruned_digits_cnn()
    qat = tfprune.fake_quantize(pruned)
    assert [layer.quantize_inputs for layer in qat.layers if hasattr(layer, "quantize_inputs")] == [True, False, False]
    qat.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    qat.fit(x, y, epochs=2, batch_size=64, verbose=0)
    targets = tfprune.prunable_weights(qat)
    for t in targets:
        fake = keras.ops.convert_to_numpy(tfprune.quantization.fake_quant_int8(t.variable * t.mask))
        assert np.all(fake[t.mask.numpy() == 0] == 0)
    masked = [int(np.sum(t.mask.numpy() == 0)) for t in targets]

    plain = tfprune.strip(qat)
    float_accuracy = np.mean(np.argmax(plain.predict(x_test, verbose=0), -1) == y_test)
    report = export.tflite(plain, tmp_path / "qat.tflite", quantize="int8", representative_data=x[:300],
                           check_data=x_test, runtime="tf.lite")
    kernels = [layer.get_weights()[0] for layer in plain.layers if layer.weights]
    assert [zeros for _, _, zeros in report.weight_zeros] == [
        m + int(np.sum((k != 0) & (np.round(k / (np.abs(k).max(axis=tuple(range(k.ndim - 1))) / 127)) == 0)))
        for m, k in zip(masked, kernels)]
    int8_out = export._tflite_outputs(report.path, [x_test], "tf.lite", True, report.sparse_tensors)[0]
    int8_accuracy = np.mean(np.argmax(int8_out, -1) == y_test)
    assert float_accuracy > 0.9 and abs(int8_accuracy - float_accuracy) <= 0.01
    tracked = (qat.layers[-1].output_range.numpy() @ [-1, 1]) / 255  # the output scale QAT trained with
    calibrated = export._output_scales(report.path, "tf.lite")[0]  # the converter's, from representative_data
    print(f"output scale tracked {tracked:.4f}, calibrated {calibrated:.4f}")
    assert 0.5 < calibrated / tracked < 2


def test_fake_quantize_refuses_an_unwrapped_model_and_warns_on_an_unpruned_one():
    model = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match="holds no tfprune MaskedLayer"):
        tfprune.fake_quantize(model)
    with pytest.warns(UserWarning, match="no mask of .* zeros a weight .wrapped, not pruned."):
        qat = tfprune.fake_quantize(tfprune.wrap(model))
    assert [float(m.numpy().min()) for m in qat.layers[0].masks] == [1.0]


def test_activations_refused_for_a_layer_of_several_tensors_before_anything_is_made():
    query, value = keras.Input((3, 8)), keras.Input((4, 8))
    wrapped = tfprune.wrap(keras.Model([query, value], L.MultiHeadAttention(2, 4)(query, value)))
    tfprune.apply_masks(wrapped, [np.arange(t.size).reshape(t.shape) % 3 > 0 for t in tfprune.prunable_weights(wrapped)])
    with pytest.raises(ValueError, match=r"takes 2 and gives 1: pass activations=False"):
        tfprune.fake_quantize(wrapped)
    qat = tfprune.fake_quantize(wrapped, activations=False)
    assert [v.name for v in qat.weights if "range" in v.name] == []
