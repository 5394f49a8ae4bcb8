"""Training-step time of masked models: tfprune and TF-MOT, each beside its unmasked model.

Networks: LeNet-300-100 (28×28×1 input) and a CNN of 4 convolutions and 2 dense layers (32×32×3
input), batch 128; on request (``--networks resnet50,mobilenetv2``) ``applications`` ResNet50 and
MobileNetV2 at 224×224×3, 10 classes, batch 16. SGD(0.01), 90 % sparsity of every kernel. Variants, each with XLA off and on
(``jit_compile=False`` / ``True``):

* ``dense``: the Keras 3 model, unwrapped;
* ``tfprune``: the same Keras 3 model, ``tfprune.prune_at_init(model, "magnitude", sparsity=0.9,
  scope="local")`` (90 % of each kernel, as TF-MOT);
* ``tfmot``: the same architecture in tf_keras under TF-MOT's ``prune_low_magnitude`` with
  ``ConstantSparsity(0.9, begin_step=0, frequency=10000)``, trained with its ``UpdatePruningStep``
  callback; the wrapper re-masks the weights and runs its mask-update condition inside every step;
* ``tfmot_dense``: the same tf_keras model, unwrapped;

on one device, and under ``tf.distribute.MirroredStrategy`` over two logical CPU devices (global
batch 128, 64 per replica; models built and compiled inside ``strategy.scope()``). A variant whose
step cannot run is shown as "fails", with TensorFlow's error under the table: with TensorFlow 2.21,
XLA under MirroredStrategy over logical CPU devices fails for every model, dense ones included
("Trying to access a variable located in device CPU:1 from device CPU:0").

Timing: the steps are timed inside ``fit`` (an epoch of ``--steps`` + 2 copies of one fixed batch
from a ``tf.data`` pipeline, after a traced warm-up ``fit``): a step is the time between
consecutive batch starts, so callbacks (TF-MOT's included) count; the first batch (iterator start)
and the last one (epoch end) are left out. Every repeat starts one process per framework and device
setup, Keras 3 (this file) then tf_keras (``masked_overhead_tfmot.py``, since importing TF-MOT
makes ``tf.keras`` mean tf_keras). Within a process the dense and masked models run ``--blocks``
such epochs each, alternating ABBA… (the order shifts every repeat), so that a drift of the
machine's speed within the process falls on both alike; a model's time in one repeat is the median
of its epochs' mean step times. The table gives the median over repeats of each time, and of the
per-repeat ratios (tfprune/dense: same process; tfprune/TF-MOT: processes run one after the other).

TF-MOT computes its masks when its step counter reaches a multiple of ``frequency``, counting from
1; the worker sets the counter to ``frequency - 1`` before the warm-up, so the first warm-up step
computes the 90 % masks inside the step. Neither framework updates a mask during the timed steps
(TF-MOT's next update would be at step 20,000).

Checks, after the timed steps, in every process: tfprune's ``kernel × mask`` and TF-MOT's kernels
after ``strip_pruning`` keep exactly ``floor(0.1·n + ½)`` non-zero weights per kernel (pruned
weights still zero, the others non-zero), tfprune's masks are the ones set before timing, the kept
weights changed during the timed steps, and TF-MOT's step counter advanced once per step. The
sparsity is printed.

    python benchmarks/masked_overhead.py                    # all: 2 networks × 2 setups × XLA off/on, 5 × 6 × 50 steps
    python benchmarks/masked_overhead.py --networks lenet_300_100 --setups one --xla off --steps 5 --blocks 2 --repeats 1
    python benchmarks/masked_overhead.py --networks resnet50,mobilenetv2 --setups one --xla off \
        --variants dense,tfprune --steps 5 --repeats 3        # ImageNet-size, Keras 3 only
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
BATCH_SIZES = {"lenet_300_100": 128, "small_cnn": 128, "resnet50": 16, "mobilenetv2": 16}
SPARSITY = 0.9
LEARNING_RATE = 0.01
INPUT_SHAPES = {"lenet_300_100": (28, 28, 1), "small_cnn": (32, 32, 3), "resnet50": (224, 224, 3),
                "mobilenetv2": (224, 224, 3)}
NETWORKS = tuple(INPUT_SHAPES)
SETUPS = ("one", "mirrored")
XLA = ("off", "on")
KERAS3_VARIANTS = ("dense", "tfprune")
TFMOT_VARIANTS = ("tfmot", "tfmot_dense")
COLUMNS = ("dense", "tfprune", "tfmot", "tfmot_dense")


def lenet_300_100(k):
    """LeNet-300-100 in ``k`` (the ``keras`` or ``tf_keras`` module)."""
    inputs = k.Input(INPUT_SHAPES["lenet_300_100"])
    x = k.layers.Flatten()(inputs)
    x = k.layers.Dense(300, activation="relu")(x)
    x = k.layers.Dense(100, activation="relu")(x)
    return k.Model(inputs, k.layers.Dense(10)(x), name="lenet_300_100")


def small_cnn(k):
    """Conv(32)×2, pool, Conv(64)×2, pool, Dense(256), Dense(10) in ``k`` (``keras`` or ``tf_keras``)."""
    inputs = k.Input(INPUT_SHAPES["small_cnn"])
    x = inputs
    for filters in (32, 64):
        x = k.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = k.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = k.layers.MaxPooling2D()(x)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(256, activation="relu")(x)
    return k.Model(inputs, k.layers.Dense(10)(x), name="small_cnn")


def resnet50(k):
    """``applications.ResNet50`` of ``k`` at 224×224×3, 10 classes, no pretrained weights."""
    return k.applications.ResNet50(weights=None, input_shape=INPUT_SHAPES["resnet50"], classes=10)


def mobilenetv2(k):
    """``applications.MobileNetV2`` of ``k`` at 224×224×3, 10 classes, no pretrained weights."""
    return k.applications.MobileNetV2(weights=None, input_shape=INPUT_SHAPES["mobilenetv2"], classes=10)


BUILDERS = {"lenet_300_100": lenet_300_100, "small_cnn": small_cnn, "resnet50": resnet50, "mobilenetv2": mobilenetv2}


# --- shared by the two workers ------------------------------------------------------------------

def strategy_for(setup):
    """The distribution strategy of a device setup; call it before anything else touches TensorFlow.

    Args:
        setup: ``"one"`` (the default strategy, one device) or ``"mirrored"`` (MirroredStrategy over
            two logical CPU devices, configured here).

    Returns:
        A ``tf.distribute.Strategy``.
    """
    import tensorflow as tf

    if setup == "one":
        return tf.distribute.get_strategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])


def fixed_batches(network):
    """One random batch of ``network``'s input shape (seed 0), repeated forever, as a ``tf.data.Dataset``."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((BATCH_SIZES[network], *INPUT_SHAPES[network]), dtype=np.float32)
    y = rng.integers(0, 10, BATCH_SIZES[network])
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def warm_up(model, dataset, callbacks=()):
    """Traces ``model``'s training step with a 2-step ``fit``.

    Returns:
        ``None``, or TensorFlow's error in one line, the same for every model, if the step cannot
        run here (XLA under MirroredStrategy over logical CPU devices cannot).
    """
    import tensorflow as tf

    try:
        model.fit(dataset, steps_per_epoch=2, verbose=0, callbacks=list(callbacks))
    except tf.errors.OpError as error:
        skipped = ("File ", "Detected at", "[[", "Cf. ", "Graph execution error")
        lines = [line.strip() for line in error.message.splitlines()]
        line = next((line for line in lines if line and not line.startswith(skipped)), type(error).__name__)
        line = re.sub(r" \(defined @ [^)]*\)", "", line).replace("/job:localhost/replica:0/task:0/device:", "")
        return re.sub(r"resource \S+", "a variable", line)[:300]
    return None


