"""export.tflite(quantize="int8"): full-integer TFLite with the zeros of a pruned model, checked
against a NumPy int8 forward pass of the file's own tensors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

import tfprune
from tfprune.export import tflite_export as export

L = keras.layers


@pytest.fixture(scope="module")
def pruned_mlp():
    """A stripped 64-48-32-10 MLP with random masks of density 0.2, its masks, and calibration data."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), L.Dense(48, activation="relu"), L.Dense(32, activation="relu"),
                              L.Dense(10)])
    wrapped = tfprune.wrap(model)
    masks = [np.random.default_rng(i).random(t.shape) < 0.2 for i, t in enumerate(tfprune.prunable_weights(wrapped))]
    tfprune.apply_masks(wrapped, masks)
    x = np.random.default_rng(1).standard_normal((300, 64)).astype("float32")
    return tfprune.strip(wrapped), masks, x


def _rounded_to_zero(kernel):
    """Kept weights that symmetric per-output-channel int8 (scale max|w|/127) rounds to 0, in NumPy."""
    scale = np.abs(kernel).max(axis=0) / 127
    return int(np.sum((kernel != 0) & (np.round(kernel / scale) == 0)))


def _numpy_int8_forward(path, x):
    """The file run in NumPy: int8 inputs, int8 weights, int32 biases, per-channel requantisation,
    fused ReLU as the clip at the output zero point; weights, scales and zero points from the
    interpreter (the DENSIFY outputs, kept with experimental_preserve_all_tensors)."""
    with open(path, "rb") as f:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(f.read()))
    interpreter = tf.lite.Interpreter(  # XNNPACK repacks the densified weights: read them without it
        model_path=str(path), experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], np.int8))
    interpreter.invoke()
    scale, zero = inp["quantization"]
    h = np.clip(np.round(x / scale) + zero, -128, 127)
    for op in model.subgraphs[0].operators:
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) != "FULLY_CONNECTED":
            continue
        x_i, w_i, b_i = (int(i) for i in op.inputs)
        weight = interpreter.get_tensor(w_i).astype(np.int64)
        bias = interpreter.get_tensor(b_i).astype(np.int64) if b_i >= 0 else 0
        x_scale, x_zero = details[x_i]["quantization"]
        w_scales = details[w_i]["quantization_parameters"]["scales"].astype(np.float64)
        y_scale, y_zero = details[int(op.outputs[0])]["quantization"]
        accumulator = (h.astype(np.int64) - x_zero) @ weight.T + bias
        h = np.clip(np.round(accumulator * (x_scale * w_scales / y_scale)) + y_zero, -128, 127)
        if op.builtinOptions.fusedActivationFunction == 1:  # RELU
            h = np.maximum(h, y_zero)
    out = interpreter.get_output_details()[0]
    return (h - out["quantization"][1]) * out["quantization"][0], out["quantization"][0]


def test_int8_export_keeps_the_masks_zeros_and_reports_agreement(pruned_mlp, tmp_path):
    plain, masks, x = pruned_mlp
    path = tmp_path / "mlp_int8.tflite"
    report = export.tflite(plain, path, quantize="int8", representative_data=x, runtime="tf.lite")
    kernels = [layer.get_weights()[0] for layer in plain.layers]
    expected = [int(np.sum(~m)) + _rounded_to_zero(k) for m, k in zip(masks, kernels)]
    assert [zeros for _, _, zeros in report.weight_zeros] == expected
    assert [shape for _, shape, _ in report.weight_zeros] == [k.T.shape for k in kernels]
    assert sum(int(np.sum(~m)) for m in masks) > 0.79 * sum(m.size for m in masks)

    keras_out = plain.predict(x, verbose=0).astype(np.float64)
    numpy_out, step = _numpy_int8_forward(path, x)
    steps = np.max(np.abs(numpy_out - keras_out)) / step
    top1 = np.mean(np.argmax(numpy_out, -1) == np.argmax(keras_out, -1))
    assert report.examples == 300 and report.quantize == "int8"
    assert abs(report.max_error_steps - steps) <= 1.0  # TFLite's fixed-point requantisation rounds once more
    assert abs(report.top1_agreement - top1) <= 2 / 300
    assert report.top1_agreement >= 0.9 and report.max_error_steps < 10
    assert abs(report.max_abs_diff - report.max_error_steps * step) < 1e-6
    assert "top-1 agreement" in str(report) and "zeros" in str(report)


