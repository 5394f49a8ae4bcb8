"""SNIP-pruned LeNet-300-100 on MNIST exported to a sparse TFLite file, checked against Keras.

Prunes LeNet-300-100 to 95 % sparsity with SNIP at initialisation (100 training examples),
trains it 3 epochs (Adam 1e-3, batch 128: a short budget; the SNIP paper trains far longer),
strips the masks, exports with ``tfprune.export.tflite`` (outputs compared with Keras on the whole
test set), then prints the export report and the test accuracy of the Keras model and of the
TFLite file.

    python examples/tflite_export.py [--data-dir ../shared/data] [--out lenet_snip95.tflite]
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune import export  # noqa: E402


def tflite_logits(path, x, batch_size=1000):
    """The file's outputs on ``x``, computed batch by batch with the signature runner."""
    run = export.make_interpreter(path).get_signature_runner()
    return np.concatenate([run(input_0=x[i:i + batch_size])["output_0"] for i in range(0, len(x), batch_size)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    parser.add_argument("--out", default="lenet_snip95.tflite")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    x_train, y_train = tfprune.data.load("mnist", "train", args.data_dir)
    x_test, y_test = tfprune.data.load("mnist", "test", args.data_dir)
    keras.utils.set_random_seed(0)
    model = tfprune.models.lenet_300_100()
    pruned = tfprune.prune_at_init(model, "snip", sparsity=0.95, data=(x_train[:100], y_train[:100]), verbose=0)
    pruned.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    start = time.perf_counter()
    pruned.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=2)
    print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s")

    stripped = tfprune.strip(pruned)
    report = export.tflite(stripped, args.out, check_data=x_test)
    print(report)

    keras_accuracy = np.mean(np.argmax(stripped.predict(x_test, batch_size=1000, verbose=0), -1) == y_test)
    tflite_accuracy = np.mean(np.argmax(tflite_logits(args.out, x_test), -1) == y_test)
    print(f"test accuracy: Keras {keras_accuracy:.2%}, TFLite {tflite_accuracy:.2%} ({report.interpreter})")


if __name__ == "__main__":
    main()