def timed_fit(model, dataset, steps, callback_class, callbacks=()):
    """Runs ``fit`` for ``steps`` + 2 batches; returns the mean time of the ``steps`` middle steps, in ms.

    A step is the time from one batch start to the next; the first batch (iterator start) and the
    last one (epoch end) are left out.
    """
    starts = []
    record = callback_class(on_train_batch_begin=lambda *_, **__: starts.append(time.perf_counter()))
    model.fit(dataset, epochs=1, steps_per_epoch=steps + 2, verbose=0, callbacks=[*callbacks, record])
    return 1000.0 * (starts[-1] - starts[1]) / steps


def time_in_alternating_blocks(models, dataset, steps, order_index, callback_class, blocks=1):
    """Times each model in ``blocks`` alternating blocks; returns each model's median block time.

    Block ``b`` runs every model once, in dict order, reversed when ``order_index + b`` is odd
    (ABBA…), so that a drift of the machine's speed within the process (memory layout, caches,
    frequency) falls on every model alike instead of on whichever runs second.

    Args:
        models: ``{variant: (model, callbacks)}``, compiled and warmed up.
        dataset: The batches (:func:`fixed_batches`).
        steps: Timed steps per model and block.
        order_index: The repeat's index; shifts the alternation.
        callback_class: ``keras.callbacks.LambdaCallback`` or ``tf_keras.callbacks.LambdaCallback``.
        blocks: Blocks per model.

    Returns:
        ``{variant: ms per step}``, the median over blocks of each block's mean step time.
    """
    times = {name: [] for name in models}
    for block in range(blocks):
        names = list(models)[::-1] if (order_index + block) % 2 else list(models)
        for name in names:
            times[name].append(timed_fit(models[name][0], dataset, steps, callback_class, models[name][1]))
    return {name: statistics.median(values) for name, values in times.items()}


