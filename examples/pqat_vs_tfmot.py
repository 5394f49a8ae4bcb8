"""Pruned and int8: TF-MOT's PQAT on tf_keras beside tfprune's QAT on Keras 3, and post-training int8.

TF-MOT's guide model and pruning recipe, as in ``examples/gradual_vs_tfmot.py`` (whose data, model and
dense stage this script reuses): 28×28 input → Reshape → Conv2D(12, 3, relu) → MaxPooling2D → Flatten →
Dense(10), trained dense once in Keras 3 (4 epochs), then pruned from the same weights 50 % → 80 %
(``PolynomialDecay`` over 2 epochs, batch 128) by each library. From each pruned model:

* post-training int8 (PTQ): the stripped float model, full-integer (``tfprune.export.tflite(...,
  quantize="int8", representative_data=...)``, int8 inputs and outputs, sparse storage asked for);
* quantization-aware fine-tuning that keeps the masks, 1 epoch, batch 128, Adam 1e-3, validation split
  0.1 (TF-MOT's PQAT guide): TF-MOT ``quantize_apply(quantize_annotate_model(stripped),
  Default8BitPrunePreserveQuantizeScheme())`` on tf_keras; tfprune ``fake_quantize(pruned)`` (int8
  weights and activations), then ``strip``; each exported as above.

Every file is converted by the same function with the same calibration images, and evaluated in one
process by the same interpreter (``tf.lite``, XNNPACK on, one thread): accuracy on the 10,000 MNIST
test images, zeros per kernel read from the file, size plain and gzipped, and the median latency of
one image (the files take turns, in rounds, so that the load of a shared machine falls on all of them).
Each library runs in its own process (importing TF-MOT makes ``tf.keras`` mean tf_keras).

    python examples/pqat_vs_tfmot.py                 # writes docs/results.md (block pqat-vs-tfmot)
    python examples/pqat_vs_tfmot.py --doc ""        # print only
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from gradual_vs_tfmot import RECIPE, gzipped_size, load_mnist, stage_dense, tfmot_pruned, tfprune_pruned  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QAT = dict(epochs=1, batch=128, learning_rate=1e-3)
CALIBRATION = 500  # training images the converter calibrates activations on
LATENCY = dict(warmup=50, rounds=10, runs=100)  # per file: rounds × runs timed invocations of one image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results.md"),
                        help='markdown file whose results block is replaced ("" to skip)')
    parser.add_argument("--stage", choices=["dense", "tfmot", "tfprune", "evaluate"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def accuracy_of(model, x_test, y_test):
    return 100.0 * float(np.mean(np.argmax(model.predict(x_test, batch_size=1000, verbose=0), axis=1) == y_test))


def zeros_per_kernel(model):
    return [int(np.sum(w.numpy() == 0)) for w in model.weights if len(w.shape) > 1]


def int8_file(model, path, x):
    """The full-integer file of ``model`` and the zeros per kernel read from it."""
    from tfprune import export

    report = export.tflite(model, path, quantize="int8", representative_data=x[:CALIBRATION], runtime="tf.lite")
    return dict(path=str(path), zeros=[zeros for _, _, zeros in report.weight_zeros],
                sizes=[int(np.prod(shape)) for _, shape, _ in report.weight_zeros])


def stage_tfmot(args):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    x, y, x_test, y_test = load_mnist(args.data_dir)
    stripped = tfmot_pruned(args, x, y)
    ptq = int8_file(stripped, Path(args.work) / "tfmot_ptq.tflite", x)
    started = time.perf_counter()
    annotated = tfmot.quantization.keras.quantize_annotate_model(stripped)
    qat = tfmot.quantization.keras.quantize_apply(annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    qat.compile(tf_keras.optimizers.Adam(QAT["learning_rate"]), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=QAT["epochs"], batch_size=QAT["batch"], validation_split=RECIPE["validation_split"], verbose=0)
    qat_seconds = time.perf_counter() - started
    return dict(float_accuracy=accuracy_of(stripped, x_test, y_test), masked=zeros_per_kernel(stripped),
                qat_keras_accuracy=accuracy_of(qat, x_test, y_test), qat_seconds=qat_seconds,
                ptq=ptq, qat=int8_file(qat, Path(args.work) / "tfmot_qat.tflite", x))


def stage_tfprune(args):
    import keras

    import tfprune

    x, y, x_test, y_test = load_mnist(args.data_dir)
    pruned = tfprune_pruned(args, x, y)
    stripped = tfprune.strip(pruned)
    ptq = int8_file(stripped, Path(args.work) / "tfprune_ptq.tflite", x)
    started = time.perf_counter()
    qat = tfprune.fake_quantize(pruned)
    qat.compile(keras.optimizers.Adam(QAT["learning_rate"]), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=QAT["epochs"], batch_size=QAT["batch"], validation_split=RECIPE["validation_split"], verbose=0)
    qat_seconds = time.perf_counter() - started
    return dict(float_accuracy=accuracy_of(stripped, x_test, y_test), masked=zeros_per_kernel(stripped),
                qat_keras_accuracy=accuracy_of(qat, x_test, y_test), qat_seconds=qat_seconds,
                ptq=ptq, qat=int8_file(tfprune.strip(qat), Path(args.work) / "tfprune_qat.tflite", x))


class Int8File:
    """An int8 file in ``tf.lite``'s interpreter (XNNPACK on, one thread), fed floats."""

    def __init__(self, path):
        from tfprune.export import make_interpreter

        self.run = make_interpreter(path, runtime="tf.lite", num_threads=1).get_signature_runner("serving_default")
        self.input = self.run.get_input_details()["input_0"]
        self.output = self.run.get_output_details()["output_0"]

    def __call__(self, x):
        scale, zero_point = self.input["quantization"]
        codes = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
        out = self.run(input_0=codes)["output_0"]
        scale, zero_point = self.output["quantization"]
        return (out.astype(np.float32) - zero_point) * scale