@pytest.mark.parametrize("data, message", [
    (None, "quantize='int8' needs representative_data"),
    (np.zeros((4, 10), "float32"), r"representative_data: x has examples of shape \(10,\), but model 'sequential\w*' "
                                   r"takes inputs of shape \(64,\)"),
    ([np.zeros((4, 64), "float32")] * 2, "representative_data: x holds 2 arrays but model 'sequential\\w*' takes 1 input"),
    (np.full((4, 64), np.nan, "float32"), "NaN or infinite"),
])
def test_bad_representative_data_writes_nothing(pruned_mlp, tmp_path, data, message):
    path = tmp_path / "bad.tflite"
    with pytest.raises(ValueError, match=message):
        export.tflite(pruned_mlp[0], path, quantize="int8", representative_data=data)
    assert not path.exists()


def test_representative_data_without_int8_is_refused(pruned_mlp, tmp_path):
    with pytest.raises(ValueError, match="representative_data calibrates quantize='int8'"):
        export.tflite(pruned_mlp[0], tmp_path / "f.tflite", representative_data=pruned_mlp[2])
    assert not (tmp_path / "f.tflite").exists()


@pytest.fixture(scope="module")
def guide_cnn():
    """TF-MOT's pruning-guide CNN (Reshape, Conv2D(12, 3), MaxPooling, Dense(10)), 80 % sparse per layer."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), L.Reshape((28, 28, 1)), L.Conv2D(12, 3, activation="relu"),
                              L.MaxPooling2D(2), L.Flatten(), L.Dense(10)])
    plain = tfprune.strip(tfprune.prune_at_init(model, "magnitude", sparsity=0.8, scope="local", verbose=0, seed=0))
    return plain, np.random.default_rng(0).random((200, 28, 28)).astype("float32")


def test_dynamic_under_xnnpack_is_refused_before_writing(guide_cnn, tmp_path):
    plain, x = guide_cnn
    path = tmp_path / "dynamic.tflite"
    with pytest.raises(ValueError, match=r"use_xnnpack=False .*BUILTIN_WITHOUT_DEFAULT_DELEGATES.*quantize='int8'"):
        export.tflite(plain, path, quantize="dynamic", check_data=x, runtime="tf.lite")
    assert not path.exists()
    report = export.tflite(plain, path, quantize="dynamic", check_data=x, runtime="tf.lite", use_xnnpack=False)
    assert report.max_abs_diff <= report.tolerance and path.exists()


def test_int8_guide_cnn_runs_under_xnnpack(guide_cnn, tmp_path):
    plain, x = guide_cnn
    report = export.tflite(plain, tmp_path / "int8.tflite", quantize="int8", representative_data=x, runtime="tf.lite")
    kernels = [layer.get_weights()[0] for layer in plain.layers if layer.weights]
    assert [zeros for _, _, zeros in report.weight_zeros] == [int(np.sum(k == 0)) for k in kernels]
    assert report.use_xnnpack and report.top1_agreement >= 0.95


def test_ai_edge_litert_agrees_with_tf_lite_or_is_refused_up_front(pruned_mlp, tmp_path):
    """ai_edge_litert 2.3's XNNPACK fails to prepare sparse full-integer weights that tf.lite's runs."""
    pytest.importorskip("ai_edge_litert")
    plain, _, x = pruned_mlp
    path = tmp_path / "litert.tflite"
    with pytest.raises(ValueError, match=r"ai_edge_litert's default XNNPACK .*use_xnnpack=False.*runtime='tf.lite'"):
        export.tflite(plain, path, quantize="int8", representative_data=x, runtime="ai_edge_litert")
    assert not path.exists()
    litert = export.tflite(plain, path, quantize="int8", representative_data=x, runtime="ai_edge_litert",
                           use_xnnpack=False)
    tflite = export.tflite(plain, path, quantize="int8", representative_data=x, runtime="tf.lite")
    assert (litert.top1_agreement, litert.max_error_steps) == (tflite.top1_agreement, tflite.max_error_steps)
