"""MaskedLayer under tf.distribute.MirroredStrategy with two logical CPU replicas."""

from subprocess_util import run_python

CODE = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, tfprune
keras.utils.set_random_seed(0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    model = tfprune.wrap(keras.Model(inputs, keras.layers.Dense(3)(x)))
    rng = np.random.default_rng(0)
    masks = [rng.random(t.shape) < 0.3 for t in tfprune.prunable_weights(model)]
    tfprune.apply_masks(model, masks)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
before = [t.variable.numpy().copy() for t in tfprune.prunable_weights(model)]
x = rng.normal(size=(64, 6)).astype("float32"); y = rng.integers(0, 3, 64)
model.fit(x, y, epochs=2, batch_size=16, verbose=0)
print("replicas", strategy.num_replicas_in_sync)
for t, m, b in zip(tfprune.prunable_weights(model), masks, before):
    copies = [v.numpy() for v in t.variable.value.values]
    assert len(copies) == 2
    for c in copies:
        assert np.array_equal(c[~m], b[~m]), "pruned entries moved"
        assert np.array_equal(c, copies[0]), "replicas differ"
    assert np.any(copies[0][m] != b[m]), "kept entries did not train"
    mask_copies = [v.numpy() for v in t.mask.value.values]
    assert all(np.array_equal(mc != 0, m) for mc in mask_copies), "masks differ"
print("ok")
"""


def test_fit_under_mirrored_strategy_keeps_pruned_weights_on_both_replicas():
    out = run_python(CODE, timeout=240)
    assert "replicas 2" in out and out.strip().endswith("ok")
