"""Pruning-preserving quantization-aware training: tfprune.fake_quantize on a pruned CNN."""

import keras
import numpy as np
import pytest

import tfprune
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


def test_qat_keeps_every_masked_weight_zero_in_training_and_in_the_int8_file(tmp_path):
    x, y = tfprune.data.load("digits", "train")
    x_test, y_test = tfprune.data.load("digits", "test")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), L.Reshape((8, 8, 1)), L.Conv2D(16, 3, activation="relu"),
                              L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10)])
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.8, scope="local", verbose=0, seed=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pruned.compile(keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
    pruned.fit(x, y, epochs=5, batch_size=64, verbose=0)

    qat = tfprune.fake_quantize(pruned)
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


def test_fake_quantize_refuses_an_unwrapped_model():
    model = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match="holds no tfprune MaskedLayer"):
        tfprune.fake_quantize(model)
