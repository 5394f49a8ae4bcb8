"""Per-layer pruning configuration: TF-MOT's "Pruning with 2:4 sparsity" guide in TF-MOT and in tfprune.

The guide's model on 28×28×1 MNIST: Conv2D(32, 5, relu) pruned unstructured to 50 %
(ConstantSparsity(0.5, begin_step=0, frequency=100)), MaxPooling2D, BatchNormalization,
Conv2D(64, 5) pruned 2:4, BatchNormalization, ReLU, MaxPooling2D, Flatten, Dense(1024, relu) pruned
2:4, Dropout(0.4), Dense(10) left dense; Adam, batch 128, validation split 0.1, trained from the same
initial weights (drawn once in Keras 3) in both frameworks:

* TF-MOT on tf_keras: ``prune_low_magnitude`` on each of the three layers as the guide does,
  ``UpdatePruningStep``, ``strip_pruning``;
* tfprune on Keras 3: ``tfprune.wrap`` with ``OnlyLayers``, one ``fit`` with one ``GradualPruning``
  per configuration (unstructured; ``pattern="2:4"``), ``tfprune.strip``.

Each framework runs in its own process (importing TF-MOT makes ``tf.keras`` mean tf_keras). Reported
per framework: test accuracy of the stripped model, the sparsity of each pruned kernel, how many
groups of 4 consecutive weights along the input axis (Conv2D: input channels, axis 2; Dense: axis 0)
keep exactly 2 — and, as a control, along the output axis —, and the wall time of ``fit``. The guide
trains 10 epochs; the default here is 2. The table replaces the ``per-layer-2by4`` block of
docs/results.md.

    python examples/per_layer_2by4.py                                    # 2 epochs, writes docs/results.md
    python examples/per_layer_2by4.py --train-samples 512 --epochs 1 --doc ""   # smoke run, print only
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gradual_vs_tfmot import dense_weights, load_mnist  # same folder; also quiets TensorFlow's C++ logs

ROOT = Path(__file__).resolve().parents[1]
BATCH, VALIDATION_SPLIT, GUIDE_EPOCHS = 128, 0.1, 10
UNSTRUCTURED, TWO_BY_FOUR = ["conv_unstructured"], ["conv_2by4", "dense_2by4"]
INPUT_AXIS = {"conv_2by4": 2, "dense_2by4": 0}  # the axis a layer sums over: Conv2D (5, 5, Cin, Cout), Dense (in, out)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help=f"training epochs (the guide: {GUIDE_EPOCHS})")
    parser.add_argument("--train-samples", type=int, help="use only the first N training images (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, dropout and shuffling")
    parser.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results.md"),
                        help='markdown file whose results block is replaced ("" to skip)')
    parser.add_argument("--stage", choices=["dense", "tfmot", "tfprune"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def guide_data(args):
    """MNIST scaled to [0, 1] with a channel axis, the training set cut to ``--train-samples``."""
    x, y, x_test, y_test = load_mnist(args.data_dir)
    return x[:args.train_samples, ..., None], y[:args.train_samples], x_test[..., None], y_test


def guide_model(layers, model_class, input_layer, prune=lambda layer: layer):
    """The guide's model; ``prune`` wraps each of the three pruned layers (TF-MOT), or leaves it."""
    return model_class([
        input_layer,
        prune(layers.Conv2D(32, 5, padding="same", activation="relu", name="conv_unstructured")),
        layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        layers.BatchNormalization(),
        prune(layers.Conv2D(64, 5, padding="same", name="conv_2by4")),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        layers.Flatten(),
        prune(layers.Dense(1024, activation="relu", name="dense_2by4")),
        layers.Dropout(0.4),
        layers.Dense(10),
    ])


def groups_keeping_two(kernel, axis):
    """(groups of 4 consecutive weights along ``axis`` with exactly 2 nonzero, all groups)."""
    rows = np.moveaxis(kernel, axis, -1)
    if rows.shape[-1] % 4:
        raise ValueError(f"axis {axis} of a kernel of shape {kernel.shape} is not a multiple of 4")
    nonzero = np.count_nonzero(rows.reshape(*rows.shape[:-1], -1, 4), axis=-1)
    return int(np.sum(nonzero == 2)), int(nonzero.size)


