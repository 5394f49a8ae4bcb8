"""One timed run of the reference pruning loop written directly in TensorFlow, in a fresh process.

The loop of ``benchmarks/reference_pytorch.py`` (the SynFlow paper's), step for step, in plain
TensorFlow and Keras with no tfprune code in it, on the Keras models that
``benchmarks/scoring_benchmark.py`` prunes. It splits a row's gap between tfprune and the PyTorch
reference in two: this loop against the reference is what the framework costs (TensorFlow's
first call, its kernels), tfprune against this loop is what tfprune adds (wrapping, the checks,
its general machinery).

* **Models**: those of ``scoring_benchmark.build_model`` — ``tfprune.models`` VGG-16-BN and
  ResNet-20 (they output logits) and ``keras.applications`` ResNet50 and MobileNetV2, here with
  ``classifier_activation=None`` (the logits, as tfprune scores them; building is not timed). The prunable kernels are those of
  ``Conv2D``, ``DepthwiseConv2D`` and ``Dense``, their count asserted against ``ModelSpec.prunable``.
* **The one-shot methods only** (SNIP, GraSP, magnitude; one round each). SynFlow's 100 rounds
  have their own floor, measured by ``benchmarks/scoring_benchmark.py``: 100 bare compiled
  forward+backward passes plus the selections.
* **Each pass is one** ``tf.function`` **traced at its call**, the trace timed: TensorFlow's fast
  path, the one Keras's ``fit`` takes. With ``--eager`` the passes run eagerly instead.
* **Masks** are NumPy arrays, as the reference's are buffers: the global threshold is the k-th
  smallest score, k = (1 − d)·n (``np.partition`` in place of ``torch.kthvalue``), and the
  weights scored strictly above it are kept. The masks are all ones while scoring (one round),
  so the forward pass reads the kernels as they are.
* **SNIP**: ``training=False``, one batch of all samples, ``|g ⊙ θ|`` over its sum.
* **GraSP**, as the reference: a clone of the model (``keras.models.clone_model`` and its weights,
  timed, as the reference times its ``copy.deepcopy``) whose Dense kernels are re-drawn
  Glorot-normal; batch norm on batch statistics (``training=True``); two half batches, logits
  / 200; g summed over the halves, then ``H g`` from the gradient of ``g · ∂L/∂θ`` per half
  (nested tapes); ``θ ⊙ H g`` over ``|Σ| + 1e-10``.
* **Magnitude**: ``|θ|`` read from the variables.

Prints one JSON line like the other two scripts (``framework`` is ``"tensorflow"``, or
``"tensorflow-eager"`` with ``--eager``):

    python benchmarks/reference_tensorflow.py resnet20 snip
    python benchmarks/reference_tensorflow.py resnet20 snip --eager

``benchmarks/benchmark_vs_reference.py --frameworks tfprune,tensorflow,reference`` runs it beside them.
This is a timing baseline, not a pruning tool.
"""

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmark_vs_reference import COMPRESSION, MODELS, ONE_SHOT, emit, peak_rss_mb, rss_mb, run_arguments  # noqa: E402
from scoring_benchmark import build_model  # noqa: E402  (the models only; no tfprune code runs in the loop)

TEMPERATURE = 200.0  # GraSP's logits divisor
EPS = 1e-10


def prunable_kernels(model):
    """The kernels of the model's Conv2D, DepthwiseConv2D and Dense layers, in layer order (the four
    models are flat: every layer is one of ``model.layers``)."""
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    return [layer.kernel for layer in model.layers if isinstance(layer, kinds)]


def cross_entropy(y, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))


def compiled(fn, eager):
    """``fn`` itself when ``eager``, else a ``tf.function`` of it."""
    return fn if eager else tf.function(fn)


def snip(model, kernels, x, y, eager):
    """|g ⊙ θ| over its sum, from one forward+backward on the whole batch."""

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = cross_entropy(y, model(x, training=False))
        grads = tape.gradient(loss, kernels)
        scores = [tf.abs(g * k) for g, k in zip(grads, kernels)]
        total = tf.add_n([tf.reduce_sum(s) for s in scores])
        return [s / total for s in scores]

    return [np.asarray(s) for s in compiled(step, eager)(x, y)]


