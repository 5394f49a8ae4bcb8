"""Trains a pruned model with keras.callbacks.BackupAndRestore; optionally stops dead (waits to be
SIGKILLed) mid-epoch. Usage: resumable_training.py BACKUP_DIR OUT.json [KILL_EPOCH KILL_BATCH MARKER]
With TFPRUNE_TEST_MODE=autoprune the masks are AutoPrune's trainable ones (h(m), read by harden)."""

import hashlib
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402

import tfprune  # noqa: E402

backup_dir, out_path = sys.argv[1], sys.argv[2]
kill = (int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]) if len(sys.argv) > 3 else None

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 20)).astype("float32")
y = rng.integers(0, 4, 256)
inputs = keras.Input((20,))
hidden = keras.layers.Dense(64, activation="relu")(inputs)
dense = keras.Model(inputs, keras.layers.Dense(4)(hidden))
autoprune = os.environ.get("TFPRUNE_TEST_MODE") == "autoprune"
if autoprune:
    model = tfprune.autoprune.wrap(dense, penalty=3e-3, initial_aux=0.05)
else:
    model = tfprune.prune_at_init(dense, "magnitude", sparsity=0.8, verbose=0)
model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              jit_compile=False)


class StopDead(keras.callbacks.Callback):
    """Writes the marker and hangs at (epoch, batch), for the test to SIGKILL the process."""

    epochs_run = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epochs_run.append(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if kill and (self.epoch, batch) == kill[:2]:
            with open(kill[2], "w") as f:
                f.write("ready")
            time.sleep(600)


model.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0,
          callbacks=[keras.callbacks.BackupAndRestore(backup_dir), StopDead()])
masks = tfprune.get_masks(tfprune.autoprune.harden(model) if autoprune else model)
digest = hashlib.sha256(b"".join(np.asarray(v.numpy()).tobytes() for v in model.weights)).hexdigest()
with open(out_path, "w") as f:
    json.dump({"epochs_run": StopDead.epochs_run, "masks": hashlib.sha256(b"".join(np.packbits(m).tobytes() for m in masks)).hexdigest(),
               "weights": digest, "pruned_zero": all(
                   np.all(t.variable.numpy()[~m] == 0) for t, m in zip(tfprune.prunable_weights(
                       tfprune.strip(tfprune.autoprune.harden(model) if autoprune else model)), masks)),
               "density": tfprune.masks.density(masks)}, f)
