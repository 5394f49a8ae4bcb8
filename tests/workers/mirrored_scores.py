"""Two logical CPU replicas: SNIP/GraSP/FORCE scores and masks under MirroredStrategy vs one device,
a custom training loop in strategy.run, and batch norm's first and second derivatives on a batch
split across the replicas (with the batch, for a float64 check). Prints one JSON line."""

import json

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import tfprune  # noqa: E402
from tfprune.autodiff.batch_norm import normalised  # noqa: E402

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 8, 8, 3)).astype("float32")
Y = rng.integers(0, 3, 40)


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = {"replicas": strategy.num_replicas_in_sync, "methods": {}}
for method in ("snip", "grasp", "force"):
    single = build()
    with strategy.scope():
        mirrored = build()
    kwargs = dict(sparsity=0.9, data=(X, Y), batch_size=20, rounds=1, verbose=0, seed=1)
    options = dict(batch_size=20, seed=1) if method == "grasp" else dict(batch_size=20)  # GraSP's re-drawn Dense kernels
    scores_1 = tfprune.scores.get(method)(single, tfprune.prunable_weights(single), (X, Y), **options)
    scores_2 = tfprune.scores.get(method)(mirrored, tfprune.prunable_weights(mirrored), (X, Y), **options)
    masks_1 = tfprune.get_masks(tfprune.prune_at_init(single, method, **kwargs))
    pruned = tfprune.prune_at_init(mirrored, method, **kwargs)
    masks_2 = tfprune.get_masks(pruned)
    flat_1 = np.concatenate([s.ravel() for s in scores_1])
    threshold = np.sort(flat_1)[::-1][tfprune.masks.kept_count(0.1, flat_1.size) - 1]
    differ = np.concatenate([(a != b).ravel() for a, b in zip(masks_1, masks_2)])
    near = np.abs(flat_1 - threshold) <= 1e-5 * np.abs(flat_1).max()
    copies_equal = all(np.array_equal(np.asarray(v.numpy()) != 0, m)
                       for t, m in zip(tfprune.prunable_weights(pruned), masks_2) for v in t.mask.value.values)
    result["methods"][method] = {
        "max_relative_score_difference": float(max(np.max(np.abs(a - b)) / np.max(np.abs(a)) for a, b in zip(scores_1, scores_2))),
        "mask_differences": int(differ.sum()),
        "mask_differences_away_from_threshold": int((differ & ~near).sum()),
        "mask_copies_equal": bool(copies_equal),
    }

# a custom training loop: per-replica steps in strategy.run, pruned weights stay exactly as they were
with strategy.scope():
    model = build()
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
pruned = tfprune.prune_at_init(model, "snip", sparsity=0.8, data=(X, Y), verbose=0)
with strategy.scope():  # a Keras 3 optimizer must be built before apply_gradients runs per replica
    optimizer.build(pruned.trainable_variables)
masks = tfprune.get_masks(pruned)
before = [t.variable.numpy().copy() for t in tfprune.prunable_weights(pruned)]
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((X, Y)).batch(20).repeat(3))


@tf.function
def train_step(x, y):
    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, pruned(x, training=True)) / 20.0
        grads = tape.gradient(loss, pruned.trainable_variables)
        optimizer.apply_gradients(zip(grads, pruned.trainable_variables))
        return loss

    return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)


for x, y in dataset:
    train_step(x, y)
pruned_unchanged, kept_trained, replicas_agree = True, False, True
for t, m, b in zip(tfprune.prunable_weights(pruned), masks, before):
    copies = [np.asarray(v.numpy()) for v in t.variable.value.values]
    replicas_agree &= all(np.array_equal(c, copies[0]) for c in copies)
    pruned_unchanged &= all(np.array_equal(c[~m], b[~m]) for c in copies)
    kept_trained |= bool(np.any(copies[0][m] != b[m]))
result["custom_loop"] = {"pruned_unchanged": bool(pruned_unchanged), "kept_trained": kept_trained,
                         "replicas_agree": bool(replicas_agree)}

# batch norm on batch statistics: d/dt and d²/dt² of Σ W ⊙ y³ along a line through (x, γ, β), the
# batch's rows split between the replicas; summed over the replicas they are the whole batch's
bn_rng = np.random.default_rng(5)
bn = {"x": bn_rng.normal(1.5, 2.0, size=(6, 3, 2, 4)), "gamma": 1 + 0.3 * bn_rng.normal(size=(1, 1, 1, 4)),
      "beta": bn_rng.normal(size=(1, 1, 1, 4)), "weights": bn_rng.normal(size=(6, 3, 2, 4))}
bn.update({f"v_{k}": bn_rng.normal(size=bn[k].shape) for k in ("x", "gamma", "beta")})
bn = {k: v.astype("float32") for k, v in bn.items()}


def bn_half(context):
    rows = slice(3 * context.replica_id_in_sync_group, 3 * context.replica_id_in_sync_group + 3)
    return {k: v[rows] if k in ("x", "weights", "v_x") else v for k, v in bn.items()}


@tf.function
def bn_derivatives(v):
    t = tf.constant(0.0)
    with tf.GradientTape() as outer:
        outer.watch(t)
        with tf.GradientTape() as inner:
            inner.watch(t)
            y = normalised(v["x"] + t * v["v_x"], v["gamma"] + t * v["v_gamma"], v["beta"] + t * v["v_beta"],
                           [0, 1, 2], 1e-3)
            value = tf.reduce_sum(v["weights"] * y ** 3)
        first = inner.gradient(value, t)
    return first, outer.gradient(first, t)


per_replica = strategy.run(bn_derivatives, (strategy.experimental_distribute_values_from_function(bn_half),))
first, second = (float(strategy.reduce(tf.distribute.ReduceOp.SUM, a, axis=None)) for a in per_replica)
result["batch_norm"] = {"first": first, "second": second, "data": {k: v.tolist() for k, v in bn.items()}}
print(json.dumps(result))