def check_kept(where, kernels, changed_from=None):
    """Asserts that every kernel keeps exactly ``kept_count(1 - SPARSITY, n)`` non-zero weights.

    Args:
        where: What is checked, for the error message (e.g. ``"tfprune kernel×mask"``).
        kernels: ``{name: array}`` of effective (masked or stripped) kernels.
        changed_from: ``{name: array}`` of the same kernels before the timed steps; if given, also
            asserts that some kept weight of every kernel changed.

    Returns:
        The sparsity over all the kernels (removed fraction).

    Raises:
        AssertionError: naming the kernel, with the counts.
    """
    from tfprune.sparsity.masks import kept_count

    for name, kernel in kernels.items():
        expected = kept_count(1.0 - SPARSITY, kernel.size)
        nonzero = int(np.count_nonzero(kernel))
        assert nonzero == expected, (
            f"{where}: {name} has {nonzero} non-zero weights, expected {expected} of {kernel.size}")
        if changed_from is not None:
            kept = kernel != 0
            assert np.any(kernel[kept] != changed_from[name][kept]), f"{where}: {name} did not train in the timed steps"
    size = sum(k.size for k in kernels.values())
    return 1.0 - sum(int(np.count_nonzero(k)) for k in kernels.values()) / size


def group_key(network, setup, xla):
    """The key of one table row in the workers' JSON."""
    return f"{network}|{setup}|{xla}"


