"""Time pruning at initialisation to compression 10^2: scoring against masking, per method.

SynFlow (100 rounds), SNIP and GraSP (100 samples, one batch) and magnitude on VGG-16-BN (CIFAR
form, 14.7M prunable weights) and ResNet-20 (271k). Each run builds a fresh model with the same
seed, so the time includes tracing the compiled scoring steps, as a user's first call would.
Medians of ``--repeats`` runs in one process. Scoring time is the time inside the scorer;
masking is the rest of ``prune_at_init`` (selection, mask assignment).

    python examples/scoring_benchmark.py [--repeats 3] [--json OUT.json]

Run ``examples/reference_pytorch.py`` beside it for the PyTorch reference loop on the same CPU.
"""

import argparse
import inspect
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402

MODELS = {"vgg16": lambda: tfprune.models.vgg(16), "resnet20": lambda: tfprune.models.resnet_cifar(20)}
METHODS = ("synflow", "snip", "grasp", "magnitude")


class TimedScorer:
    """A registered scorer whose calls are timed; ``prune_at_init`` accepts it as a method."""

    def __init__(self, name):
        self.scorer = tfprune.scores.get(name)
        self.seconds = 0.0

    def as_scorer(self):
        def timed(model, targets, data, **options):
            start = time.perf_counter()
            scores = self.scorer.fn(model, targets, data, **options)
            scores = [np.asarray(s) for s in scores]  # finish the work inside the timing
            self.seconds += time.perf_counter() - start
            return scores

        timed.__signature__ = inspect.signature(self.scorer.fn)
        return tfprune.scores.Scorer(self.scorer.name, timed, self.scorer.needs_data, self.scorer.keeps_pruned,
                                     self.scorer.default_rounds)


def one_run(build, method, data):
    keras.utils.set_random_seed(0)
    model = build()
    timed = TimedScorer(method)
    start = time.perf_counter()
    tfprune.prune_at_init(model, timed.as_scorer(), compression=100, data=data, verbose=0)
    total = time.perf_counter() - start
    return timed.seconds, total - timed.seconds, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,resnet20")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the medians as JSON here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = (rng.random((100, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 100))
    results = {}
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs")
    print("| model | method | rounds | scoring s | masking s | total s |")
    print("|---|---|---|---|---|---|")
    for model_name in args.models.split(","):
        for method in args.methods.split(","):
            runs = [one_run(MODELS[model_name], method, data) for _ in range(args.repeats)]
            scoring, masking, total = (statistics.median(r[i] for r in runs) for i in range(3))
            results.setdefault(model_name, {})[method] = {"scoring": scoring, "masking": masking, "total": total}
            rounds = tfprune.scores.get(method).default_rounds
            print(f"| {model_name} | {method} | {rounds} | {scoring:.2f} | {masking:.2f} | {total:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
