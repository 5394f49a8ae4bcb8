"""TFLite export: sparse storage read back from the flatbuffer, outputs checked against Keras."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from subprocess_util import run_python
from tensorflow.lite.tools import flatbuffer_utils

import tfprune
from tfprune.export import tflite_export as export

L = keras.layers
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")


def lenet(seed=0):
    """LeNet-300-100 for the 8x8 digits: 64 -> 300 -> 100 -> 10, with non-zero biases."""
    keras.utils.set_random_seed(seed)
    model = tfprune.models.lenet_300_100((8, 8, 1), 10)
    for layer in model.layers:
        if layer.weights:
            layer.bias.assign(np.random.default_rng(seed).normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model


def block_masks(shapes, density=0.05, block=4, seed=0):
    """Masks for Dense kernels (in, out) made of whole blocks of ``block`` consecutive inputs."""
    rng = np.random.default_rng(seed)
    return [np.repeat(rng.random((n_in // block, n_out)) < density, block, axis=0) for n_in, n_out in shapes]


def numpy_mlp(model, x):
    """The stripped MLP's logits recomputed in float64 NumPy."""
    h = x.reshape(len(x), -1).astype(np.float64)
    dense = [layer for layer in model.layers if layer.weights]
    for i, layer in enumerate(dense):
        kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
        h = h @ kernel + bias
        if i < len(dense) - 1:
            h = np.maximum(h, 0)
    return h


