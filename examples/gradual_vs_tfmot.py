"""Gradual magnitude pruning during fit: tfprune on Keras 3 beside TF-MOT on tf_keras.

TF-MOT's own "Pruning in Keras" guide, run twice from the same dense weights, data and recipe:

* model: 28×28 input → Reshape(28, 28, 1) → Conv2D(12, 3, relu) → MaxPooling2D(2) → Flatten → Dense(10);
* dense training: Adam, 4 epochs, batch 32, validation split 0.1 (done once, in Keras 3; the weights
  are copied into both runs);
* pruning: PolynomialDecay from 50 % to 80 % sparsity, begin step 0, end step = steps of 2 epochs,
  frequency 100, every prunable kernel (TF-MOT: ``prune_low_magnitude`` on the whole model;
  tfprune: ``tfprune.wrap`` + ``tfprune.callbacks.GradualPruning``), Adam, 2 epochs, batch 128,
  validation split 0.1.

Each framework runs in its own process (importing TF-MOT makes ``tf.keras`` mean tf_keras). Reported
per framework and seed: test accuracy, per-kernel sparsity after stripping, training step time
(the time between consecutive batch starts within an epoch, so the pruning callbacks and mask
updates are included and the epoch-end validation is not; median and mean over steps; the first 20
steps, which trace the step function, are left out), and
the gzipped size of the stripped model (weights as HDF5, and a float TFLite file). A reference row
fine-tunes the same Keras 3 model without pruning, so that Keras 3's own step time can be told
apart from what pruning adds. The table goes
into docs/results.md between the ``gradual-vs-tfmot`` markers.

    python examples/gradual_vs_tfmot.py                       # 3 seeds, writes docs/results.md
    python examples/gradual_vs_tfmot.py --seeds 1 --doc ""    # one seed, print only
"""

