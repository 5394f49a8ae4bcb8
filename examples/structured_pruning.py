"""Structured pruning criteria compared in one loop: L1 norm, first-order Taylor and SInGE.

Trains a network once, then prunes copies of it to the same MAC target with each criterion in
the same entwined prune/fine-tune loop (:func:`tfprune.structured.prune`) with the same budget,
and reports test accuracy before/after, parameters and MACs. Writes ``OUT.csv`` (one row per
criterion and step), ``OUT.md`` (the table) and ``OUT.png`` (accuracy against MACs).

    python examples/structured_pruning.py --model resnet20 --data cifar10 --train-samples 10000 \\
        --epochs 10 --kept-macs 0.5 --out benchmarks/results/structured_resnet20
    python examples/structured_pruning.py --model lenet_300_100 --data mnist --epochs 3 \\
        --kept-macs 0.5 --out benchmarks/results/structured_lenet300

``--step-fraction 1`` ranks every unit once and removes the lowest until the target (one-shot);
examples/structured_schemes.py compares that with the entwined loop over seeds. Writes ``OUT.json``
too (the arguments and each criterion's final figures).
"""

import argparse
import csv
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune import structured, training  # noqa: E402

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--data-dir", default=os.environ.get("TFPRUNE_DATA_DIR", str(DEFAULT_DATA_DIR)))
    parser.add_argument("--criteria", default="l1,taylor,singe")
    parser.add_argument("--train-samples", type=int, default=None, help="first N training examples (default all)")
    parser.add_argument("--val-samples", type=int, default=1000, help="held out from the training data")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the dense training")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--kept-macs", type=float, default=0.5, help="MACs kept, a fraction of the dense model's")
    parser.add_argument("--target-macs", dest="kept_macs", type=float, help=argparse.SUPPRESS)  # 0.1 spelling
    parser.add_argument("--step-fraction", type=float, default=0.1)
    parser.add_argument("--finetune-steps", type=int, default=50)
    parser.add_argument("--final-epochs", type=int, default=2)
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument("--samples", type=int, default=128, help="scoring examples per step")
    parser.add_argument("--singe-steps", type=int, default=4, help="Riemann steps of SInGE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense-cache", default=None,
                        help="a .keras file: load the trained dense model from it if it exists, else save it there")
    parser.add_argument("--out", required=True, help="output prefix (.csv, .md, .png are added)")
    args = parser.parse_args()

    x, y = tfprune.data.load(args.data, "train", args.data_dir)
    test = tfprune.data.load(args.data, "test", args.data_dir)
    if args.train_samples:
        x, y = x[: args.train_samples + args.val_samples], y[: args.train_samples + args.val_samples]
    validation = (x[-args.val_samples:], y[-args.val_samples:])
    train = (x[: -args.val_samples], y[: -args.val_samples])

    keras.utils.set_random_seed(args.seed)
    if args.dense_cache and os.path.exists(args.dense_cache):
        dense, seconds = keras.models.load_model(args.dense_cache), 0.0
    else:
        dense = tfprune.models.build(args.model, tfprune.data.input_shape(args.data),
                                     tfprune.data.num_classes(args.data))
        _, seconds = training.fit(dense, train, training.Recipe(epochs=args.epochs, learning_rate=args.lr))
        if args.dense_cache:
            dense.save(args.dense_cache)
    dense_accuracy = training.evaluate(dense, test)[0]
    macs, params = structured.counts(dense)
    print(f"{args.model}: {len(train[0])} training examples, {args.epochs} epochs ({seconds:.0f} s): test accuracy "
          f"{dense_accuracy:.4f}, {macs:,} MACs, {params:,} params", flush=True)

    finetune = training.Recipe(learning_rate=args.finetune_lr, batch_size=128)
    rows, results = [], []
    for name in args.criteria.split(","):
        options = {"steps": args.singe_steps} if name == "singe" else {}
        start = time.perf_counter()
        result = structured.prune(dense, name, data=train, kept_macs=args.kept_macs,
                                  step_fraction=args.step_fraction, finetune_steps=args.finetune_steps,
                                  final_finetune_epochs=args.final_epochs, recipe=finetune, validation=validation,
                                  samples=args.samples, seed=args.seed, **options)
        seconds = time.perf_counter() - start
        accuracy = training.evaluate(result.model, test)[0]
        final_macs, final_params = structured.counts(result.model)
        results.append(dict(criterion=name, test_accuracy=accuracy, macs=final_macs, params=final_params,
                            steps=len(result.steps) - 1, seconds=seconds))
        print(f"{name}: test accuracy {accuracy:.4f}, {final_macs:,} MACs ({final_macs / macs:.1%}), "
              f"{final_params:,} params ({final_params / params:.1%}), {seconds:.0f} s", flush=True)
        rows += [dict(criterion=name, **dataclasses.asdict(s)) for s in result.steps]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| criterion | test accuracy % | MACs | params | steps | time s |", "|---|---|---|---|---|---|",
             f"| dense | {100 * dense_accuracy:.2f} | {macs:,} (100 %) | {params:,} (100 %) | – | – |"]
    lines += [f"| {r['criterion']} | {100 * r['test_accuracy']:.2f} | {r['macs']:,} ({r['macs'] / macs:.1%}) | "
              f"{r['params']:,} ({r['params'] / params:.1%}) | {r['steps']} | {r['seconds']:.0f} |" for r in results]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    summary = dict(vars(args), dense_test_accuracy=dense_accuracy, dense_macs=macs, dense_params=params, results=results)
    Path(f"{out}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))
    plot(rows, dense_accuracy, f"{out}.png", f"{args.model} on {args.data}: validation accuracy while pruning")


def plot(rows, dense_accuracy, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["criterion"] for r in rows):
        mine = [r for r in rows if r["criterion"] == name]
        ax.plot([r["macs"] / mine[0]["macs"] for r in mine], [100 * r["val_accuracy"] for r in mine], marker="o",
                label=name)
    ax.axhline(100 * dense_accuracy, color="black", linestyle="--", label="dense (test)")
    ax.invert_xaxis()
    ax.set(xlabel="MACs kept (fraction of the dense model)", ylabel="validation accuracy % after each step",
           title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