def worker_args(argv=None):
    """Arguments common to the two workers."""
    parser = argparse.ArgumentParser(description="one process of benchmarks/masked_overhead.py")
    parser.add_argument("--setup", choices=SETUPS, required=True)
    parser.add_argument("--networks", required=True)
    parser.add_argument("--xla", required=True)
    parser.add_argument("--variants", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--blocks", type=int, required=True, help="alternating timed blocks per model")
    parser.add_argument("--repeat", type=int, required=True, help="repeat index: shifts the alternation")
    return parser.parse_args(argv)


# --- the Keras 3 worker -------------------------------------------------------------------------

def keras3_worker(args):
    """Times ``dense`` and ``tfprune`` for every network and XLA setting; returns ``{group: result}``."""
    strategy = strategy_for(args.setup)
    import keras

    import tfprune

    results = {}
    for network in args.networks.split(","):
        dataset = fixed_batches(network)
        for xla in args.xla.split(","):
            with strategy.scope():
                models, failed = {}, {}
                for variant in args.variants.split(","):
                    keras.utils.set_random_seed(0)  # the same initial weights for every variant
                    model = BUILDERS[network](keras)
                    if variant == "tfprune":
                        model = tfprune.prune_at_init(model, "magnitude", sparsity=SPARSITY, scope="local", verbose=0)
                    model.compile(keras.optimizers.SGD(LEARNING_RATE),
                                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=xla == "on")
                    failure = warm_up(model, dataset)
                    if failure:
                        failed[variant] = failure
                    else:
                        models[variant] = (model, [])
            masked = tfprune.prunable_weights(models["tfprune"][0]) if "tfprune" in models else []
            before = {t.name: (t.variable.numpy() * t.mask.numpy(), t.mask.numpy()) for t in masked}
            ms = time_in_alternating_blocks(models, dataset, args.steps, args.repeat, keras.callbacks.LambdaCallback,
                                            args.blocks)
            result = {"ms": ms, "failed": failed, "sparsity": {}}
            if masked:
                for t in masked:
                    assert np.array_equal(t.mask.numpy(), before[t.name][1]), f"tfprune: the mask of {t.name} changed"
                result["sparsity"]["tfprune"] = check_kept(
                    "tfprune kernel×mask", {t.name: t.variable.numpy() * t.mask.numpy() for t in masked},
                    changed_from={name: effective for name, (effective, _) in before.items()})
            results[group_key(network, args.setup, xla)] = result
    return results


# --- the driver ---------------------------------------------------------------------------------

def run_worker(script, args, setup, variants, repeat):
    """Runs one worker process; returns its ``{group: result}``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    command = [sys.executable, str(script), "--setup", setup, "--networks", ",".join(args.networks),
               "--xla", ",".join(args.xla), "--variants", ",".join(variants), "--steps", str(args.steps),
               "--blocks", str(args.blocks), "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} --setup {setup} (repeat {repeat}) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(repeats):
    """The markdown table of the medians over ``repeats`` (a list of merged ``{group: result}``), and
    one line below it per error that kept variants from running."""

    def median(group, columns):
        """Median over repeats of one column's time, or of the ratio of two columns' times."""
        values = [ms[columns[0]] / (ms[columns[1]] if len(columns) == 2 else 1.0)
                  for ms in (r[group]["ms"] for r in repeats) if all(c in ms for c in columns)]
        return statistics.median(values) if values else None

    def cell(group, columns, digits):
        value = median(group, columns)
        if value is not None:
            return f"{value:.{digits}f}"
        return "fails" if any(c in r[group]["failed"] for r in repeats for c in columns) else "–"

    cells = ((("dense",), 2), (("tfprune",), 2), (("tfprune", "dense"), 3), (("tfmot",), 2), (("tfmot_dense",), 2),
             (("tfprune", "tfmot"), 3))
    lines = ["| network | device setup | XLA | dense ms | tfprune ms | tfprune/dense | TF-MOT ms | TF-MOT dense ms "
             "| tfprune/TF-MOT |", "|---|---|---|---|---|---|---|---|---|"]
    errors = {}
    for group in repeats[0]:
        network, setup, xla = group.split("|")
        row = " | ".join(cell(group, columns, digits) for columns, digits in cells)
        lines.append(f"| {network} | {'1 device' if setup == 'one' else 'Mirrored, 2 CPUs'} | {xla} | {row} |")
        for variant, message in {k: v for r in repeats for k, v in r[group]["failed"].items()}.items():
            errors.setdefault(message, []).append(f"{variant} ({network}, {setup}, XLA {xla})")
    lines += [f"\nfails: {', '.join(where)}: {message}" for message, where in errors.items()]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def choices(allowed):
        def parse(text):
            items = text.split(",")
            unknown = [item for item in items if item not in allowed]
            if unknown or not text:
                raise argparse.ArgumentTypeError(f"{unknown or 'nothing'} not in {', '.join(allowed)}")
            return items
        return parse

    parser.add_argument("--networks", type=choices(NETWORKS), default=["lenet_300_100", "small_cnn"],
                        help="comma-separated (default: the two small networks)")
    parser.add_argument("--setups", type=choices(SETUPS), default=list(SETUPS),
                        help="one device and/or MirroredStrategy over 2 logical CPUs; comma-separated")
    parser.add_argument("--xla", type=choices(XLA), default=list(XLA),
                        help="jit_compile off and/or on; comma-separated")
    parser.add_argument("--variants", type=choices(COLUMNS), default=list(COLUMNS), help="comma-separated")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per model and block")
    parser.add_argument("--blocks", type=int, default=6,
                        help="alternating timed blocks per model and process; a process gives their median")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of processes; the table gives medians")
    args = parser.parse_args(argv)
    if min(args.steps, args.blocks, args.repeats) < 1:
        parser.error(f"--steps, --blocks and --repeats must be at least 1, got {args.steps}, {args.blocks} "
                     f"and {args.repeats}")
    return args


def main(argv=None):
    args = parse_args(argv)
    workers = [(HERE / "masked_overhead.py", [v for v in args.variants if v in KERAS3_VARIANTS]),
               (HERE / "masked_overhead_tfmot.py", [v for v in args.variants if v in TFMOT_VARIANTS])]
    repeats = []
    for repeat in range(args.repeats):
        merged = {}
        for setup in args.setups:
            for script, variants in workers:
                if not variants:
                    continue
                for group, result in run_worker(script, args, setup, variants, repeat).items():
                    merged.setdefault(group, {"ms": {}, "failed": {}})
                    for key in ("ms", "failed"):
                        merged[group][key].update(result[key])
                    times = [f"{v} {ms:.2f} ms" for v, ms in result["ms"].items()]
                    times += [f"{v} fails" for v in result["failed"]]
                    checked = [f"{v} sparsity {s:.4f} checked" for v, s in result["sparsity"].items()]
                    print(f"repeat {repeat} {group.replace('|', ' ')}: {', '.join(times + checked)}", flush=True)
        repeats.append(merged)
    batches = ", ".join(f"{n} {BATCH_SIZES[n]}" for n in args.networks)
    print(f"\nMedians of {args.repeats} repeat(s) (processes), each the median of {args.blocks} alternating "
          f"blocks of {args.steps} steps; batch {batches}; ratios are medians of the per-repeat ratios.\n")
    print(table(repeats))


if __name__ == "__main__":
    if "--setup" in sys.argv:  # one worker process, started by main()
        print(json.dumps(keras3_worker(worker_args())))
    else:
        main()