def stage_evaluate(args):
    _, _, x_test, y_test = load_mnist(args.data_dir)
    with open(Path(args.work) / "files.json") as f:
        paths = json.load(f)
    files = {name: Int8File(path) for name, path in paths.items()}
    accuracy = {name: 100.0 * float(np.mean(np.concatenate(
        [np.argmax(run(x_test[i:i + 500]), axis=1) for i in range(0, len(x_test), 500)]) == y_test))
        for name, run in files.items()}
    one = x_test[:1]
    for run in files.values():
        for _ in range(LATENCY["warmup"]):
            run(one)
    times = {name: [] for name in files}
    for _ in range(LATENCY["rounds"]):
        for name, run in files.items():
            for _ in range(LATENCY["runs"]):
                started = time.perf_counter()
                run(one)
                times[name].append(time.perf_counter() - started)
    return {name: dict(accuracy=accuracy[name], latency_ms=1000.0 * float(np.median(times[name])),
                       bytes=os.path.getsize(paths[name]), gzip_bytes=gzipped_size(paths[name])) for name in files}


def run_stage(stage, args):
    """Runs one stage in a fresh interpreter and returns its JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    command = [sys.executable, __file__, "--stage", stage, "--work", args.work, "--data-dir", args.data_dir,
               "--seed", str(args.seed)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(dense, libraries, measured):
    lines = [
        f"Dense start (Keras 3, {RECIPE['dense_epochs']} epochs): {dense['accuracy']:.2f} %. Pruned 50 % → 80 % over "
        f"{RECIPE['prune_epochs']} epochs; QAT {QAT['epochs']} epoch (batch {QAT['batch']}, Adam "
        f"{QAT['learning_rate']:g}); seed 0; int8 files calibrated on {CALIBRATION} training images; accuracy on "
        f"the 10,000 MNIST test images; latency: median of {LATENCY['rounds'] * LATENCY['runs']} invocations of "
        "one image per file (`tf.lite`, XNNPACK, 1 thread, files in turns).",
        "",
        "| library | model | accuracy % | zeros conv / dense (masked) | bytes | gzip bytes | median latency µs |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for library, result in libraries.items():
        masked = " / ".join(f"{m:,}" for m in result["masked"])
        lines.append(f"| {library} | pruned float (Keras) | {result['float_accuracy']:.2f} | {masked} | | | |")
        lines.append(f"| {library} | QAT model (Keras, fake-quantized) | {result['qat_keras_accuracy']:.2f} | | | | |")
        for kind, label in (("ptq", "post-training int8 file"), ("qat", "QAT int8 file")):
            m = measured[f"{library} {kind}"]
            zeros = " / ".join(f"{z:,} of {s:,}" for z, s in zip(result[kind]["zeros"], result[kind]["sizes"]))
            lines.append(f"| {library} | {label} | {m['accuracy']:.2f} | {zeros} | {m['bytes']:,} | {m['gzip_bytes']:,} "
                         f"| {1000 * m['latency_ms']:.0f} |")
    seconds = ", ".join(f"{library} {result['qat_seconds']:.0f} s" for library, result in libraries.items())
    lines += ["", f"QAT fine-tuning time (1 epoch, this shared 2-core machine): {seconds}."]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.stage:
        stage = {"dense": stage_dense, "tfmot": stage_tfmot, "tfprune": stage_tfprune, "evaluate": stage_evaluate}
        print(json.dumps(stage[args.stage](args)))
        return
    with tempfile.TemporaryDirectory() as work:
        args.work = work
        dense = run_stage("dense", args)
        print(f"dense: {dense['accuracy']:.2f} %", flush=True)
        libraries = {}
        for library, stage in (("TF-MOT (tf_keras)", "tfmot"), ("tfprune (Keras 3)", "tfprune")):
            libraries[library] = run_stage(stage, args)
            print(library, json.dumps(libraries[library]), flush=True)
        paths = {f"{library} {kind}": result[kind]["path"] for library, result in libraries.items() for kind in ("ptq", "qat")}
        with open(Path(work) / "files.json", "w") as f:
            json.dump(paths, f)
        measured = run_stage("evaluate", args)
    text = table(dense, libraries, measured)
    print(text)
    if args.doc:
        from tfprune.experiments.documents import write_block  # imports TensorFlow: only here
        write_block(args.doc, "pqat-vs-tfmot", text)


if __name__ == "__main__":
    main()
