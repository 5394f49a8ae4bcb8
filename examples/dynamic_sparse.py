"""Dynamic sparse training (RigL, SET) beside pruning at initialisation and gradual pruning, in one pipeline.

On CIFAR-10, the quarter-width VGG-11 of the sweeps (results section 3), at each sparsity and
seed: dense; static random masks with ERK budgets; SNIP and SynFlow (global, at
initialisation); gradual magnitude pruning (``GradualPruning``, ``PolynomialDecay`` from 0 to the
sparsity over the first 75 % of the steps); SET and RigL (``DynamicSparse``, ERK, drop fraction
0.3 with the cosine schedule, updates up to 75 % of the steps). Every network of a seed starts from
the same initial weights and trains with the same recipe (the sweeps': SGD with Nesterov momentum,
learning rate 0.1 with cosine decay, weight decay 5e-4, batch 128) on the same training subset,
and is tested on the 10,000 test images. Each finished network is appended to the CSV at once;
running the same command again skips the networks already there (the CSV's configuration must
match). At the end the table goes into docs/results.md between the ``dynamic-sparse`` markers.

    python examples/dynamic_sparse.py                          # the default budget, 2 seeds
    python examples/dynamic_sparse.py --train-samples 256 --test-samples 256 --epochs 1 \\
        --sparsities 0.9 --seeds 1 --out /tmp/dst_tiny --doc ""   # a quick check
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

import tfprune
from tfprune import training
from tfprune.callbacks import DynamicSparse, GradualPruning
from tfprune.base.files import replacing_text
from tfprune.sparsity.schedules import PolynomialDecay
from tfprune.experiments.documents import write_block
from tfprune.experiments.sweep import kept_weights

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dense", "random_erk", "snip", "synflow", "gradual", "set", "rigl")
FIELDS = ("method", "sparsity", "seed", "test_accuracy", "measured_sparsity", "seconds")


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--sparsities", default="0.9,0.95", help="comma-separated, each in (0, 1)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0 .. N-1")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"a comma-separated subset of {METHODS}")
    parser.add_argument("--train-samples", type=int, default=6000, help="training images (a seeded random subset)")
    parser.add_argument("--test-samples", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--samples", type=int, default=100, help="scoring examples for SNIP")
    parser.add_argument("--update-frequency", type=int, default=10,
                        help="steps between mask updates (gradual, SET, RigL)")
    parser.add_argument("--drop-fraction", type=float, default=0.3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dynamic_sparse"), help="folder of the CSV")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results.md"),
                        help='markdown file whose dynamic-sparse block is replaced ("" to skip)')
    args = parser.parse_args(argv)
    args.sparsities = [float(s) for s in args.sparsities.split(",")]
    args.methods = args.methods.split(",")
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown or not all(0 < s < 1 for s in args.sparsities):
        parser.error(f"methods must be among {METHODS} (got unknown {unknown}) and sparsities in (0, 1)")
    return args


def load_data(args):
    x, y = tfprune.data.load("cifar10", "train", data_dir=args.data_dir)
    order = np.random.default_rng(1234).permutation(len(x))[:args.train_samples]  # the data are sorted by class
    x_test, y_test = tfprune.data.load("cifar10", "test", data_dir=args.data_dir)
    test_order = np.random.default_rng(1234).permutation(len(x_test))[:args.test_samples]
    return (x[order], y[order]), (x_test[test_order], y_test[test_order])


def build():
    return tfprune.models.vgg(11, width=0.25)


def run_network(method, sparsity, seed, train, test, recipe, args):
    """Builds, prunes or wraps, trains and tests one network; returns its CSV row."""
    keras.utils.set_random_seed(seed)
    model = build()
    steps = recipe.epochs * -(-len(train[0]) // recipe.batch_size)
    end_step = max(1, int(0.75 * steps))
    callbacks = []
    rng = np.random.default_rng(seed)
    scoring = tuple(a[rng.permutation(len(train[0]))[:args.samples]] for a in train)
    start = time.perf_counter()
    if method == "random_erk":
        model = tfprune.prune_at_init(model, "random", sparsity=sparsity, scope="local", allocation="erk", seed=seed,
                                      verbose=0, on_collapse="ignore")
    elif method in ("snip", "synflow"):
        model = tfprune.prune_at_init(model, method, sparsity=sparsity, data=scoring if method == "snip" else None,
                                      seed=seed, verbose=0, on_collapse="ignore")
    elif method == "gradual":
        model = tfprune.wrap(model)
        callbacks.append(GradualPruning(PolynomialDecay(0.0, sparsity, 0, end_step, frequency=args.update_frequency)))
    elif method in ("set", "rigl"):
        model = tfprune.wrap(model)
        callbacks.append(DynamicSparse(method, sparsity, update_frequency=args.update_frequency,
                                       drop_fraction=args.drop_fraction, end_step=end_step, seed=seed,
                                       data=train if method == "rigl" else None, samples=len(train[0]),
                                       batch_size=recipe.batch_size))
    training.fit(model, train, recipe, callbacks=callbacks)
    accuracy, _ = training.evaluate(model, test)
    kept, total, _ = kept_weights(model)
    return dict(method=method, sparsity=sparsity if method != "dense" else 0.0, seed=seed, test_accuracy=accuracy,
                measured_sparsity=1 - kept / total, seconds=time.perf_counter() - start)


def read_rows(csv_path, config):
    """The rows already in ``csv_path`` if its configuration is ``config``; raises otherwise."""
    config_path = csv_path.with_suffix(".json")
    if not csv_path.exists():
        return []
    saved = json.loads(config_path.read_text()) if config_path.exists() else None
    if saved != config:
        raise SystemExit(f"{csv_path} was made with another configuration ({config_path}): "
                         "give another --out, or remove it to start again")
    with open(csv_path, newline="") as f:
        return [dict(r, sparsity=float(r["sparsity"]), seed=int(r["seed"]), test_accuracy=float(r["test_accuracy"]),
                     measured_sparsity=float(r["measured_sparsity"]), seconds=float(r["seconds"]))
                for r in csv.DictReader(f)]


def write_rows(csv_path, rows):
    with replacing_text(csv_path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def table(rows, args, command, minutes):
    def cell(method, sparsity):
        values = [100 * r["test_accuracy"] for r in rows if r["method"] == method and r["sparsity"] == sparsity]
        if not values:
            return ""
        return f"{np.mean(values):.2f} ({min(values):.2f}–{max(values):.2f})"

    steps = args.epochs * -(-args.train_samples // args.batch_size)
    lines = [
        f"Command: `{command}` ({minutes:.0f} min on this machine's 2 shared cores).",
        "",
        f"Budget: quarter-width VGG-11 (BN), {args.train_samples} CIFAR-10 training images, {args.epochs} epochs "
        f"({steps} steps of {args.batch_size}), SGD-Nesterov lr {args.lr} cosine, weight decay {args.weight_decay}; "
        f"{args.test_samples} test images; seeds 0–{args.seeds - 1}; gradual, SET and RigL update every "
        f"{args.update_frequency} steps up to step {max(1, int(0.75 * steps))} (75 %), SET/RigL drop fraction "
        f"{args.drop_fraction} (cosine), ERK. Test accuracy %, mean (min–max) over seeds:",
        "",
        "| method | " + " | ".join(f"sparsity {s:g}" for s in args.sparsities) + " |",
        "|---|" + "---|" * len(args.sparsities),
        f"| dense | {cell('dense', 0.0)} |" + " |" * (len(args.sparsities) - 1),
    ]
    names = {"random_erk": "static random (ERK)", "snip": "SNIP (at init)", "synflow": "SynFlow (at init)",
             "gradual": "gradual magnitude", "set": "SET", "rigl": "RigL"}
    for method in args.methods:
        if method != "dense":
            lines.append(f"| {names[method]} | " + " | ".join(cell(method, s) for s in args.sparsities) + " |")
    return "\n".join(lines)


def reproducing_command(args):
    """The command with every setting that shapes the results spelled out (defaults may change)."""
    out = os.path.relpath(args.out, ROOT)
    return (f"python examples/dynamic_sparse.py --sparsities {','.join(f'{s:g}' for s in args.sparsities)} "
            f"--seeds {args.seeds} --methods {','.join(args.methods)} --train-samples {args.train_samples} "
            f"--test-samples {args.test_samples} --epochs {args.epochs} --batch-size {args.batch_size} "
            f"--lr {args.lr:g} --weight-decay {args.weight_decay:g} --samples {args.samples} "
            f"--update-frequency {args.update_frequency} --drop-fraction {args.drop_fraction:g} --out {out}")


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    recipe = training.Recipe(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                             weight_decay=args.weight_decay)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "doc", "data_dir")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "runs.csv"
    rows = read_rows(csv_path, config)
    with replacing_text(csv_path.with_suffix(".json")) as f:
        json.dump(config, f, indent=1, sort_keys=True)
    train, test = load_data(args)
    done = {(r["method"], r["sparsity"], r["seed"]) for r in rows}
    cells = [("dense", 0.0, seed) for seed in range(args.seeds) if "dense" in args.methods]
    cells += [(m, s, seed) for seed in range(args.seeds) for s in args.sparsities for m in args.methods if m != "dense"]
    start = time.perf_counter()
    for number, (method, sparsity, seed) in enumerate(cells, 1):
        if (method, sparsity, seed) in done:
            continue
        row = run_network(method, sparsity, seed, train, test, recipe, args)
        rows.append(row)
        write_rows(csv_path, rows)
        print(f"[{number}/{len(cells)}] {method} sparsity {row['measured_sparsity']:.4f} seed {seed}: "
              f"test accuracy {row['test_accuracy']:.4f} ({row['seconds']:.0f} s)", flush=True)
    minutes = sum(r["seconds"] for r in rows) / 60
    text = table(rows, args, reproducing_command(args), minutes)
    print(text)
    if args.doc:
        write_block(args.doc, "dynamic-sparse", text)
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min; runs in {csv_path}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
