"""GradualPruning or RigL (DynamicSparse) with keras.callbacks.BackupAndRestore (epoch backups) that
SIGKILLs itself once.

Usage: pruning_resumable.py gradual|rigl BACKUP_DIR OUT.json [KILL_STEP MARKER]
With KILL_STEP, the run kills itself at the beginning of that training step unless MARKER exists
(it writes MARKER first), so running the same command again resumes instead of dying again.
"""

import hashlib
import json
import os
import signal
import sys

import numpy as np
import tensorflow as tf

tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402

import tfprune  # noqa: E402
from tfprune.callbacks import DynamicSparse, GradualPruning  # noqa: E402
from tfprune.sparsity.schedules import PolynomialDecay  # noqa: E402

kind, backup_dir, out_path = sys.argv[1:4]
kill_step, marker = (int(sys.argv[4]), sys.argv[5]) if len(sys.argv) > 4 else (None, None)

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(48, 6, 6, 1)).astype("float32")
y = rng.integers(0, 3, 48)
inputs = keras.Input((6, 6, 1))
hidden = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
model = tfprune.wrap(keras.Model(inputs, keras.layers.Dense(3)(hidden)))
model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              jit_compile=False)


class Runs(keras.callbacks.Callback):
    """Records the epochs run; SIGKILLs the process at ``kill_step`` the first time."""

    epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if kill_step is not None and not os.path.exists(marker) and int(self.model.optimizer.iterations.numpy()) == kill_step:
            with open(marker, "w") as f:
                f.write("killed")
            os.kill(os.getpid(), signal.SIGKILL)


# 6 steps per epoch, 4 epochs: updates at steps 0, 4, ..., 20 (RigL: from step 4)
if kind == "gradual":
    pruning = GradualPruning(PolynomialDecay(0.0, 0.8, 0, 20, frequency=4))
else:
    pruning = DynamicSparse("rigl", 0.8, update_frequency=4, end_step=24, data=(x, y), samples=48, batch_size=16,
                            seed=0)
model.fit(x, y, epochs=4, batch_size=8, shuffle=False, verbose=0,
          callbacks=[keras.callbacks.BackupAndRestore(backup_dir), pruning, Runs()])


def digest(arrays):
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


masks = tfprune.get_masks(model)
with open(out_path, "w") as f:
    json.dump({
        "epochs_run": Runs.epochs,
        "update_steps": [u.step for u in pruning.updates],
        "moved": [sum(u.moved.values()) for u in pruning.updates if u.moved is not None],
        "masks": digest(masks),
        "weights": digest([v.numpy() for v in model.weights]),
        "optimizer": digest([v.numpy() for v in model.optimizer.variables]),
        "kept": [int(m.sum()) for m in masks],
        "step": int(model.optimizer.iterations.numpy()),
    }, f)