def measure(stripped, x_test, y_test, train_seconds, steps):
    """Test accuracy, kernel sparsities and 2:4 groups of a stripped model (either framework)."""
    logits = stripped.predict(x_test, batch_size=1000, verbose=0)
    kernels = {name: stripped.get_layer(name).get_weights()[0] for name in UNSTRUCTURED + TWO_BY_FOUR}
    return dict(
        accuracy=100.0 * float(np.mean(np.argmax(logits, axis=1) == y_test)),
        sparsity={name: 1.0 - np.count_nonzero(k) / k.size for name, k in kernels.items()},
        input_groups={name: groups_keeping_two(kernels[name], axis) for name, axis in INPUT_AXIS.items()},
        output_groups={name: groups_keeping_two(kernels[name], -1) for name in TWO_BY_FOUR},
        train_seconds=train_seconds, steps=steps)


def timed_fit(model, x, y, epochs, callbacks):
    """Trains with the guide's settings; returns the wall time of ``fit`` and the number of steps."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_split=VALIDATION_SPLIT, verbose=0,
              callbacks=callbacks)
    return time.perf_counter() - start, int(model.optimizer.iterations.numpy())


def stage_dense(args):
    """Draws the initial weights once, in Keras 3, into ``dense.npz`` (read by ``dense_weights``)."""
    import keras

    keras.utils.set_random_seed(args.seed)
    model = guide_model(keras.layers, keras.Sequential, keras.Input((28, 28, 1)))
    np.savez(os.path.join(args.work, "dense.npz"), *model.get_weights())
    return dict(parameters=model.count_params())


def stage_tfmot(args):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tfmot_sparsity = tfmot.sparsity.keras
    x, y, x_test, y_test = guide_data(args)
    tf_keras.utils.set_random_seed(args.seed)
    pruning_params = dict(
        conv_unstructured=dict(pruning_schedule=tfmot_sparsity.ConstantSparsity(0.5, begin_step=0, frequency=100)),
        conv_2by4=dict(sparsity_m_by_n=(2, 4)), dense_2by4=dict(sparsity_m_by_n=(2, 4)))
    model = guide_model(tf_keras.layers, tf_keras.Sequential, tf_keras.layers.InputLayer(input_shape=(28, 28, 1)),
                        prune=lambda layer: tfmot_sparsity.prune_low_magnitude(layer, **pruning_params[layer.name]))
    initial = iter(dense_weights(args.work))  # in Keras 3's order, layer by layer
    for layer in model.layers:
        unwrapped = getattr(layer, "layer", layer)  # inside prune_low_magnitude's wrapper
        unwrapped.set_weights([next(initial) for _ in unwrapped.weights])
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    seconds, steps = timed_fit(model, x, y, args.epochs, [tfmot_sparsity.UpdatePruningStep()])
    return dict(version=f"TF-MOT {tfmot.__version__} (tf_keras {tf_keras.__version__})",
                **measure(tfmot_sparsity.strip_pruning(model), x_test, y_test, seconds, steps))


def stage_tfprune(args):
    import keras

    import tfprune
    from tfprune.policies import OnlyLayers

    x, y, x_test, y_test = guide_data(args)
    keras.utils.set_random_seed(args.seed)
    model = guide_model(keras.layers, keras.Sequential, keras.Input((28, 28, 1)))
    model.set_weights(dense_weights(args.work))
    pruned = tfprune.wrap(model, policy=OnlyLayers(names=UNSTRUCTURED + TWO_BY_FOUR))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = [
        tfprune.callbacks.GradualPruning(tfprune.schedules.ConstantSparsity(0.5, begin_step=0, frequency=100),
                                         policy=OnlyLayers(names=UNSTRUCTURED)),
        tfprune.callbacks.GradualPruning(tfprune.schedules.ConstantSparsity(0.5, begin_step=0), pattern="2:4",
                                         policy=OnlyLayers(names=TWO_BY_FOUR)),
    ]
    seconds, steps = timed_fit(pruned, x, y, args.epochs, callbacks)
    return dict(version=f"tfprune (Keras {keras.__version__})",
                **measure(tfprune.strip(pruned), x_test, y_test, seconds, steps))


def run_stage(stage, work, args):
    """Runs one stage in a fresh interpreter and returns its JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    command = [sys.executable, __file__, "--stage", stage, "--work", work, "--data-dir", args.data_dir,
               "--seed", str(args.seed), "--epochs", str(args.epochs)]
    if args.train_samples is not None:
        command += ["--train-samples", str(args.train_samples)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def reproducing_command(args):
    command = f"python examples/per_layer_2by4.py --epochs {args.epochs} --seed {args.seed}"
    return command + (f" --train-samples {args.train_samples}" if args.train_samples is not None else "")


def table(results, args, minutes):
    def groups(counts):
        kept, total = counts
        return f"{'all' if kept == total else 'not all'} ({kept:,} / {total:,})"

    steps = next(iter(results.values()))["steps"]
    train = f"the first {args.train_samples:,}" if args.train_samples is not None else "all 60,000"
    lines = [
        f"Command: `{reproducing_command(args)}` ({minutes:.1f} min of wall time on this machine's 2 CPU cores, "
        "the two frameworks one after the other).",
        "",
        f"Budget: {args.epochs} epochs (the guide trains {GUIDE_EPOCHS}) on {train} MNIST training images, "
        f"{int(VALIDATION_SPLIT * 100)} % of them held out for validation: {steps} steps of {BATCH}; both "
        f"frameworks start from the same initial weights (seed {args.seed}, drawn in Keras 3). Test accuracy "
        "on the 10,000 test images, after stripping; sparsity = fraction of zeros in the stripped kernel; "
        "2:4 = groups of 4 consecutive weights along the input axis (Conv2D: input channels, axis 2; Dense: "
        "axis 0) that keep exactly 2; time = wall time of `fit` (validation and mask updates included).",
        "",
        "| framework | test accuracy % | conv_unstructured sparsity | conv_2by4 sparsity | dense_2by4 sparsity "
        "| conv_2by4 2:4 along Cin | dense_2by4 2:4 along inputs | fit time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        s = r["sparsity"]
        lines.append(
            f"| {r['version']} | {r['accuracy']:.2f} | {s['conv_unstructured']:.3f} | {s['conv_2by4']:.3f} | "
            f"{s['dense_2by4']:.3f} | {groups(r['input_groups']['conv_2by4'])} | "
            f"{groups(r['input_groups']['dense_2by4'])} | {r['train_seconds']:.0f} |")
    lines += ["", "Control, the same count along the output axis (Cout; Dense axis 1), where neither framework "
              "groups: " + "; ".join(
                  f"{r['version']}: " + ", ".join(
                      f"{name} {kept / total:.1%} of groups keep exactly 2"
                      for name, (kept, total) in r["output_groups"].items())
                  for r in results.values()) + "."]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.stage:
        stage = {"dense": stage_dense, "tfmot": stage_tfmot, "tfprune": stage_tfprune}[args.stage]
        print(json.dumps(stage(args)))
        return
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        print(f"initial weights: {run_stage('dense', work, args)['parameters']:,} parameters", flush=True)
        results = {}
        for stage in ("tfmot", "tfprune"):
            results[stage] = run_stage(stage, work, args)
            print(f"{results[stage]['version']}: {results[stage]['accuracy']:.2f} %, "
                  f"{results[stage]['train_seconds']:.0f} s", flush=True)
    text = table(results, args, (time.perf_counter() - start) / 60)
    print(text)
    if args.doc:
        from tfprune.experiments.documents import write_block  # imports TensorFlow: only here
        write_block(args.doc, "per-layer-2by4", text)


if __name__ == "__main__":
    main()
