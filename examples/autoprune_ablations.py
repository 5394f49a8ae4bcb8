"""AutoPrune's ablations on MNIST (issue 32): the three STEs × the optimiser of the auxiliary
parameters m (Adam, SGD with momentum 0.9) × decoupled or coupled ∂m × m's learning rate × m's weight
decay × the penalty λ (the recipe's by default), over several seeds, with the same recipe as
examples/autoprune_mnist.py. Each run is one CSV row
(resumable: rows already in --out are skipped); the summary (mean ± standard deviation over seeds,
and the STEs ranked by compression in each setting) is printed and written into docs/autoprune.md.

    python examples/autoprune_ablations.py --models lenet_300_100 --seeds 0,1,2
    python examples/autoprune_ablations.py --aux-weight-decays 0,1e-4 --aux-optimizers adam \\
        --decoupling decoupled --aux-lrs 0.01 --block autoprune-aux-decay   # the decay's effect
    python examples/autoprune_ablations.py --aux-optimizers sgd --decoupling decoupled --aux-lrs 0.1 \\
        --penalties 1e-3,1e-2 --stes softplus --seeds 0   # a λ search for SGD on m
"""

import argparse
import csv
import itertools
import math
import shlex
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfprune  # noqa: E402
from autoprune_mnist import CONFIG, ROOT, train_autoprune, train_dense  # noqa: E402
from tfprune import autoprune  # noqa: E402
from tfprune.experiments.documents import publish  # noqa: E402

FIELDS = ["model", "ste", "aux_optimizer", "decoupling", "aux_lr", "aux_weight_decay", "penalty", "seed", "epochs",
          "test_error", "compression", "kept", "params", "recovered", "seconds"]
AUX_OPTIMIZERS = {"adam": lambda lr: keras.optimizers.Adam(lr),
                  "sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9)}


def penalty_list(text):
    """--penalties: comma-separated "recipe" or finite λ ≥ 0, read once."""
    values = []
    for value in text.split(","):
        try:
            values.append(value if value == "recipe" else float(value))
        except ValueError:
            raise argparse.ArgumentTypeError(f'{value!r} is neither "recipe" nor a number') from None
        if value != "recipe" and not (math.isfinite(values[-1]) and values[-1] >= 0):
            raise argparse.ArgumentTypeError(f"λ must be a finite number ≥ 0, got {value}")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet_300_100", help=f"comma-separated, of {list(CONFIG)}")
    parser.add_argument("--stes", default=",".join(autoprune.STES))
    parser.add_argument("--aux-optimizers", default="adam,sgd")
    parser.add_argument("--decoupling", default="decoupled,coupled")
    parser.add_argument("--aux-lrs", default="0.01,0.1")
    parser.add_argument("--aux-weight-decays", default="0")
    parser.add_argument("--penalties", type=penalty_list, default="recipe",
                        help='λ during the penalty epochs, comma-separated numbers or "recipe" (each model\'s own)')
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (smoke runs)")
    parser.add_argument("--data-dir", default=str(ROOT / ".." / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "autoprune_ablations.csv"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "autoprune.md"), help='"" to skip')
    parser.add_argument("--block", default="autoprune-ablations", help="the marked block of --doc to replace")
    parser.add_argument("--table-only", action="store_true", help="summarise the rows of --out, run nothing")
    args = parser.parse_args(argv)
    for name in ("aux_optimizers", "decoupling"):
        values = getattr(args, name).split(",")
        allowed = list(AUX_OPTIMIZERS) if name == "aux_optimizers" else ["decoupled", "coupled"]
        if set(values) - set(allowed):
            parser.error(f"--{name.replace('_', '-')}: {sorted(set(values) - set(allowed))} not in {allowed}")
    return args


def penalties(args, model):
    """The λ values of --penalties for ``model``, "recipe" standing for its recipe's own."""
    return [CONFIG[model]["penalty"] if v == "recipe" else v for v in args.penalties]


def grid(args):
    """(model, aux optimiser, decoupling, m's lr, m's weight decay, λ, seed, STE) for every run asked for."""
    for model, optimizer, decoupling, lr, decay in itertools.product(
            args.models.split(","), args.aux_optimizers.split(","), args.decoupling.split(","),
            [float(v) for v in args.aux_lrs.split(",")], [float(v) for v in args.aux_weight_decays.split(",")]):
        for penalty, seed, ste in itertools.product(penalties(args, model), [int(v) for v in args.seeds.split(",")],
                                                    args.stes.split(",")):
            yield model, optimizer, decoupling, lr, decay, penalty, seed, ste


def key(row):
    return (row["model"], row["ste"], row["aux_optimizer"], row["decoupling"], float(row["aux_lr"]),
            float(row["aux_weight_decay"]), float(row["penalty"]), int(row["seed"]), int(row["epochs"]))


def read_rows(path):
    if not Path(path).exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def run(args):
    train = tfprune.data.load("mnist", "train", args.data_dir)
    test = tfprune.data.load("mnist", "test", args.data_dir)
    done = {key(row) for row in read_rows(args.out)}
    new_file = not Path(args.out).exists()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new_file:
            writer.writeheader()
        for model, optimizer, decoupling, lr, decay, penalty, seed, ste in grid(args):
            config = dict(CONFIG[model], penalty=penalty,
                          **({} if args.epochs is None else
                             {"epochs": args.epochs, "penalty_epochs": max(1, args.epochs - 2)}))
            row = dict(model=model, ste=ste, aux_optimizer=optimizer, decoupling=decoupling, aux_lr=lr,
                       aux_weight_decay=decay, penalty=penalty, seed=seed, epochs=config["epochs"])
            if key(row) in done:
                continue
            result = train_autoprune(model, ste, config, train, test, verbose=0, seed=seed,
                                     aux_optimizer=AUX_OPTIMIZERS[optimizer](lr),
                                     decoupled=decoupling == "decoupled", aux_weight_decay=decay)
            kept, params = (int(v.replace(",", "")) for v in result["kept"].split(" / "))
            row.update(test_error=round(result["error"], 3), compression=round(result["compression"], 2),
                       kept=kept, params=params, recovered=result["recovered"], seconds=round(result["seconds"], 1))
            writer.writerow(row)
            f.flush()
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def mean_spread(values, unit=""):
    """Mean ± sample standard deviation; compression ∞ (every weight pruned) is counted, not averaged."""
    values = np.asarray(values, float)
    if np.isinf(values).any():
        return f"∞ on {int(np.isinf(values).sum())} of {len(values)} seeds (every weight pruned)"
    return f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.2f}{unit}"


