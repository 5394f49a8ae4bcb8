"""One timed run of tfprune's pruning at initialisation, in a fresh process: one JSON line out.

Builds one model (seed 0), wraps it with ``tfprune.wrap`` and prunes it with
``tfprune.prune_at_init`` to compression 100 (global scope, the method's default rounds: SynFlow
100, the others 1), and prints one JSON line: seconds for ``build`` (not compared), ``wrap``,
``prune`` split into ``scoring`` (inside the scorer) and ``masking`` (the rest of
``prune_at_init``, of which ``collapse_check`` is the check after the last round), ``total``
(wrap + prune); ``rss_before_mb`` (VmRSS just before wrapping) and
``peak_rss_mb`` (ru_maxrss after pruning); the prunable and kept weight counts, versions and
thread counts. As the process is fresh, the time includes tracing the compiled scoring steps, as
a user's first call does.

Models: ``vgg16`` and ``resnet20`` (``tfprune.models``, CIFAR form: 32×32×3, 10 classes) and
``resnet50`` and ``mobilenetv2`` (``keras.applications``, ``weights=None``, 224×224×3, 1000
classes). SNIP and GraSP score random images with random labels (100 for the CIFAR models, 32
for the others; the values do not change the work), GraSP with its defaults (two half batches,
batch statistics, Dense kernels re-drawn).

Runs on the Keras backend that ``KERAS_BACKEND`` names. For SynFlow on TensorFlow the line also
holds its floor, measured in the same process after the run (and after ``peak_rss_mb`` was read):
100 × the median time of one compiled forward+backward of the plain model on an all-ones input
(gradients of the sum of its output with respect to its prunable kernels; traced and warmed up
first, the trace not counted), plus the 100 selections, each the time of ``np.partition`` over the
``N·d^(t/100)`` weights alive in round t (random float32 values, d = 1/100).

    python benchmarks/scoring_benchmark.py resnet20 snip

``benchmarks/benchmark_vs_reference.py`` runs this and ``benchmarks/reference_pytorch.py``
interleaved, several times, and prints the comparison.
"""

import inspect
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402
from benchmark_vs_reference import COMPRESSION, METHODS, MODELS, emit, peak_rss_mb, rss_mb, run_arguments  # noqa: E402

APPLICATIONS = {"resnet50": keras.applications.ResNet50, "mobilenetv2": keras.applications.MobileNetV2}


def build_model(model_name, classifier_activation="softmax"):
    """The named model, freshly initialised: ``tfprune.models``' CIFAR VGG-16-BN and ResNet-20 (they
    output logits), or ``keras.applications``' ResNet50 and MobileNetV2 with ``weights=None`` and
    ``classifier_activation`` on their head."""
    if model_name == "vgg16":
        return tfprune.models.vgg(16)
    if model_name == "resnet20":
        return tfprune.models.resnet_cifar(20)
    spec = MODELS[model_name]
    return APPLICATIONS[model_name](weights=None, input_shape=(spec.image_size, spec.image_size, 3),
                                    classes=spec.classes, classifier_activation=classifier_activation)
FLOOR_TIMINGS = 11  # timed forward+backward passes whose median sets the floor


class TimedScorer:
    """A registered scorer whose calls are timed; ``prune_at_init`` accepts it as a method."""

    def __init__(self, name):
        self.scorer = tfprune.scores.get(name)
        self.seconds = 0.0

    def as_scorer(self):
        def timed(model, targets, data, **options):
            start = time.perf_counter()
            scores = self.scorer.fn(model, targets, data, **options)
            scores = type(scores)(np.asarray(s) for s in scores)  # finish the work inside the timing
            self.seconds += time.perf_counter() - start
            return scores

        timed.__signature__ = inspect.signature(self.scorer.fn)
        return tfprune.scores.Scorer(self.scorer.name, timed, self.scorer.needs_data, self.scorer.keeps_pruned,
                                     self.scorer.default_rounds)


class TimedCollapseCheck:
    """Times the collapse check ``prune_at_init`` runs after its last round, while in use.

    The check (``tfprune.analysis.connectivity.check_collapse``: emptied tensors and a forward pass of the
    flow network) is work the reference loop does not do; timing it splits ``masking`` in two.
    It patches the name ``tfprune.pruning`` calls, and puts it back on exit.
    """

    def __init__(self):
        self.seconds = 0.0
        self.original = tfprune.pruning.check_collapse

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        tfprune.pruning.check_collapse = timed
        return self

    def __exit__(self, *exc):
        tfprune.pruning.check_collapse = self.original


