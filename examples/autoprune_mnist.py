"""AutoPrune on MNIST: LeNet-300-100 and LeNet-5-Caffe with the three STEs, against the dense network
trained with the same budget (epochs, optimiser, batch size). Prints compression, MACs kept and
test error, and writes the table into docs/autoprune.md.

    python examples/autoprune_mnist.py                      # both networks, all STEs
    python examples/autoprune_mnist.py --models lenet_300_100 --stes softplus --doc ""

Recipe (CONFIG below): W trains with Adam(1e-3), m with its own Adam(1e-2) through
tfprune.autoprune.AuxOptimizer, batch 100, m starts at 1; λ is on for the first epochs and 0 for
the last ones (PenaltySchedule), which lets masks the data still needs come back. The dense
baseline uses the same epochs, Adam(1e-3) and batch size. Compression counts kernel weights
(biases are not pruned); MACs kept is effective MACs / dense MACs from tfprune.profile.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune import autoprune  # noqa: E402
from tfprune.experiments.documents import publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(batch_size=100, lr=1e-3, aux_lr=1e-2, initial_aux=1.0, seed=0)
CONFIG = {
    "lenet_300_100": dict(epochs=10, penalty=1e-4, penalty_epochs=8),
    "lenet5_caffe": dict(epochs=10, penalty=4e-4, penalty_epochs=8),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(CONFIG), default=list(CONFIG))
    parser.add_argument("--stes", nargs="+", choices=autoprune.STES, default=list(autoprune.STES))
    parser.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "autoprune.md"),
                        help='markdown file whose results block is replaced ("" to skip)')
    parser.add_argument("--verbose", type=int, default=1, help="1: AutoPrune's per-epoch line, 0: quiet")
    return parser.parse_args(argv)


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_error(model, x, y):
    """Test error in percent, from argmax predictions."""
    predictions = model.predict(x, batch_size=1000, verbose=0)
    return 100.0 * float(np.mean(np.argmax(predictions, axis=1) != y))


def train_dense(name, config, train, test, seed=COMMON["seed"]):
    keras.utils.set_random_seed(seed)
    model = getattr(tfprune.models, name)()
    model.compile(keras.optimizers.Adam(COMMON["lr"]), loss())
    start = time.time()
    model.fit(*train, batch_size=COMMON["batch_size"], epochs=config["epochs"], verbose=0)
    seconds = time.time() - start
    total = tfprune.profile(model, verbose=0).total
    return dict(method="dense", error=test_error(model, *test), compression=1.0, kept="all",
                macs_kept=100.0, macs=total.macs, seconds=seconds)


def train_autoprune(name, ste, config, train, test, verbose, seed=COMMON["seed"], aux_optimizer=None, **options):
    """One AutoPrune run; ``aux_optimizer`` defaults to Adam(aux_lr), ``options`` go to ``autoprune.wrap``
    (e.g. ``decoupled``, ``aux_weight_decay``)."""
    keras.utils.set_random_seed(seed)
    model = autoprune.wrap(getattr(tfprune.models, name)(), ste=ste, penalty=config["penalty"],
                           initial_aux=COMMON["initial_aux"], **options)
    aux_optimizer = aux_optimizer or keras.optimizers.Adam(COMMON["aux_lr"])
    optimizer = autoprune.AuxOptimizer(keras.optimizers.Adam(COMMON["lr"]), aux_optimizer)
    model.compile(optimizer, loss())
    schedule = autoprune.PenaltySchedule(lambda epoch: config["penalty"] if epoch < config["penalty_epochs"] else 0.0)
    monitor = autoprune.Monitor(verbose=verbose)
    start = time.time()
    model.fit(*train, batch_size=COMMON["batch_size"], epochs=config["epochs"], verbose=0,
              callbacks=[schedule, monitor])
    seconds = time.time() - start
    hardened = autoprune.harden(model)
    plain = tfprune.strip(hardened)
    weights = tfprune.report(hardened, verbose=0).total
    total = tfprune.profile(plain, verbose=0).total
    compression = weights.params / weights.kept if weights.kept else float("inf")  # inf: every weight pruned
    return dict(method=f"AutoPrune {ste}", error=test_error(plain, *test), compression=compression,
                kept=f"{weights.kept:,} / {weights.params:,}", macs_kept=100.0 * total.effective_macs / total.macs,
                macs=total.macs, seconds=seconds,
                recovered=sum(r["recovered"] for r in monitor.history))


def table(results):
    lines = [
        "| network | method | test error % | Δ vs dense (points) | compression | kernel weights kept | MACs kept | recoveries | train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        dense = rows[0]["error"]
        for r in rows:
            delta = "–" if r["method"] == "dense" else f"{r['error'] - dense:+.2f}"
            lines.append(
                f"| {name} | {r['method']} | {r['error']:.2f} | {delta} | {r['compression']:.1f}× | {r['kept']} | "
                f"{r['macs_kept']:.2f} % of {r['macs']:,} | {r.get('recovered', '–')} | {r['seconds']:.0f} s |"
            )
    return "\n".join(lines)


def settings():
    per_model = "; ".join(
        f"{name}: {c['epochs']} epochs, λ = {c['penalty']:g} for epochs 1–{c['penalty_epochs']}, then 0"
        for name, c in CONFIG.items()
    )
    return (f"Batch {COMMON['batch_size']}, W: Adam({COMMON['lr']:g}), m: Adam({COMMON['aux_lr']:g}) "
            f"(AuxOptimizer), m₀ = {COMMON['initial_aux']:g}, τ = 0, decoupled ∂m, R₁ penalty, seed "
            f"{COMMON['seed']}; {per_model}. Dense baseline: same epochs, Adam({COMMON['lr']:g}), batch "
            f"{COMMON['batch_size']}.")


def main(argv=None):
    args = parse_args(argv)
    command = "python examples/autoprune_mnist.py " + " ".join(sys.argv[1:] if argv is None else argv)
    start = time.time()
    train = tfprune.data.load("mnist", "train", args.data_dir)
    test = tfprune.data.load("mnist", "test", args.data_dir)
    results = {}
    for name in args.models:
        config = CONFIG[name]
        rows = [train_dense(name, config, train, test)]
        print(f"{name} dense: test error {rows[0]['error']:.2f} % ({rows[0]['seconds']:.0f} s)", flush=True)
        for ste in args.stes:
            row = train_autoprune(name, ste, config, train, test, args.verbose)
            print(f"{name} {row['method']}: test error {row['error']:.2f} %, compression {row['compression']:.1f}×, "
                  f"MACs kept {row['macs_kept']:.2f} % ({row['seconds']:.0f} s)", flush=True)
            rows.append(row)
        results[name] = rows
    wall = time.time() - start
    text = (f"Command: `{command.strip()}` — wall time {wall / 60:.1f} min on this 2-core CPU "
            f"(shared).\n\n{table(results)}\n\n{settings()}")
    publish(text, args.doc, "autoprune-mnist")


if __name__ == "__main__":
    main()
