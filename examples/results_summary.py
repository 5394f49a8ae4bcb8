"""The tables of docs/results.md, from the CSV files the result scripts wrote.

    python examples/results_summary.py            # prints Markdown; reads docs/results and docs

Sections: SNIP on MNIST beside Lee et al. (2019) Table 1, critical compressions beside Tanaka
et al. (2020), the CIFAR-10 sweep and the iterative-SNIP/FORCE sweep.
"""

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from tfprune.collapse import critical_compression
from tfprune.sweep import AccuracySweep

PAPER_SNIP = {("lenet_300_100", 0.0): 1.7, ("lenet_300_100", 0.95): 1.6, ("lenet_300_100", 0.98): 2.4,
              ("lenet5_caffe", 0.0): 0.9, ("lenet5_caffe", 0.98): 0.8, ("lenet5_caffe", 0.99): 1.1}
PAPER_CRITICAL = {"random": 3.25, "magnitude": 2.75, "snip": 3.5, "grasp": 3.5, "synflow": 6.0}
METHODS = ("random", "magnitude", "snip", "grasp", "synflow")


def errors(rows, method, sparsity):
    """Test errors % of ``method`` at ``sparsity`` (compression 1/(1 − sparsity)), one per seed."""
    compression = 1 / (1 - sparsity) if sparsity else 1.0
    return [100 * (1 - r["test_accuracy"]) for r in rows
            if r["method"] == method and math.isclose(r["compression"], compression, rel_tol=1e-6)]


def cell(values):
    if not values:
        return "–"
    values = np.asarray(values)
    text = f"{values.mean():.2f}"
    return text if len(values) == 1 else f"{text} ({values.min():.2f}–{values.max():.2f})"


def snip_table(folder, runs):
    lines = ["| model | sparsity | paper SNIP | **tfprune SNIP** | random | magnitude | GraSP | SynFlow | epochs | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, path, epochs in runs:
        csv_path = folder / path / "sweep.csv"
        if not csv_path.exists():
            continue
        rows = AccuracySweep.from_csv(csv_path).rows
        seeds = len({r["seed"] for r in rows})
        for sparsity in sorted({round(1 - 1 / r["compression"], 4) for r in rows}):
            method = "dense" if sparsity == 0 else "snip"
            ours = cell(errors(rows, method, sparsity))
            others = [cell(errors(rows, m, sparsity)) if sparsity else "" for m in METHODS if m != "snip"]
            paper = PAPER_SNIP.get((model, sparsity), "–")
            label = "dense" if sparsity == 0 else f"{100 * sparsity:g} %"
            lines.append(f"| {model} | {label} | {paper} | **{ours}** | " + " | ".join(others) + f" | {epochs} | {seeds} |")
    return "\n".join(lines)


def collapse_table(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " | median | SynFlow paper |",
             "|---" * (len(seeds) + 3) + "|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        per_seed = []
        for seed in seeds:
            mine = [r for r in rows if r["method"] == method and r["seed"] == seed]
            per_seed.append(critical_compression([float(r["compression"]) for r in mine],
                                                 [int(r["layers_alive"]) < int(r["layers_total"]) for r in mine]))
        text = ["–" if c is None else f"10^{math.log10(c):.2f}" for c in per_seed]
        known = [math.log10(c) for c in per_seed if c is not None]
        median = f"10^{np.median(known):.2f}" if len(known) == len(per_seed) else "–"
        lines.append(f"| {method} | " + " | ".join(text) + f" | **{median}** | 10^{PAPER_CRITICAL.get(method, '–')} |")
    return "\n".join(lines)


def sweep_errors_table(path):
    rows = AccuracySweep.from_csv(path).rows
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "dense"))
    compressions = sorted({r["compression"] for r in rows if r["method"] != "dense"})
    head = "| method | " + " | ".join(f"{100 * (1 - 1 / c):.1f} % (10^{math.log10(c):.2f})" for c in compressions) + " |"
    lines = [head, "|---" * (len(compressions) + 1) + "|"]
    for method in methods:
        cells = [cell([100 * (1 - r["test_accuracy"]) for r in rows
                       if r["method"] == method and r["compression"] == c]) for c in compressions]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="docs/results")
    parser.add_argument("--collapse", default="docs/collapse_vgg16_c100.csv")
    args = parser.parse_args()
    folder = Path(args.results)
    print("## 1. SNIP on MNIST: test error %\n")
    runs = [("lenet_300_100", "snip_lenet300", 10), ("lenet_300_100", "snip_lenet300_40epochs", 40),
            ("lenet_300_100", "snip_lenet300_160epochs", 160),
            ("lenet5_caffe", "snip_lenet5", 5), ("lenet5_caffe", "snip_lenet5_20epochs", 20)]
    print(snip_table(folder, runs))
    if Path(args.collapse).exists():
        print("\n## 2. Critical compression, VGG-16-BN with CIFAR-100 shapes\n")
        print(collapse_table(args.collapse))
    for title, path in [("3. CIFAR-10 sweep: test accuracy %", folder / "cifar10_vgg11" / "sweep.md"),
                        ("4. Iterative SNIP and FORCE on MNIST: test error %", folder / "iterative_lenet300" / "sweep.csv")]:
        if path.exists():
            print(f"\n## {title}\n")
            print(path.read_text().strip() if path.suffix == ".md" else sweep_errors_table(path))


if __name__ == "__main__":
    main()