def random_data(spec):
    """``spec.samples`` uniform random NHWC images and labels in [0, classes), seeded."""
    rng = np.random.default_rng(0)
    x = rng.random((spec.samples, spec.image_size, spec.image_size, 3), dtype=np.float32)
    return x, rng.integers(0, spec.classes, spec.samples)


def synflow_floor(model, prunable, rounds):
    """The floor of ``rounds`` SynFlow rounds on ``model``: (forward+backward s, selections s).

    Args:
        model: The plain (unwrapped) model.
        prunable: Its number of prunable weights N.
        rounds: The number of rounds.

    Returns:
        ``rounds`` × the median of one compiled forward+backward, and the summed time of the
        ``np.partition`` of each round over its ``N·d^(t/rounds)`` alive weights.
    """
    kernels = [t.variable for t in tfprune.prunable_weights(model)]
    ones = tf.ones((1, *model.input_shape[1:]))

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(model(ones, training=False))
        return tape.gradient(total, kernels)

    for _ in range(2):  # trace, then one warm call
        forward_backward()
    times = []
    for _ in range(FLOOR_TIMINGS):
        start = time.perf_counter()
        forward_backward()
        times.append(time.perf_counter() - start)

    values = np.random.default_rng(0).random(prunable, dtype=np.float32)
    density = 1.0 / COMPRESSION
    selections = 0.0
    for t in range(rounds):
        alive = tfprune.masks.kept_count(density ** (t / rounds), prunable)
        kept = tfprune.masks.kept_count(density ** ((t + 1) / rounds), prunable)
        start = time.perf_counter()
        np.partition(values[:alive], alive - kept)
        selections += time.perf_counter() - start
    return rounds * statistics.median(times), selections


def one_run(model_name, method):
    """Builds, wraps and prunes once; returns the JSON record (see the module docstring)."""
    spec = MODELS[model_name]
    scorer = tfprune.scores.get(method)
    options = dict(data=random_data(spec), samples=spec.samples) if scorer.needs_data else {}
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = build_model(model_name)
    build = time.perf_counter() - start
    prunable = sum(t.size for t in tfprune.prunable_weights(model))

    rss_before = rss_mb()
    timed = TimedScorer(method)
    start = time.perf_counter()
    wrapped = tfprune.wrap(model)
    wrap = time.perf_counter() - start
    with TimedCollapseCheck() as check:
        start = time.perf_counter()
        tfprune.prune_at_init(wrapped, timed.as_scorer(), compression=COMPRESSION, verbose=0, **options)
        prune = time.perf_counter() - start
    peak = peak_rss_mb()

    record = dict(
        framework="tfprune", model=model_name, method=method, rounds=scorer.default_rounds,
        samples=spec.samples if scorer.needs_data else 0, compression=COMPRESSION, prunable=prunable,
        kept=int(sum(np.count_nonzero(m) for m in tfprune.get_masks(wrapped))),
        build=build, wrap=wrap, prune=prune, scoring=timed.seconds, masking=prune - timed.seconds,
        collapse_check=check.seconds,
        total=wrap + prune, rss_before_mb=rss_before, peak_rss_mb=peak,
        versions=dict(tensorflow=tf.__version__, keras=keras.__version__, tfprune=tfprune.__version__,
                      numpy=np.__version__, python=platform.python_version(), backend=keras.backend.backend()),
        threads=dict(intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
                     inter_op=tf.config.threading.get_inter_op_parallelism_threads(), cpus=os.cpu_count()))
    if method == "synflow" and keras.backend.backend() == "tensorflow":  # the floor is a TensorFlow loop
        forward_backward, selections = synflow_floor(model, prunable, scorer.default_rounds)
        record.update(floor=forward_backward + selections, floor_forward_backward=forward_backward,
                      floor_selections=selections)
    return record


def main():
    args = run_arguments(__doc__.splitlines()[0], METHODS)
    emit(one_run(args.model, args.method))


if __name__ == "__main__":
    main()
