"""SInGE's iterative (entwined) scheme against one-shot pruning (issue 32; Yvinec et al. 2022, Table 2).

For each seed, runs examples/structured_pruning.py twice on the same dense network (same seed): the
entwined loop (``--step-fraction``, default 0.1: remove 10 % of the removable units, fine-tune, repeat)
and one-shot (``--step-fraction 1``: rank every unit once, remove the lowest until the MAC target),
both followed by the same final fine-tuning (with ``--dense-cache-dir`` the dense network is trained
once per seed and loaded by the second run). Then prints, per criterion, the test accuracy of each
scheme as mean ± standard deviation over seeds and the paired difference (entwined − one-shot, per
seed), and writes the table into docs/results.md. Runs already on disk (``OUT.json``) are reused.

    python examples/structured_schemes.py --seeds 0,1,2,3,4 -- --model lenet_300_100 --data mnist \\
        --train-samples 20000 --epochs 3 --kept-macs 0.2
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tfprune.experiments.documents import publish  # noqa: E402

SCHEMES = {"entwined": None, "one-shot": "1.0"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--prefix", default=str(ROOT / "benchmarks" / "results" / "structured_schemes" / "run"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results.md"), help='"" to skip')
    parser.add_argument("--dense-cache-dir", default=None,
                        help="a folder: each seed's dense network is saved there by its first run, loaded by the second")
    parser.add_argument("--block", default="structured-schemes", help="the block of --doc the table is written to")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="after --: arguments of structured_pruning.py")
    args = parser.parse_args(argv)
    args.rest = [a for a in args.rest if a != "--"]
    if {"--step-fraction", "--seed", "--out", "--dense-cache"} & set(args.rest):
        parser.error("--step-fraction, --seed, --out and --dense-cache are set by this script")
    return args


def run(args, scheme, seed):
    out = f"{args.prefix}_{scheme}_seed{seed}"
    if not Path(f"{out}.json").exists():
        fraction = [] if SCHEMES[scheme] is None else ["--step-fraction", SCHEMES[scheme]]
        cache = []
        if args.dense_cache_dir is not None:
            Path(args.dense_cache_dir).mkdir(parents=True, exist_ok=True)
            cache = ["--dense-cache", str(Path(args.dense_cache_dir) / f"{Path(args.prefix).name}_dense_seed{seed}.keras")]
        command = [sys.executable, str(ROOT / "examples" / "structured_pruning.py"), *args.rest, *fraction, *cache,
                   "--seed", str(seed), "--out", out]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    return json.loads(Path(f"{out}.json").read_text())


def mean_sd(values):
    values = np.asarray(values, float)
    return f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.2f}"


def table(runs, seeds):
    criteria = [r["criterion"] for r in runs["entwined"][seeds[0]]["results"]]
    dense = [100 * runs["entwined"][s]["dense_test_accuracy"] for s in seeds]
    lines = ["| criterion | entwined: test accuracy % | one-shot | entwined − one-shot, per seed (points) | mean paired difference | entwined better in |",
             "|---|---|---|---|---|---|",
             f"| dense | {mean_sd(dense)} | | | | |"]
    for criterion in criteria:
        accuracy = {scheme: [100 * next(r["test_accuracy"] for r in runs[scheme][s]["results"] if r["criterion"] == criterion)
                             for s in seeds] for scheme in SCHEMES}
        differences = np.subtract(accuracy["entwined"], accuracy["one-shot"])
        lines.append(f"| {criterion} | {mean_sd(accuracy['entwined'])} | {mean_sd(accuracy['one-shot'])} | "
                     f"{' / '.join(f'{d:+.2f}' for d in differences)} | {mean_sd(differences)} | "
                     f"{int((differences > 0).sum())} of {len(seeds)} seeds |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {scheme: {seed: run(args, scheme, seed) for seed in seeds} for scheme in SCHEMES}
    command = "python examples/structured_schemes.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = f"Command: `{command}`; seeds {args.seeds}.\n\n{table(runs, seeds)}"
    publish(text, args.doc, args.block)


if __name__ == "__main__":
    main()
