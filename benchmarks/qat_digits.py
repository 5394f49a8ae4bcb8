"""Post-training int8 against QAT (weights only, and weights and activations) on the recipe of
tests/test_qat.py, whose numbers docs/quantization.md records.

    python benchmarks/qat_digits.py

Embedded 8×8 digits (1,437 train / 360 test images); Conv2D(16, 3) → Dense(32) → Dense(10), magnitude
80 % per layer, 5 epochs Adam 1e-2; then post-training int8 of the stripped model, or 2 epochs of
``tfprune.fake_quantize`` at 1e-3 from the same pruned weights, stripped and converted to int8
(``tf.lite``, XNNPACK on). Prints one markdown row per file: float and int8 file accuracy, zeros per
kernel in the file, masked weights per kernel.
"""

import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import tfprune
from tfprune.export import tflite_export as export

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import pruned_digits_cnn  # noqa: E402  (the recipe tests/test_qat.py asserts on)


def main():
    pruned, loss, (x, y), (x_test, y_test) = pruned_digits_cnn()
    masked = ", ".join(f"{int(np.sum(t.mask.numpy() == 0)):,}" for t in tfprune.prunable_weights(pruned))
    pruned_weights = pruned.get_weights()
    work = Path(tempfile.mkdtemp())

    def row(name, plain):
        accuracy = np.mean(np.argmax(plain.predict(x_test, verbose=0), -1) == y_test)
        report = export.tflite(plain, work / "m.tflite", quantize="int8", representative_data=x[:300],
                               check_data=x_test, runtime="tf.lite")
        outputs = export._tflite_outputs(report.path, [x_test], "tf.lite", True, report.sparse_tensors)[0]
        int8_accuracy = np.mean(np.argmax(outputs, -1) == y_test)
        zeros = ", ".join(f"{zeros:,}" for _, _, zeros in report.weight_zeros)
        print(f"| {name} | {accuracy:.2%} | {int8_accuracy:.2%} | {zeros} | {masked} |", flush=True)

    print("| | float accuracy | int8 file accuracy | zeros in the int8 file (conv, dense, head) | masked |")
    print("|---|---:|---:|---|---|")
    row("post-training int8", tfprune.strip(pruned))
    for activations in (False, True):
        keras.utils.set_random_seed(0)
        pruned.set_weights(pruned_weights)
        qat = tfprune.fake_quantize(pruned, activations=activations)
        qat.compile(keras.optimizers.Adam(1e-3), loss)
        qat.fit(x, y, epochs=2, batch_size=64, verbose=0)
        what = "weights and activations, the default" if activations else "weights only, `activations=False`"
        row(f"QAT ({what}), then int8", tfprune.strip(qat))


if __name__ == "__main__":
    main()
