"""Training-step time of a wrapped (masked) model against the same model unwrapped.

Both models share one set of layers and train on the same batches in the same process; repeats
alternate between the two so that drift of the machine affects both alike. Prints the median
step time of each and their ratio.

    python examples/masked_overhead.py [--steps 50] [--repeats 7] [--jit]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402

L = keras.layers


def lenet_300_100():
    inputs = keras.Input((28, 28, 1))
    x = L.Flatten()(inputs)
    x = L.Dense(300, activation="relu")(x)
    x = L.Dense(100, activation="relu")(x)
    return keras.Model(inputs, L.Dense(10)(x), name="lenet_300_100")


def small_cnn():
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for filters in (32, 64):
        x = L.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = L.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dense(256, activation="relu")(x)
    return keras.Model(inputs, L.Dense(10)(x), name="small_cnn")


def step_seconds(model, x, y, steps):
    model.train_on_batch(x, y)  # already traced; one more to settle
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def compare(build, steps, repeats, jit, batch_size=128):
    keras.utils.set_random_seed(0)
    plain = build()
    wrapped = tfprune.prune_at_init(plain, "magnitude", sparsity=0.9, verbose=0)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *plain.input_shape[1:]), dtype=np.float32)
    y = rng.integers(0, 10, batch_size)
    for model in (plain, wrapped):
        model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit)
        model.train_on_batch(x, y)  # trace
    times = {"plain": [], "wrapped": []}
    for _ in range(repeats):
        times["plain"].append(step_seconds(plain, x, y, steps))
        times["wrapped"].append(step_seconds(wrapped, x, y, steps))
    p, w = statistics.median(times["plain"]), statistics.median(times["wrapped"])
    print(f"{plain.name:14s} jit={str(jit):5s}  plain {p * 1e3:7.2f} ms  wrapped {w * 1e3:7.2f} ms  ratio {w / p:.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--jit", action="store_true", help="compile the steps with XLA")
    args = parser.parse_args()
    for build in (lenet_300_100, small_cnn):
        compare(build, args.steps, args.repeats, args.jit)


if __name__ == "__main__":
    main()