def _order(means):
    """The STEs by mean compression, highest first; equal means (to 0.01×) joined by "="."""
    ranked = sorted(means, key=means.get, reverse=True)
    text = ranked[:1]
    for previous, ste in zip(ranked, ranked[1:]):
        text += [" = " if round(means[previous], 2) == round(means[ste], 2) else " > ", ste]
    return "".join(text)


def summary(rows, args):
    """Mean ± standard deviation over seeds per setting, and the STEs ranked by mean compression."""
    wanted = {(m, s, o, d, lr, wd, p) for m, o, d, lr, wd, p, _, s in grid(args)}
    groups = {}
    for r in rows:
        k = key(r)
        if k[:7] in wanted:
            groups.setdefault(k[:7], []).append(r)
    lines = ["| network | aux optimiser | ∂m | m's lr | m's weight decay | λ | STE | seeds | compression | test error % | STE order by compression |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    settings = sorted({k[:1] + k[2:] for k in groups})
    for model, optimizer, decoupling, lr, decay, penalty in settings:
        means = {}
        for ste in args.stes.split(","):
            group = groups.get((model, ste, optimizer, decoupling, lr, decay, penalty), [])
            if group:
                means[ste] = np.mean([float(r["compression"]) for r in group])
        order = _order(means)
        for ste in args.stes.split(","):
            group = groups.get((model, ste, optimizer, decoupling, lr, decay, penalty), [])
            if not group:
                continue
            lines.append(
                f"| {model} | {optimizer} | {decoupling} | {lr:g} | {decay:g} | {penalty:g} | {ste} | "
                f"{','.join(sorted(r['seed'] for r in group))} | "
                f"{mean_spread([float(r['compression']) for r in group], '×')} | "
                f"{mean_spread([float(r['test_error']) for r in group])} | {order} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    command = "python examples/autoprune_ablations.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not args.table_only:
        run(args)
    seconds = sum(float(r["seconds"]) for r in read_rows(args.out))
    out = Path(args.out).resolve()
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    text = (f"Command: `{command.strip()}`; rows from `{shown}` "
            f"({seconds / 60:.0f} min of training in all, on this shared 2-core CPU).\n\n{summary(read_rows(args.out), args)}")
    publish(text, args.doc, args.block)


if __name__ == "__main__":
    main()
