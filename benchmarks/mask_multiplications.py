"""What masking costs in a training step without XLA: two multiplications, one, or none.

LeNet-300-100 (batch 128, SGD 0.01, 90 % of every kernel pruned at random) trained by one
compiled step, in three ways:

* ``dense``: no mask (the floor);
* ``tfprune``: the model wrapped by ``tfprune.prune_at_init`` — every forward pass uses
  ``w ⊙ m`` and autodiff masks the gradient: two multiplications over every masked weight;
* ``gradient_only``: the unwrapped model, whose pruned weights are zero, with only the gradient
  multiplied by the mask before the update (one multiplication; TF-MOT's way of keeping pruned
  weights at zero, without its per-step re-masking). Pruned weights stay zero only while the
  optimizer moves a weight with zero gradient history by nothing, so this is a measurement, not a
  mode tfprune offers (see ``docs/performance.md``).

The steps alternate in blocks (ABC, CBA, …) in one process; each variant's time is the median of
its blocks' mean step times, and the ratios to ``dense`` are printed.

    python benchmarks/mask_multiplications.py
    python benchmarks/mask_multiplications.py --blocks 4 --steps 20   # quick
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfprune  # noqa: E402
from masked_overhead import BATCH_SIZES, INPUT_SHAPES, LEARNING_RATE, SPARSITY, lenet_300_100  # noqa: E402


def train_step(model, optimizer, gradient_masks=None):
    """A compiled SGD step of ``model``; ``gradient_masks`` (``{id(variable): mask}``) multiply
    those variables' gradients before the update."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        if gradient_masks:
            grads = [g * gradient_masks[id(v)] if id(v) in gradient_masks else g for g, v in zip(grads, variables)]
        optimizer.apply(grads, variables)
        return loss

    return step


def variants():
    """``({name: step}, [(kernel, mask)])``: the three variants, from the same initial
    weights, and ``gradient_only``'s kernels with their masks."""
    out = {}
    keras.utils.set_random_seed(0)
    dense = lenet_300_100(keras)
    out["dense"] = train_step(dense, keras.optimizers.SGD(LEARNING_RATE))
    keras.utils.set_random_seed(0)
    wrapped = tfprune.prune_at_init(lenet_300_100(keras), "random", sparsity=SPARSITY, scope="local", verbose=0)
    out["tfprune"] = train_step(wrapped, keras.optimizers.SGD(LEARNING_RATE))
    keras.utils.set_random_seed(0)
    zeroed = lenet_300_100(keras)
    kernels = [layer.kernel for layer in zeroed.layers if isinstance(layer, keras.layers.Dense)]
    pairs = [(kernel, t.mask.numpy()) for t, kernel in zip(tfprune.prunable_weights(wrapped), kernels)]  # layer order
    for kernel, mask in pairs:
        kernel.assign(kernel.numpy() * mask)
    masks = {id(kernel): tf.constant(mask) for kernel, mask in pairs}
    out["gradient_only"] = train_step(zeroed, keras.optimizers.SGD(LEARNING_RATE), masks)
    return out, pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per block")
    parser.add_argument("--blocks", type=int, default=20, help="blocks per variant")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((BATCH_SIZES["lenet_300_100"], *INPUT_SHAPES["lenet_300_100"]), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, BATCH_SIZES["lenet_300_100"]))
    steps, pairs = variants()
    for step in steps.values():
        step(x, y)  # trace
    times = {name: [] for name in steps}
    for block in range(args.blocks):
        for name in (list(steps) if block % 2 == 0 else list(steps)[::-1]):
            step = steps[name]
            start = time.perf_counter()
            for _ in range(args.steps):
                step(x, y)
            float(step(x, y))  # wait for the last step
            times[name].append(1000.0 * (time.perf_counter() - start) / (args.steps + 1))
    still_zero = all(not np.any(kernel.numpy()[mask == 0]) for kernel, mask in pairs)
    print(f"LeNet-300-100, batch {BATCH_SIZES['lenet_300_100']}, no XLA; medians of {args.blocks} alternating "
          f"blocks of {args.steps} steps (gradient_only's pruned weights still zero: {still_zero})\n")
    print("| variant | ms per step | / dense |\n|---|---:|---:|")
    dense = statistics.median(times["dense"])
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {statistics.median(values) / dense:.3f} |")


if __name__ == "__main__":
    main()
