"""The tables of docs/results.md, from the CSV files the result scripts wrote.

    python benchmarks/results_summary.py            # prints Markdown; reads docs/results and docs

Sections: SNIP on MNIST beside Lee et al. (2019) Table 1, critical compressions beside Tanaka
et al. (2020), the CIFAR-10 sweep and the iterative-SNIP/FORCE sweep.
"""

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from tfprune.experiments.collapse import critical_compression
from tfprune.experiments.sweep import AccuracySweep

PAPER_SNIP = {("lenet_300_100", 0.0): 1.7, ("lenet_300_100", 0.95): 1.6, ("lenet_300_100", 0.98): 2.4,
              ("lenet5_caffe", 0.0): 0.9, ("lenet5_caffe", 0.98): 0.8, ("lenet5_caffe", 0.99): 1.1}
PAPER_CRITICAL = {"random": 3.25, "magnitude": 2.75, "snip": 3.5, "grasp": 3.5, "grasp_synflow_code": 3.5, "synflow": 6.0}
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


def collapse_table(paths):
    """Median and range over seeds of each method's critical compression, from collapse CSVs."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    lines = ["| method | median | range | seeds | grid swept | SynFlow paper |", "|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        seeds = sorted({int(r["seed"]) for r in mine})
        per_seed = []
        for seed in seeds:
            run = [r for r in mine if int(r["seed"]) == seed]
            per_seed.append(critical_compression([float(r["compression"]) for r in run],
                                                 [int(r["layers_alive"]) < int(r["layers_total"]) for r in run]))
        known = [math.log10(c) for c in per_seed if c is not None]
        logs = [float(r["log10_compression"]) for r in mine]
        grid = f"10^{min(logs):g} … 10^{max(logs):g}"
        if len(known) == len(per_seed):
            median, spread = f"**10^{np.median(known):.2f}**", f"10^{min(known):.2f} – 10^{max(known):.2f}"
        else:
            median, spread = "collapsed at the smallest on some seed", "–"
        lines.append(f"| {method} | {median} | {spread} | {len(seeds)} | {grid} | 10^{PAPER_CRITICAL.get(method, '–')} |")
    return "\n".join(lines)


def recipe_table(paths):
    """SNIP with the authors' recipe (examples/snip_authors_recipe.py): test error % beside the paper's."""
    lines = ["| model | sparsity | paper SNIP | **tfprune SNIP, selected on validation** | last network | "
             "validation error | selected at step | steps | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for key in dict.fromkeys((r["model"], float(r["sparsity"])) for r in rows):
            mine = [r for r in rows if (r["model"], float(r["sparsity"])) == key]
            label = "dense" if key[1] == 0 else f"{100 * key[1]:g} %"
            values = {c: [float(r[c]) for r in mine] for c in ("test_error_selected", "test_error_last",
                                                                "validation_error")}
            steps = sorted({int(r["steps"]) for r in mine})
            lines.append(f"| {key[0]} | {label} | {PAPER_SNIP.get(key, '–')} | **{cell(values['test_error_selected'])}** | "
                         f"{cell(values['test_error_last'])} | {cell(values['validation_error'])} | "
                         f"{', '.join(r['best_step'] for r in mine)} | {', '.join(map(str, steps))} | {len(mine)} |")
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
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--collapse", nargs="+", default=["benchmarks/results/collapse_vgg16_c100.csv",
                                                          "benchmarks/results/collapse_vgg16_c100_synflow.csv"])
    args = parser.parse_args()
    folder = Path(args.results)
    print("## 1. SNIP on MNIST: test error %\n")
    runs = [("lenet_300_100", "snip_lenet300", 10), ("lenet_300_100", "snip_lenet300_40epochs", 40),
            ("lenet_300_100", "snip_lenet300_160epochs", 160),
            ("lenet5_caffe", "snip_lenet5", 5), ("lenet5_caffe", "snip_lenet5_20epochs", 20)]
    print(snip_table(folder, runs))
    recipe = sorted((folder / "snip_authors_recipe").glob("*.csv"))
    if recipe:
        print("\n## 1. SNIP with the authors' recipe: test error %\n")
        print(recipe_table(recipe))
    collapse = [path for path in args.collapse if Path(path).exists()]
    if collapse:
        print("\n## 2. Critical compression, VGG-16-BN with CIFAR-100 shapes\n")
        print(collapse_table(collapse))
    for title, path in [("3. CIFAR-10 sweep: test accuracy %", folder / "cifar10_vgg11" / "sweep.md"),
                        ("4. Iterative SNIP and FORCE on MNIST: test error %", folder / "iterative_lenet300" / "sweep.csv")]:
        if path.exists():
            print(f"\n## {title}\n")
            print(path.read_text().strip() if path.suffix == ".md" else sweep_errors_table(path))


if __name__ == "__main__":
    main()