def grasp(model, x, y, eager):
    """θ ⊙ Hg over |Σ| + eps, on a clone with re-drawn Dense kernels and batch statistics."""
    net = keras.models.clone_model(model)
    net.set_weights(model.get_weights())
    for layer in net.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.assign(keras.initializers.GlorotNormal()(layer.kernel.shape))
    weights = prunable_kernels(net)
    half = len(x) // 2
    halves = [(x[:half], y[:half]), (x[half:], y[half:])]

    def loss_on(x, y):
        return cross_entropy(y, net(x, training=True) / TEMPERATURE)

    def gradient(x, y):
        with tf.GradientTape() as tape:
            loss = loss_on(x, y)
        return tape.gradient(loss, weights)

    def hessian_gradient(stopped, x, y):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_on(x, y)
            grads = inner.gradient(loss, weights)
            z = tf.add_n([tf.reduce_sum(s * g) for s, g in zip(stopped, grads)])
        return outer.gradient(z, weights)

    gradient, hessian_gradient = compiled(gradient, eager), compiled(hessian_gradient, eager)
    stopped = [tf.add(a, b) for a, b in zip(*(gradient(*h) for h in halves))]
    hg = [tf.add(a, b) for a, b in zip(*(hessian_gradient(stopped, *h) for h in halves))]
    scores = [np.asarray(g * w) for g, w in zip(hg, weights)]
    total = abs(sum(float(np.sum(s, dtype=np.float64)) for s in scores)) + EPS
    return [s / total for s in scores]


def masked(scores, density):
    """The reference's ``mask``: keep the scores strictly above the k-th smallest, k = (1 − d)·n."""
    flat = np.concatenate([s.ravel() for s in scores])
    k = int((1.0 - density) * flat.size)
    if k < 1:
        return [np.ones(s.shape, np.float32) for s in scores]
    threshold = np.partition(flat, k - 1)[k - 1]
    return [(s > threshold).astype(np.float32) for s in scores]


def random_data(spec):
    """``spec.samples`` random NHWC images and labels in [0, classes), seeded."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((spec.samples, spec.image_size, spec.image_size, 3), dtype=np.float32)
    return tf.constant(x), tf.constant(rng.integers(0, spec.classes, spec.samples))


def prune_once(model, method, kernels, data, eager):
    """Scores once and masks to density 1/COMPRESSION; returns (scoring s, masking s, masks)."""
    start = time.perf_counter()
    if method == "snip":
        scores = snip(model, kernels, *data, eager)
    elif method == "grasp":
        scores = grasp(model, *data, eager)
    else:
        scores = [np.abs(np.asarray(k)) for k in kernels]
    middle = time.perf_counter()
    masks = masked(scores, 1.0 / COMPRESSION)
    return middle - start, time.perf_counter() - middle, masks


def one_run(model_name, method, eager):
    """Builds and prunes once; returns the JSON record (see the module docstring)."""
    spec = MODELS[model_name]
    data = random_data(spec)
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = build_model(model_name, classifier_activation=None)
    build = time.perf_counter() - start
    kernels = prunable_kernels(model)
    prunable = sum(int(np.prod(k.shape)) for k in kernels)
    if prunable != spec.prunable:
        raise AssertionError(f"{model_name}: {prunable} prunable weights, expected {spec.prunable}")
    rss_before = rss_mb()
    scoring, masking, masks = prune_once(model, method, kernels, data, eager)
    peak = peak_rss_mb()
    return dict(
        framework="tensorflow-eager" if eager else "tensorflow", model=model_name, method=method,
        rounds=1,
        samples=spec.samples if method in ("snip", "grasp") else 0, compression=COMPRESSION, prunable=prunable,
        kept=int(sum(m.sum() for m in masks)), build=build, scoring=scoring, masking=masking,
        total=scoring + masking, rss_before_mb=rss_before, peak_rss_mb=peak,
        versions=dict(tensorflow=tf.__version__, keras=keras.__version__, numpy=np.__version__,
                      python=platform.python_version()),
        threads=dict(intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
                     inter_op=tf.config.threading.get_inter_op_parallelism_threads(), cpus=os.cpu_count()))


def main():
    args = run_arguments(__doc__.splitlines()[0], ONE_SHOT, eager_option=True)
    emit(one_run(args.model, args.method, args.eager))


if __name__ == "__main__":
    main()
