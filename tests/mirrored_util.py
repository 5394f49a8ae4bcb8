"""A pruning callback trained on one device and under MirroredStrategy (two logical CPUs), in a fresh process."""

import json

from subprocess_util import run_python

_CODE = """
import json
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, tfprune
from tfprune.callbacks import DynamicSparse, GradualPruning
from tfprune.sparsity.schedules import PolynomialDecay

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 6, 6, 1)).astype("float32"); y = rng.integers(0, 3, 64)

class Record(keras.callbacks.Callback):
    def __init__(self, pruning):
        super().__init__(); self.pruning, self.masks = pruning, []
    def on_train_batch_begin(self, batch, logs=None):
        if len(self.pruning.updates) > len(self.masks):
            self.masks.append([[v.numpy() for v in getattr(t.mask.value, "values", [t.mask])]
                               for t in tfprune.prunable_weights(self.model)])

def run(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 6, 1))
        hidden = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
        model = tfprune.wrap(keras.Model(inputs, keras.layers.Dense(3)(hidden)))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    initial = [t.variable.numpy() for t in tfprune.prunable_weights(model)]
    pruning = CALLBACK
    record = Record(pruning)
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=[pruning, record])
    return model, initial, pruning, record.masks

one_model, one_initial, one, one_masks = run(tf.distribute.get_strategy())
two_model, two_initial, two, two_masks = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps({
    "replicas": two_model.distribute_strategy.num_replicas_in_sync,
    "same_initial_weights": all(np.array_equal(a, b) for a, b in zip(one_initial, two_initial)),
    "update_steps": [[u.step for u in one.updates], [u.step for u in two.updates]],
    "moved": [[sum((u.moved or {}).values()) for u in callback.updates] for callback in (one, two)],
    "mask_copies": [len(per_tensor) for per_tensor in two_masks[-1]],
    "replicas_agree": all(np.array_equal(c, per_tensor[0]) for update in two_masks for per_tensor in update for c in per_tensor),
    "same_masks_at_every_update": all(np.array_equal(a[0], b[0]) for ua, ub in zip(one_masks, two_masks)
                                      for a, b in zip(ua, ub)),
    "kept": [int(np.count_nonzero(m)) for m in tfprune.get_masks(two_model)],
    "max_weight_difference": max(float(np.max(np.abs(a.variable.numpy() - b.variable.numpy())))
                                 for a, b in zip(tfprune.prunable_weights(one_model), tfprune.prunable_weights(two_model))),
}))
"""


def mirrored_vs_one_device(callback):
    """Trains the same small CNN with ``callback`` (Python source, e.g. ``"GradualPruning(...)"``; ``x``
    and ``y`` are the training data) on one device and on two mirrored replicas.

    Returns:
        A dict: replicas, same_initial_weights, update_steps and moved (one list per run), mask_copies,
        replicas_agree, same_masks_at_every_update, kept (per tensor), max_weight_difference.
    """
    return json.loads(run_python(_CODE.replace("CALLBACK", callback), timeout=240).strip().splitlines()[-1])
