"""One MultiWorkerMirroredStrategy worker (TF_CONFIG in the environment): scores SNIP on its *own*
data, trains a few steps, and prints a JSON line with a digest of its masks."""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402

import tfprune  # noqa: E402

index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
rng = np.random.default_rng(100 + index)  # every worker has different data
x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
y = rng.integers(0, 3, 32)

with strategy.scope():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))

pruned = tfprune.prune_at_init(model, "snip", sparsity=0.9, data=(x, y), verbose=0)
masks = tfprune.get_masks(pruned)
digest = hashlib.sha256(b"".join(np.packbits(m).tobytes() for m in masks)).hexdigest()
# Keras 3's fit fails under MultiWorkerMirroredStrategy in this stack even for a plain model
# ("Attempt to convert a value (PerReplica...)"), so the workers train with a custom loop.
with strategy.scope():
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(pruned.trainable_variables)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
dataset = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat(2))  # global batch 16: 8 per worker


@tf.function
def train_step(features, labels):
    def replica_step(features, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, pruned(features, training=True)) / 16.0
        grads = tape.gradient(loss, pruned.trainable_variables)
        optimizer.apply_gradients(zip(grads, pruned.trainable_variables))

    strategy.run(replica_step, args=(features, labels))


for features, labels in dataset:
    train_step(features, labels)
plain = tfprune.strip(pruned)
zeros_kept = all(np.all(t.variable.numpy()[~m] == 0) for t, m in zip(tfprune.prunable_weights(plain), masks))
weights = hashlib.sha256(b"".join(np.asarray(v.numpy()).tobytes() for v in pruned.weights)).hexdigest()
print(json.dumps({"worker": index, "replicas": strategy.num_replicas_in_sync, "masks": digest,
                  "weights": weights, "pruned_zero": bool(zeros_kept),
                  "density": tfprune.masks.density(masks)}))
