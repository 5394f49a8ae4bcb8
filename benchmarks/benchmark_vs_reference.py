"""Time and peak memory of pruning at initialisation: tfprune against the PyTorch reference loop.

Every run is one fresh process — ``benchmarks/scoring_benchmark.py MODEL METHOD`` (tfprune),
``benchmarks/reference_pytorch.py MODEL METHOD`` (the reference) or, for the one-shot methods,
``benchmarks/reference_tensorflow.py MODEL METHOD [--eager]`` (the reference's loop written directly
in TensorFlow: the frameworks ``tensorflow`` and ``tensorflow-eager``) — that prunes one model
with one method to compression 100 and prints one JSON line; its timed call is a user's true first
call (tracing included) and its peak RSS is its own. This driver runs them interleaved — repeat 1
of every (model, method) for each framework in turn, then repeat 2, … — so that drift on a shared
machine hits all alike, appends each line to ``--out`` as it comes, and prints the medians as
markdown tables (with tfprune / reference repeat by repeat, and, where the TensorFlow loop ran,
how each row's gap splits between TensorFlow and tfprune). A run that fails or times out is recorded with its error and the others go on;
run the same command again to resume: finished runs are skipped, failed ones retried.

The full measurement (tens of minutes; CIFAR VGG-16-BN and ResNet-20 on 100 samples,
ImageNet-size ResNet50 and MobileNetV2 on 32 samples of 224×224):

    python benchmarks/benchmark_vs_reference.py --repeats 3 --out benchmarks/results/benchmark_vs_reference.jsonl

A small check, and the tables again from a file without running anything:

    python benchmarks/benchmark_vs_reference.py --models resnet20 --methods snip,magnitude --repeats 1 \\
        --out /tmp/a.jsonl
    python benchmarks/benchmark_vs_reference.py --table-only --out /tmp/a.jsonl

This module also holds what both run scripts share (the model settings, memory readings, the
JSON line); it imports only the standard library.
"""

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
COMPRESSION = 100.0
METHODS = ("synflow", "snip", "grasp", "magnitude")
ONE_SHOT = ("snip", "grasp", "magnitude")
#: Rounds of each method (SynFlow's default; the others score once).
ROUNDS = {"synflow": 100, "snip": 1, "grasp": 1, "magnitude": 1}


@dataclasses.dataclass(frozen=True)
class Framework:
    """A run script, the methods it runs, its extra arguments and environment variables."""

    script: str
    methods: tuple = METHODS
    options: tuple = ()
    env: tuple = ()  # (name, value) pairs, e.g. the Keras backend


FRAMEWORKS = {
    "tfprune": Framework("scoring_benchmark.py"),
    "reference": Framework("reference_pytorch.py"),
    "tensorflow": Framework("reference_tensorflow.py", ONE_SHOT),
    "tensorflow-eager": Framework("reference_tensorflow.py", ONE_SHOT, ("--eager",)),
    "tfprune-jax": Framework("scoring_benchmark.py", env=(("KERAS_BACKEND", "jax"),)),
    "tfprune-torch": Framework("scoring_benchmark.py", env=(("KERAS_BACKEND", "torch"),)),
}
BACKENDS = {"tfprune": "TensorFlow", "tfprune-jax": "JAX", "tfprune-torch": "PyTorch"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What both frameworks build and feed for one model name.

    Attributes:
        image_size: Height and width of the square RGB input.
        classes: Number of output classes (labels are drawn in [0, classes)).
        samples: Random examples that SNIP and GraSP score on.
        prunable: Prunable kernel entries, the same in every framework (each run script asserts
            its own count: Keras's conv biases, like torchvision's Linear biases, are not pruned;
            depthwise kernels are, on every side).
    """

    image_size: int
    classes: int
    samples: int
    prunable: int


MODELS = {
    "vgg16": ModelSpec(32, 10, 100, 14_715_584),
    "resnet20": ModelSpec(32, 10, 100, 270_896),
    "resnet50": ModelSpec(224, 1000, 32, 25_502_912),
    "mobilenetv2": ModelSpec(224, 1000, 32, 3_469_760),
}


# ---------------------------------------------------------------------------------------------
# Shared by the run scripts
# ---------------------------------------------------------------------------------------------

def rss_mb():
    """This process's resident memory now (``VmRSS`` of ``/proc/self/status``), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status: memory readings need Linux")


def peak_rss_mb():
    """This process's peak resident memory so far (``ru_maxrss``, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_arguments(description, methods, eager_option=False):
    """The command line of a run script: ``MODEL METHOD``, checked against the known names.

    Args:
        description: The script's one-line description.
        methods: The methods the script can run.
        eager_option: Whether the script takes ``--eager``.

    Returns:
        The parsed arguments (``model``, ``method``, and ``eager`` if asked for).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", choices=list(MODELS))
    parser.add_argument("method", choices=list(methods))
    if eager_option:
        parser.add_argument("--eager", action="store_true", help="run the one-shot passes eagerly")
    return parser.parse_args()


def emit(record):
    """Prints ``record`` as the run's one JSON line (the driver reads the last line of stdout)."""
    print(json.dumps(record), flush=True)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def csv_list(choices):
    """An argparse type: a comma-separated list, each item one of ``choices``."""
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in items if s not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}; got {text!r}")
        return items
    return parse


