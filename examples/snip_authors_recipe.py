"""SNIP on MNIST with the authors' training recipe (Lee et al. 2019; namhoonlee/snip-public).

    python examples/snip_authors_recipe.py --model lenet_300_100 --sparsities 0.95,0.98 --steps 250000 \\
        --out benchmarks/results/snip_authors_recipe/lenet_300_100.csv

What differs from the sweeps of docs/results.md, section 1, and follows the official code or the paper:

* inputs divided by 255, then standardised by one mean and one standard deviation over all
  60,000 training images (the official ``mnist.py``);
* a random 10 % of the training set held out for validation (``RandomState(9)``, as its
  ``dataset.py``); training on the other 54,000;
* the mask from SNIP on one batch of 100 training examples, biases included (its ``prn_keys``),
  then training starts from a *second, independently initialised* set of weights under that mask
  (its ``weights_ap``);
* the loss plus ``0.00025 · Σ w²`` over every kernel and bias (an L2 term coupled to the gradient,
  not Keras's decoupled weight decay);
* SGD with momentum 0.9, batch 100, learning rate 0.1 divided by 10 every 25,000 steps, 250,000
  steps (the paper's Section 5);
* the network reported is the one with the best validation accuracy among those checked every
  ``--check-every`` steps; its test error is printed beside the last network's. (The official
  ``test.py`` reports the best *test* accuracy over its last checkpoints; that selects on the test
  set and is not done here.)

Each finished network is appended to the CSV at once, so an interrupted run resumes.
"""

import argparse
import csv
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402

COLUMNS = ["model", "sparsity", "seed", "steps", "best_step", "validation_error", "test_error_selected",
           "test_error_last", "kept_fraction", "seconds"]


def standardised_mnist(data_dir):
    """(train, validation, test) arrays: /255, then the train set's scalar mean and std; a 10 % split."""
    x, y = tfprune.data.load("mnist", "train", data_dir)
    x_test, y_test = tfprune.data.load("mnist", "test", data_dir)
    scale = 255.0 if x.max() > 1.5 else 1.0
    x, x_test = x.astype("float32") / scale, x_test.astype("float32") / scale
    mean, std = x.mean(), x.std()
    x, x_test = (x - mean) / std, (x_test - mean) / std
    order = np.random.RandomState(9).permutation(len(x))
    held = order[: len(x) // 10]
    kept = order[len(x) // 10:]
    return (x[kept], y[kept]), (x[held], y[held]), (x_test, y_test)


def regularised(model, l2):
    """``model`` rebuilt from its config with an L2 term ``l2 · Σ w²`` on every kernel and bias."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] in ("Dense", "Conv2D"):
            layer["config"]["kernel_regularizer"] = keras.regularizers.serialize(keras.regularizers.L2(l2))
            layer["config"]["bias_regularizer"] = keras.regularizers.serialize(keras.regularizers.L2(l2))
    return keras.Model.from_config(config)


class SelectOnValidation(keras.callbacks.Callback):
    """Every epoch (``check-every`` steps), keeps the test error of the best network on validation."""

    def __init__(self, validation, test, steps_per_check, report_every=25):
        super().__init__()
        self.validation, self.test = validation, test
        self.steps_per_check, self.report_every = steps_per_check, report_every
        self.best = (np.inf, None, None)

    def on_epoch_end(self, epoch, logs=None):
        val_error = 1 - self.model.evaluate(*self.validation, batch_size=1000, verbose=0)[1]
        if val_error < self.best[0]:
            test_error = 1 - self.model.evaluate(*self.test, batch_size=1000, verbose=0)[1]
            self.best = (val_error, test_error, epoch + 1)
        if (epoch + 1) % self.report_every == 0:
            print(f"  step {(epoch + 1) * self.steps_per_check}: validation error {100 * val_error:.2f} % "
                  f"(best {100 * self.best[0]:.2f} % at step {self.best[2] * self.steps_per_check})", flush=True)


def train_one(args, sparsity, seed, splits):
    train, validation, test = splits
    keras.utils.set_random_seed(seed)
    scored = tfprune.models.build(args.model)
    # A second, independent initialisation of the same network, as the official code trains.
    keras.utils.set_random_seed(seed + 1000)
    model = regularised(tfprune.models.build(args.model), args.l2)
    if sparsity > 0:
        pruned = tfprune.prune_at_init(scored, "snip", sparsity=sparsity, data=(train[0][:100], train[1][:100]),
                                       include_bias=True, verbose=0, on_collapse="ignore")  # zero biases score 0
        model = tfprune.wrap(model, include_bias=True)
        tfprune.apply_masks(model, tfprune.get_masks(pruned))
    boundaries = list(range(args.decay_every, args.steps, args.decay_every))
    rate = keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries, [args.lr * 0.1 ** i for i in range(len(boundaries) + 1)]) if boundaries else args.lr
    model.compile(keras.optimizers.SGD(rate, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=True)
    steps_per_epoch = args.check_every
    epochs = args.steps // steps_per_epoch
    dataset = (tf.data.Dataset.from_tensor_slices(train).shuffle(len(train[0]), seed=seed, reshuffle_each_iteration=True)
               .batch(100, drop_remainder=True).repeat().prefetch(2))
    select = SelectOnValidation(validation, test, steps_per_epoch)
    start = time.perf_counter()
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[select], verbose=0)
    last = 1 - model.evaluate(*test, batch_size=1000, verbose=0)[1]
    kept = tfprune.masks.density(tfprune.get_masks(model)) if sparsity > 0 else 1.0
    return dict(model=args.model, sparsity=sparsity, seed=seed, steps=epochs * steps_per_epoch, best_step=select.best[2] * steps_per_epoch,
                validation_error=round(100 * select.best[0], 3), test_error_selected=round(100 * select.best[1], 3),
                test_error_last=round(100 * last, 3), kept_fraction=round(kept, 6),
                seconds=round(time.perf_counter() - start, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet_300_100", choices=["lenet_300_100", "lenet5_caffe"])
    parser.add_argument("--sparsities", default="0.95,0.98", help="comma-separated; 0 trains the dense network")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=250_000)
    parser.add_argument("--decay-every", type=int, default=25_000)
    parser.add_argument("--check-every", type=int, default=1_000, help="steps between validation checks")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--l2", type=float, default=0.00025)
    parser.add_argument("--data-dir", default=os.environ.get("TFPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")))
    parser.add_argument("--out", default="snip_authors_recipe.csv")
    args = parser.parse_args()
    splits = standardised_mnist(args.data_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        with out.open() as f:
            done = {(float(r["sparsity"]), int(r["seed"])) for r in csv.DictReader(f)}
    else:
        with out.open("w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
    for seed in (int(s) for s in args.seeds.split(",")):
        for sparsity in (float(s) for s in args.sparsities.split(",")):
            if (sparsity, seed) in done:
                continue
            row = train_one(args, sparsity, seed, splits)
            with out.open("a", newline="") as f:
                csv.writer(f).writerow([row[c] for c in COLUMNS])
            print(row, flush=True)


if __name__ == "__main__":
    main()