import argparse
import gzip
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = dict(dense_epochs=4, dense_batch=32, prune_epochs=2, prune_batch=128, validation_split=0.1,
              initial_sparsity=0.5, final_sparsity=0.8, frequency=100, skip_steps=20)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results.md"),
                        help='markdown file whose results block is replaced ("" to skip)')
    parser.add_argument("--stage", choices=["dense", "tfmot", "tfprune", "keras3"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--jit-compile", default="auto", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load_mnist(data_dir):
    """MNIST scaled to [0, 1], as the guide does (train_images / 255)."""
    with np.load(Path(data_dir) / "mnist.npz") as f:
        return ((f["x_train"] / 255.0).astype("float32"), f["y_train"].astype("int64"),
                (f["x_test"] / 255.0).astype("float32"), f["y_test"].astype("int64"))


def end_step(num_train):
    """The guide's end step: ceil(training examples / batch) × epochs."""
    examples = num_train * (1 - RECIPE["validation_split"])
    return math.ceil(examples / RECIPE["prune_batch"]) * RECIPE["prune_epochs"]


def guide_model(layers, model_class, input_layer):
    return model_class([
        input_layer,
        layers.Reshape((28, 28, 1)),
        layers.Conv2D(12, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(10),
    ])


class StepTimer:
    """Batch-start timestamps per epoch; a step is the gap between consecutive starts in one epoch
    (so the epoch-end validation is not counted, and mask updates are)."""

    def __init__(self):
        self.epochs = []

    def callbacks(self, callback_class):
        return callback_class(on_epoch_begin=lambda *_, **__: self.epochs.append([]),
                              on_train_batch_begin=lambda *_, **__: self.epochs[-1].append(time.perf_counter()))

    def median_ms(self):
        gaps = [np.diff(starts) for starts in self.epochs]
        gaps[0] = gaps[0][RECIPE["skip_steps"]:]
        gaps = np.concatenate(gaps)
        return 1000.0 * float(np.median(gaps)), 1000.0 * float(np.mean(gaps))


def gzipped_size(path):
    with open(path, "rb") as f:
        return len(gzip.compress(f.read()))


def stripped_outputs(stripped, x_test, y_test, work, tag, export_tflite):
    """Accuracy, per-kernel sparsity and gzipped sizes of a stripped model."""
    logits = stripped.predict(x_test, batch_size=1000, verbose=0)
    accuracy = 100.0 * float(np.mean(np.argmax(logits, axis=1) == y_test))
    sparsity = {w.path if hasattr(w, "path") else w.name: 1.0 - float(np.count_nonzero(w.numpy())) / w.numpy().size
                for w in stripped.weights if len(w.shape) > 1}
    weights = os.path.join(work, f"{tag}.weights.h5")
    stripped.save_weights(weights)
    tflite = os.path.join(work, f"{tag}.tflite")
    export_tflite(stripped, tflite, sparse=False, check_data=x_test[:64])
    return dict(accuracy=accuracy, sparsity=sparsity, gzip_weights_bytes=gzipped_size(weights),
                gzip_tflite_bytes=gzipped_size(tflite))


def stage_dense(args):
    import keras

    x, y, x_test, y_test = load_mnist(args.data_dir)
    keras.utils.set_random_seed(0)
    model = guide_model(keras.layers, keras.Sequential, keras.Input((28, 28)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=RECIPE["dense_epochs"], batch_size=RECIPE["dense_batch"],
              validation_split=RECIPE["validation_split"], verbose=0)
    np.savez(os.path.join(args.work, "dense.npz"), *[w.numpy() for w in model.weights])
    logits = model.predict(x_test, batch_size=1000, verbose=0)
    return dict(accuracy=100.0 * float(np.mean(np.argmax(logits, axis=1) == y_test)))


def dense_weights(work):
    with np.load(os.path.join(work, "dense.npz")) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def tfmot_pruned(args, x, y, callbacks=()):
    """The dense weights pruned by TF-MOT on tf_keras with the recipe; the stripped tf_keras model."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(args.seed)
    model = guide_model(tf_keras.layers, tf_keras.Sequential, tf_keras.layers.InputLayer(input_shape=(28, 28)))
    model.set_weights(dense_weights(args.work))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=RECIPE["initial_sparsity"], final_sparsity=RECIPE["final_sparsity"],
        begin_step=0, end_step=end_step(len(x)), frequency=RECIPE["frequency"])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pruned.fit(x, y, epochs=RECIPE["prune_epochs"], batch_size=RECIPE["prune_batch"],
               validation_split=RECIPE["validation_split"], verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), *callbacks])
    return tfmot.sparsity.keras.strip_pruning(pruned)


def stage_tfmot(args):
    import tf_keras

    from tfprune import export

    x, y, x_test, y_test = load_mnist(args.data_dir)
    timer = StepTimer()
    stripped = tfmot_pruned(args, x, y, [timer.callbacks(tf_keras.callbacks.LambdaCallback)])
    median, mean = timer.median_ms()
    return dict(step_ms=median, mean_step_ms=mean,
                **stripped_outputs(stripped, x_test, y_test, args.work, f"tfmot{args.seed}", export.tflite))


def tfprune_pruned(args, x, y, callbacks=(), prune=True, jit_compile="auto"):
    """The dense weights pruned by tfprune on Keras 3 with the recipe (``prune=False``: fine-tuned
    alike without pruning); the wrapped model."""
    import keras

    import tfprune

    keras.utils.set_random_seed(args.seed)
    model = guide_model(keras.layers, keras.Sequential, keras.Input((28, 28)))
    model.set_weights(dense_weights(args.work))
    schedule = tfprune.schedules.PolynomialDecay(
        initial_sparsity=RECIPE["initial_sparsity"], final_sparsity=RECIPE["final_sparsity"],
        begin_step=0, end_step=end_step(len(x)), frequency=RECIPE["frequency"])
    pruned = tfprune.wrap(model) if prune else model
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                   jit_compile=jit_compile)
    pruning = [tfprune.callbacks.GradualPruning(schedule)] if prune else []
    pruned.fit(x, y, epochs=RECIPE["prune_epochs"], batch_size=RECIPE["prune_batch"],
               validation_split=RECIPE["validation_split"], verbose=0, callbacks=[*pruning, *callbacks])
    return pruned


def stage_tfprune(args):
    import keras

    import tfprune

    x, y, x_test, y_test = load_mnist(args.data_dir)
    prune = args.stage == "tfprune"  # "keras3": the same fine-tuning without pruning, for reference
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile.lower()]
    timer = StepTimer()
    pruned = tfprune_pruned(args, x, y, [timer.callbacks(keras.callbacks.LambdaCallback)], prune, jit)
    stripped = tfprune.strip(pruned) if prune else pruned
    median, mean = timer.median_ms()
    return dict(step_ms=median, mean_step_ms=mean, **stripped_outputs(
        stripped, x_test, y_test, args.work, f"{args.stage}{args.seed}", tfprune.export.tflite))


def run_stage(stage, work, data_dir, seed=0, jit_compile="auto"):
    """Runs one stage in a fresh interpreter and returns its JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    command = [sys.executable, __file__, "--stage", stage, "--work", work, "--data-dir", data_dir,
               "--seed", str(seed), "--jit-compile", jit_compile]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} (seed {seed}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs):
    def mean(key):
        return statistics.mean(r[key] for r in runs)

    def spread(key):
        values = [r[key] for r in runs]
        return f"{statistics.mean(values):.2f} ({min(values):.2f}–{max(values):.2f})"

    sparsities = {name: statistics.mean(r["sparsity"][name] for r in runs) for name in runs[0]["sparsity"]}
    return dict(accuracy=spread("accuracy"), step_ms=mean("step_ms"), mean_step_ms=mean("mean_step_ms"),
                sparsity=sparsities, gzip_weights=mean("gzip_weights_bytes"), gzip_tflite=mean("gzip_tflite_bytes"))


def table(dense, per_run, seeds):
    """The markdown table; a run's step-time ratio is the median over seeds of its ratio to TF-MOT's
    step time with the same seed (the two ran back to back), with the range."""
    base_name = next(iter(per_run))
    results = {name: summarise(runs) for name, runs in per_run.items()}
    lines = [
        f"Dense start (Keras 3, 4 epochs): test accuracy {dense['accuracy']:.2f} %. Pruned 50 % → 80 % over "
        f"2 epochs, {seeds} seed(s) (mean, min–max); step time is the median over steps (mean beside it, "
        "mask updates included), the ratio is against TF-MOT with the same seed, run just before.",
        "",
        "| run | test accuracy % | step ms | ratio to TF-MOT | mean step ms | conv / dense kernel sparsity | gzip weights (h5) | gzip TFLite |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ratios = [run["step_ms"] / base["step_ms"] for run, base in zip(per_run[name], per_run[base_name])]
        ratio = f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
        kernels = " / ".join(f"{s:.3f}" for s in r["sparsity"].values())
        lines.append(
            f"| {name} | {r['accuracy']} | {r['step_ms']:.2f} | {ratio} | "
            f"{r['mean_step_ms']:.2f} | {kernels} | {r['gzip_weights'] / 1024:.1f} KiB | {r['gzip_tflite'] / 1024:.1f} KiB |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.stage:
        stage = {"dense": stage_dense, "tfmot": stage_tfmot, "tfprune": stage_tfprune, "keras3": stage_tfprune}[args.stage]
        print(json.dumps(stage(args)))
        return
    with tempfile.TemporaryDirectory() as work:
        dense = run_stage("dense", work, args.data_dir)
        print(f"dense: {dense['accuracy']:.2f} %", flush=True)
        runs = {"TF-MOT (tf_keras)": ("tfmot", "auto"), "tfprune (Keras 3, jit_compile=auto)": ("tfprune", "auto"),
                "tfprune (Keras 3, jit_compile=False)": ("tfprune", "false"),
                "Keras 3 without pruning (jit_compile=False), for reference": ("keras3", "false")}
        per_run = {name: [] for name in runs}
        for seed in range(args.seeds):
            for name, (stage, jit) in runs.items():
                result = run_stage(stage, work, args.data_dir, seed, jit)
                per_run[name].append(result)
                print(f"seed {seed} {name}: {result['accuracy']:.2f} %, {result['step_ms']:.2f} ms/step", flush=True)
    text = table(dense, per_run, args.seeds)
    print(text)
    if args.doc:
        from tfprune.experiments.documents import write_block  # imports TensorFlow: only here
        write_block(args.doc, "gradual-vs-tfmot", text)


if __name__ == "__main__":
    main()