def read_records(path):
    """The JSON records of ``path`` (none if it does not exist).

    Raises:
        SystemExit: if a line is not JSON, naming the file and line.
    """
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    sys.exit(f"{path} line {number} is not a JSON record ({error}); "
                             "fix or remove that line, or use another --out")
    return records


def key(record):
    return record["framework"], record["model"], record["method"], record["repeat"]


def run_one(framework, model, method, repeat, timeout):
    """Runs one fresh process and returns its record, or a record with ``error`` if it failed."""
    runner = FRAMEWORKS[framework]
    command = [sys.executable, os.path.join(HERE, runner.script), model, method, *runner.options]
    record = {"framework": framework, "model": model, "method": method, "repeat": repeat}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **dict(runner.env)})
    except subprocess.TimeoutExpired:
        return {**record, "error": f"timed out after {timeout:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**record, "error": f"exit code {done.returncode}: {tail}"}
    try:
        return {**json.loads(lines[-1]), **record}
    except json.JSONDecodeError:
        return {**record, "error": f"last line of output is not JSON: {lines[-1][:200]}"}


def run_all(args):
    """Runs the missing (framework, model, method, repeat) combinations, interleaved, appending each."""
    done = {key(r) for r in read_records(args.out) if "error" not in r}
    for repeat in range(1, args.repeats + 1):
        for model in args.models:
            for method in args.methods:
                for framework in args.frameworks:
                    if (framework, model, method, repeat) in done or method not in FRAMEWORKS[framework].methods:
                        continue
                    record = run_one(framework, model, method, repeat, args.timeout)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    outcome = record.get("error") or (f"total {record['total']:.2f} s, "
                                                      f"peak {record['peak_rss_mb']:.0f} MiB")
                    print(f"repeat {repeat} {framework} {model} {method}: {outcome}", file=sys.stderr, flush=True)


def medians(records):
    """{(framework, model, method): {field: median}, plus ``runs`` and the first record's fixed fields}."""
    groups = {}
    for r in records:
        if "error" not in r:
            groups.setdefault((r["framework"], r["model"], r["method"]), []).append(r)
    out = {}
    for group, runs in groups.items():
        numbers = {k for r in runs for k, v in r.items() if isinstance(v, float)}
        out[group] = {k: statistics.median(r[k] for r in runs if k in r) for k in numbers}
        out[group].update(runs=len(runs), rounds=runs[0]["rounds"], prunable=runs[0]["prunable"])
    return out


def paired_ratios(records, model, method):
    """tfprune's total over the reference's, repeat by repeat (the runs interleaved side by side)."""
    totals = {(r["framework"], r["repeat"]): r["total"] for r in records
              if "error" not in r and r["model"] == model and r["method"] == method}
    return [totals[("tfprune", k)] / totals[("reference", k)] for f, k in sorted(totals)
            if f == "tfprune" and ("reference", k) in totals]


def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def tables(records):
    """The markdown tables of the medians (with tfprune / reference repeat by repeat): every (model,
    method), the SynFlow floor, and the same loop in TensorFlow where it ran."""
    m = medians(records)
    if not m:
        return "no finished runs recorded yet" + _failures(records)
    rows = sorted({(model, method) for _, model, method in m},
                  key=lambda r: (list(MODELS).index(r[0]), list(METHODS).index(r[1])))
    lines = ["| model | method | rounds | tfprune scoring s | tfprune masking s | of which collapse check s | "
             "tfprune wrap s | "
             "**tfprune total s** | reference scoring s | reference masking s | **reference total s** | "
             "total ratio | per-repeat ratios | tfprune peak RSS MiB | reference peak RSS MiB | RSS ratio | "
             "repeats tfprune / reference |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for model, method in rows:
        tf_, ref = m.get(("tfprune", model, method), {}), m.get(("reference", model, method), {})
        rounds = tf_.get("rounds", ref.get("rounds"))
        lines.append(
            f"| {model} | {method} | {rounds} | {fmt(tf_.get('scoring'))} | {fmt(tf_.get('masking'))} | "
            f"{fmt(tf_.get('collapse_check'))} | {fmt(tf_.get('wrap'))} | **{fmt(tf_.get('total'))}** | {fmt(ref.get('scoring'))} | "
            f"{fmt(ref.get('masking'))} | **{fmt(ref.get('total'))}** | "
            f"{fmt(ratio(tf_.get('total'), ref.get('total')))} | "
            f"{', '.join(fmt(r) for r in paired_ratios(records, model, method)) or '–'} | {fmt(tf_.get('peak_rss_mb'), 0)} | "
            f"{fmt(ref.get('peak_rss_mb'), 0)} | {fmt(ratio(tf_.get('peak_rss_mb'), ref.get('peak_rss_mb')))} | "
            f"{tf_.get('runs', 0)} / {ref.get('runs', 0)} |")
    floors = [(model, m[("tfprune", model, method)]) for model, method in rows
              if method == "synflow" and ("tfprune", model, method) in m]
    if floors:
        lines += ["", "| model | tfprune SynFlow total s | floor s | of which forward+backward s | "
                      "of which selections s | total / floor | repeats |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for model, r in floors:
            lines.append(f"| {model} | {fmt(r['total'])} | {fmt(r['floor'])} | {fmt(r['floor_forward_backward'])} | "
                         f"{fmt(r['floor_selections'])} | {fmt(ratio(r['total'], r['floor']))} | {r['runs']} |")
    lines += framework_table(m, rows)
    lines += backend_table(m, rows)
    counts = {}
    for (framework, model, _), r in m.items():
        counts.setdefault(model, {})[framework] = r["prunable"]
    lines.append("")
    for model, by_framework in counts.items():
        tf_n, ref_n = by_framework.get("tfprune"), by_framework.get("reference")
        agree = "" if tf_n is None or ref_n is None else ("agree" if tf_n == ref_n else f"DIFFER by {tf_n - ref_n:+d}")
        lines.append(f"prunable weights of {model}: tfprune {tf_n}, reference {ref_n} {agree}".rstrip())
    return "\n".join(lines) + _failures(records)


def framework_table(m, rows):
    """The lines of the table that splits each row's gap: the same loop in TensorFlow (the faster of
    its compiled and eager runs) against the reference, and tfprune against it; none if not run."""
    ported = [(model, method) for model, method in rows
              if any((f, model, method) in m for f in ("tensorflow", "tensorflow-eager"))]
    if not ported:
        return []
    lines = ["", "| model | method | TensorFlow loop, compiled s | TensorFlow loop, eager s | tfprune total s | "
                 "reference total s | **TensorFlow loop / reference** | **tfprune / TensorFlow loop** | "
                 "TensorFlow loop peak RSS MiB | repeats compiled / eager |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for model, method in ported:
        compiled, eager = m.get(("tensorflow", model, method), {}), m.get(("tensorflow-eager", model, method), {})
        best = min((r for r in (compiled, eager) if r), key=lambda r: r["total"])
        tf_, ref = m.get(("tfprune", model, method), {}), m.get(("reference", model, method), {})
        lines.append(
            f"| {model} | {method} | {fmt(compiled.get('total'))} | {fmt(eager.get('total'))} | "
            f"{fmt(tf_.get('total'))} | {fmt(ref.get('total'))} | **{fmt(ratio(best['total'], ref.get('total')))}** | "
            f"**{fmt(ratio(tf_.get('total'), best['total']))}** | {fmt(best['peak_rss_mb'], 0)} | "
            f"{compiled.get('runs', 0)} / {eager.get('runs', 0)} |")
    return lines


def backend_table(m, rows):
    """The lines of the table of tfprune's total on each Keras backend beside the reference; none if
    tfprune ran on TensorFlow only."""
    ran = [(model, method) for model, method in rows
           if any((f, model, method) in m for f in BACKENDS if f != "tfprune")]
    if not ran:
        return []
    names = list(BACKENDS.values())
    lines = ["", "| model | method | " + " | ".join(f"tfprune on {n} s" for n in names) + " | reference (PyTorch) s | "
             + " | ".join(f"{n} / reference" for n in names) + " | repeats |",
             "|---|---|" + "---:|" * (2 * len(names) + 1) + "---|"]
    for model, method in ran:
        totals = [m.get((f, model, method), {}).get("total") for f in BACKENDS]
        reference = m.get(("reference", model, method), {}).get("total")
        runs = " / ".join(str(m.get((f, model, method), {}).get("runs", 0)) for f in [*BACKENDS, "reference"])
        lines.append(f"| {model} | {method} | " + " | ".join(fmt(t) for t in totals) + f" | {fmt(reference)} | "
                     + " | ".join(fmt(ratio(t, reference)) for t in totals) + f" | {runs} |")
    return lines


def _failures(records):
    """A line on the failed runs not finished since, if any (the next run retries them)."""
    finished = {key(r) for r in records if "error" not in r}
    failures = [r for r in records if "error" in r and key(r) not in finished]
    if not failures:
        return ""
    last = failures[-1]
    return (f"\n{len(failures)} failed run(s) not finished yet (a rerun retries them); the last: "
            f"{last['framework']} {last['model']} {last['method']} repeat {last['repeat']}: {last['error']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=csv_list(list(MODELS)), default=list(MODELS))
    parser.add_argument("--methods", type=csv_list(list(METHODS)), default=list(METHODS))
    parser.add_argument("--frameworks", type=csv_list(list(FRAMEWORKS)), default=list(FRAMEWORKS))
    parser.add_argument("--repeats", type=int, default=3, help="runs per (framework, model, method)")
    parser.add_argument("--out", required=True, help="JSONL file the records are appended to (and read from)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one run may take")
    parser.add_argument("--table-only", action="store_true", help="print the tables of --out without running")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout:g}")
    if args.table_only and not os.path.exists(args.out):
        parser.error(f"--table-only reads --out, and {args.out} does not exist")
    if not args.table_only:
        run_all(args)
    print(tables(read_records(args.out)))


if __name__ == "__main__":
    main()