def fully_connected_weights(path):
    """For each FULLY_CONNECTED op of the file: (weight tensor, values stored), read with TF's own
    flatbuffer tools (independently of tfprune.export)."""
    with open(path, "rb") as f:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(f.read()))
    graph = model.subgraphs[0]
    out = []
    for op in graph.operators:
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) == "FULLY_CONNECTED":
            tensor = graph.tensors[op.inputs[1]]
            out.append((tensor, len(model.buffers[tensor.buffer].data) // 4))
    return out


@pytest.fixture(scope="module")
def digits():
    return tfprune.data.load("digits", "test")[0]


@pytest.fixture(scope="module")
def unstructured():
    """A 95 %-sparse LeNet (global magnitude at init), stripped."""
    return tfprune.strip(tfprune.prune_at_init(lenet(), "magnitude", sparsity=0.95, verbose=0))


@pytest.fixture(scope="module")
def blocked():
    """A LeNet with masks of 1x4 blocks along the inputs (density 5 %), stripped, and its block masks."""
    wrapped = tfprune.wrap(lenet())
    masks = block_masks([t.shape for t in tfprune.prunable_weights(wrapped)])
    tfprune.apply_masks(wrapped, masks)
    return tfprune.strip(wrapped), masks


def test_unstructured_95_percent(unstructured, digits, tmp_path):
    path = tmp_path / "lenet.tflite"
    report = export.tflite(unstructured, path, check_data=digits)
    assert os.path.getsize(path) == report.file_bytes <= 0.2 * report.dense_bytes
    assert len(report.sparse_tensors) >= 3
    assert report.max_abs_diff <= 1e-5 and report.examples == len(digits)
    assert report.interpreter in export.RUNTIMES and report.ops.count("FULLY_CONNECTED") == 3
    assert report.densify == ("DENSIFY" in report.ops)
    assert sorted(t.shape for t in report.sparse_tensors) == [(10, 100), (100, 300), (300, 64)]
    run = tf.lite.Interpreter(model_path=str(path)).get_signature_runner()
    np.testing.assert_allclose(run(input_0=digits)["output_0"], numpy_mlp(unstructured, digits), atol=1e-5)
    assert "sparse tensors" in str(report)


def test_block_1x4_is_stored_in_blocks_and_read_by_fully_connected(blocked, digits, tmp_path):
    model, masks = blocked
    path = tmp_path / "block.tflite"
    report = export.tflite(model, path, pattern="1x4", check_data=digits)
    assert report.max_abs_diff <= 1e-5 and not report.densify and "DENSIFY" not in report.ops
    assert [t.block for t in report.sparse_tensors] == [(1, 4)] * 3
    assert export.describe(path) == (report.ops, report.sparse_tensors)
    weights = fully_connected_weights(path)
    assert len(weights) == 3
    for (tensor, stored), mask in zip(weights, masks):
        sparsity = tensor.sparsity
        assert list(tensor.shape) == [mask.shape[1], mask.shape[0]]  # [out, in]
        assert list(sparsity.blockMap) == [1] and sparsity.dimMetadata[2].denseSize == 4
        assert stored == mask.sum()  # exactly the kept 1x4 blocks, no padding
    run = tf.lite.Interpreter(model_path=str(path)).get_signature_runner()
    np.testing.assert_allclose(run(input_0=digits)["output_0"], numpy_mlp(model, digits), atol=1e-5)


def test_block_check_rejects_unstructured_masks(unstructured, tmp_path):
    path = tmp_path / "x.tflite"
    with pytest.raises(ValueError, match="do not form 1×4 blocks"):
        export.tflite(unstructured, path, pattern="1x4")
    assert not os.listdir(tmp_path)


def test_wrapped_model_is_refused(tmp_path):
    wrapped = tfprune.wrap(lenet())
    with pytest.raises(ValueError, match=r"tfprune.strip\(model\)"):
        export.tflite(wrapped, tmp_path / "x.tflite")


def test_mismatch_raises_and_writes_nothing(blocked, tmp_path, monkeypatch):
    real = export._tflite_outputs
    monkeypatch.setattr(export, "_tflite_outputs", lambda *args: [o + 0.5 for o in real(*args)])
    with pytest.raises(export.ExportMismatchError, match="nothing written") as info:
        export.tflite(blocked[0], tmp_path / "x.tflite", tolerance=0.25)
    assert isinstance(info.value, ValueError) and abs(info.value.max_abs_diff - 0.5) <= 1e-5
    assert info.value.tolerance == 0.25
    assert not os.listdir(tmp_path)


def test_nan_outputs_are_a_mismatch(blocked, tmp_path, monkeypatch):
    """Wrong TFLite kernels can return NaN, which no ``diff > tolerance`` test would catch."""
    real = export._tflite_outputs

    def with_nan(*args):
        outputs = real(*args)
        outputs[0][0, 0] = np.nan
        return outputs

    monkeypatch.setattr(export, "_tflite_outputs", with_nan)
    with pytest.raises(export.ExportMismatchError, match="= nan"):
        export.tflite(blocked[0], tmp_path / "x.tflite")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("options, message", [
    (dict(quantize="int4"), r"quantize must be one of None, 'dynamic', 'int8', got 'int4'$"),
    (dict(tolerance=-1), r"tolerance must be None or a finite number >= 0, got -1$"),
    (dict(pattern="1x4", sparse=False), "needs sparse=True"),
    (dict(pattern="1x4", quantize="dynamic"), "only in 1×16 blocks"),
    (dict(pattern=(4,)), "block must be"),
    (dict(pattern="2:4"), "export checks block patterns"),
    (dict(runtime="onnx"), "runtime must be one of"),
])
def test_bad_options(blocked, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        export.tflite(blocked[0], tmp_path / "x.tflite", **options)


def test_inputs_and_outputs_keep_their_order(tmp_path):
    """TFLite may list inputs in another order than Keras: the check must not mix them up."""
    keras.utils.set_random_seed(0)
    a, b = keras.Input((6,), name="zeta"), keras.Input((3,), name="alpha")
    h = L.Dense(8, activation="relu")(L.Concatenate()([a, b]))
    model = keras.Model([a, b], [L.Dense(2, name="z")(h), L.Dense(4, name="a")(h)])
    rng = np.random.default_rng(1)
    report = export.tflite(model, tmp_path / "two.tflite", sparse=False,
                           check_data=(rng.random((5, 6), "float32"), rng.random((5, 3), "float32")))
    assert report.max_abs_diff <= 1e-5 and report.sparse_tensors == []
    with pytest.raises(ValueError, match="2 inputs"):
        export.tflite(model, tmp_path / "x.tflite", check_data=rng.random((5, 6), "float32"))


def test_dynamic_range_int8_with_1x16_blocks(tmp_path):
    """int8 Dense weights run sparse in 1x16 blocks; layer widths are multiples of 16 (see docs/tflite.md)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), L.Dense(304, activation="relu"), L.Dense(96, activation="relu"),
                              L.Dense(10)])
    wrapped = tfprune.wrap(model)
    tfprune.apply_masks(wrapped, block_masks([(64, 304), (304, 96), (96, 10)], density=0.1, block=16))
    x = tfprune.data.load("digits", "test")[0].reshape(-1, 64)
    report = export.tflite(tfprune.strip(wrapped), tmp_path / "int8.tflite", quantize="dynamic", block=(1, 16),
                           check_data=x, use_xnnpack=False)
    kinds = sorted((t.dtype, t.block) for t in report.sparse_tensors)
    assert kinds == [("float32", (1, 4)), ("int8", (1, 16)), ("int8", (1, 16))]  # 96x10 < 1024 entries: stays float
    assert report.file_bytes < report.dense_bytes / 3


def test_tf_keras_model_without_tfmot(tmp_path):
    """Importing tf_keras (not TF-MOT) leaves tf.keras alone, so this runs in the test process."""
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((64,)), tf_keras.layers.Dense(32, activation="relu"),
                                 tf_keras.layers.Dense(10)])
    kernel = model.layers[0].kernel
    kernel.assign(kernel.numpy() * block_masks([(64, 32)], density=0.1)[0])
    report = export.tflite(model, tmp_path / "tk.tflite", pattern="1x4")
    assert [t.shape for t in report.sparse_tensors] == [(32, 64)] and report.max_abs_diff <= 1e-5


TFMOT = """
import json, numpy as np, tempfile, os
import keras, tensorflow as tf, tf_keras
tf_keras_harmless = tf.keras.Model is keras.Model and "TF_USE_LEGACY_KERAS" not in os.environ
import tensorflow_model_optimization as tfmot
from tfprune.export import tflite_export as export

tf_keras.utils.set_random_seed(0)
L = tf_keras.layers
model = tf_keras.Sequential([L.InputLayer(input_shape=(8, 8, 1)), L.Flatten(), L.Dense(300, activation="relu"),
                             L.Dense(100, activation="relu"), L.Dense(10)])
schedule = tfmot.sparsity.keras.ConstantSparsity(0.95, begin_step=0, frequency=10**9)
pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
rng = np.random.default_rng(0)
for layer in pruned.layers:
    for weight, mask, _ in getattr(layer, "pruning_vars", []):
        n_in, n_out = weight.shape
        m = np.repeat(rng.random((n_in // 4, n_out)) < 0.05, 4, axis=0).astype("float32")
        mask.assign(m)
        weight.assign(weight.numpy() * m)
folder = tempfile.mkdtemp()
x = np.random.default_rng(1).random((64, 8, 8, 1), dtype="float32")
try:
    export.tflite(pruned, os.path.join(folder, "x.tflite"))
    refused = ""
except ValueError as error:
    refused = str(error)
stripped = tfmot.sparsity.keras.strip_pruning(pruned)
report = export.tflite(stripped, os.path.join(folder, "m.tflite"), pattern="1x4", check_data=x)
print(json.dumps(dict(tf_keras_harmless=tf_keras_harmless, refused=refused,
                      blocks=[t.block for t in report.sparse_tensors],
                      consumers=[t.consumer for t in report.sparse_tensors], diff=report.max_abs_diff,
                      ratio=report.size_ratio, left=sorted(os.listdir(folder)))))
"""


def test_tf_keras_model_pruned_with_tfmot():
    """In a subprocess: importing TF-MOT would make tf.keras mean tf_keras for later tests."""
    pytest.importorskip("tensorflow_model_optimization")
    result = json.loads(run_python(TFMOT, timeout=180).strip().splitlines()[-1])
    assert result["tf_keras_harmless"]  # importing tf_keras alone leaves tf.keras meaning Keras 3
    assert "tfmot.sparsity.keras.strip_pruning" in result["refused"]
    assert result["blocks"] == [[1, 4]] * 3 and result["consumers"] == ["FULLY_CONNECTED"] * 3
    assert result["diff"] <= 1e-5 and result["ratio"] < 0.1
    assert result["left"] == ["m.tflite"]


def test_keras3_prune_fit_strip_export_end_to_end(tmp_path):
    """prune_at_init (SNIP, 1×4 blocks) → fit → strip → export: sparse 1×4 weights read by
    FULLY_CONNECTED, outputs equal to Keras, file far smaller than dense."""
    x, y = tfprune.data.load("digits", "train")
    model = tfprune.prune_at_init(lenet(), "snip", sparsity=0.95, data=(x[:100], y[:100]), pattern="1x4", verbose=0)
    masks = tfprune.get_masks(model)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    plain = tfprune.strip(model)
    report = export.tflite(plain, tmp_path / "e2e.tflite", pattern="1x4", check_data=x[:64])
    assert report.max_abs_diff <= 1e-5 * max(1.0, float(np.abs(plain.predict(x[:64], verbose=0)).max()))
    assert report.file_bytes < 0.2 * report.dense_bytes and not report.densify
    for t, m in zip(tfprune.prunable_weights(plain), masks):
        assert np.all(t.variable.numpy()[~m] == 0)
