"""DynamicSparse (RigL, SET) in ``fit``: one RigL update re-derived in NumPy float64 (dense
gradient, drops, grows, zeroed weights and Adam slots, cosine drop count), ERK counts in closed
form, SET seeds, XLA, TensorBoard scalars read back, save/load/strip, bad input; a SIGKILL +
BackupAndRestore restart and MirroredStrategy, each in subprocesses."""

import math

import keras
import numpy as np
import pytest
from mirrored_util import mirrored_vs_one_device
from resume_util import kill_and_resume
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfprune
from tfprune.callbacks import DynamicSparse, PruningSummaries
from tfprune.callbacks.dynamic import optimizer_slots

N, BATCH = 48, 16  # 3 steps per epoch
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden), name="mlp")


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, 8)).astype("float32"), rng.integers(0, 3, N)


def wrapped_mlp(jit_compile=False, optimizer=None):
    keras.utils.set_random_seed(0)
    model = tfprune.wrap(mlp())
    model.compile(optimizer or keras.optimizers.Adam(1e-2), LOSS, jit_compile=jit_compile)
    return model


def numpy_dense_gradients(weights, masks, x, y):
    """∂(mean cross-entropy)/∂w of the effective weights w = θ ⊙ m of the MLP, in float64."""
    (k1, b1, k2, b2) = [np.asarray(w, np.float64) for w in weights]
    w1, w2 = k1 * masks[0], k2 * masks[1]
    x = np.asarray(x, np.float64)
    pre = x @ w1 + b1
    h = np.maximum(pre, 0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(3)[y]) / len(x)
    return [x.T @ ((dz @ w2.T) * (pre > 0)), h.T @ dz]


def top(scores, candidates, k):
    """The ``k`` highest scores among ``candidates``, ties to the lower flat index."""
    flat = np.where(candidates.ravel(), scores.ravel(), -np.inf)
    order = np.lexsort((np.arange(flat.size), -flat))
    keep = np.zeros(flat.size, bool)
    keep[order[:k]] = True
    return keep.reshape(scores.shape)


class Snapshot(keras.callbacks.Callback):
    """At the beginning of ``step``: masks, all weights and the Adam slots of the kernels."""

    def __init__(self, step):
        super().__init__()
        self.step, self.state = step, None

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            targets = tfprune.prunable_weights(self.model)
            self.state = {
                "masks": tfprune.get_masks(self.model),
                "weights": [w.numpy() for w in self.model.weights if "mask" not in w.path],
                "kernels": [t.variable.numpy() for t in targets],
                "slots": [[s.numpy() for s in optimizer_slots(self.model.optimizer, t.variable)] for t in targets],
            }


class FillSlots(keras.callbacks.Callback):
    """At the beginning of ``step``, sets every optimizer slot of the kernels to 0.5 (pruned
    weights' slots are otherwise zero already, and a reset would show nothing)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            for t in tfprune.prunable_weights(self.model):
                for slot in optimizer_slots(self.model.optimizer, t.variable):
                    slot.assign(np.full(t.shape, 0.5, "float32"))


def test_one_rigl_update_equals_a_numpy_rederivation():
    x, y = data()
    model = wrapped_mlp()
    rigl = DynamicSparse("rigl", 0.5, allocation="uniform", update_frequency=2, drop_fraction=0.3, end_step=10,
                         data=(x, y), samples=N, batch_size=BATCH, seed=0)
    before, after = Snapshot(2), Snapshot(2)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[FillSlots(2), before, rigl, after])
    assert [u.step for u in rigl.updates] == [2]

    old, new = before.state["masks"], after.state["masks"]
    fraction = 0.3 * 0.5 * (1 + math.cos(math.pi * 2 / 10))  # cosine drop schedule at step 2 of 10
    assert rigl.schedule(2) == (True, pytest.approx(fraction, abs=1e-15))
    kept = [64, 24]  # floor(0.5·128 + ½), floor(0.5·48 + ½)
    assert [int(m.sum()) for m in old] == [int(m.sum()) for m in new] == kept
    dropped = [math.floor(fraction * k + 0.5) for k in kept]
    assert dropped == [17, 7]  # 0.2714·64 = 17.4, 0.2714·24 = 6.5

    # update 1 (step 2 // 2) uses batch 1 mod 3 of the 48 samples cut into batches of 16: x[16:32]
    gradients = numpy_dense_gradients(before.state["weights"], old, x[16:32], y[16:32])
    for i, (m_old, m_new, kernel, g) in enumerate(zip(old, new, before.state["kernels"], gradients)):
        survivors = top(np.abs(kernel.astype(np.float64)), m_old, kept[i] - dropped[i])  # smallest |w| dropped
        grown = top(np.abs(g), ~survivors, dropped[i])  # largest |∂L/∂w| among the rest
        np.testing.assert_array_equal(m_new, survivors | grown)
        arrived = m_new & ~m_old
        assert rigl.updates[0].moved[f"{'hidden' if i == 0 else 'logits'}/kernel"] == int(arrived.sum()) > 0
        now = after.state["kernels"][i]
        assert np.all(now[arrived] == 0)  # grown weights start at zero
        np.testing.assert_array_equal(now[~arrived], kernel[~arrived])  # nothing else written
        slots_before, slots_after = before.state["slots"][i], after.state["slots"][i]
        assert len(slots_after) == 2  # Adam: momentum and velocity
        for s_before, s_after in zip(slots_before, slots_after):
            assert np.all(s_before[arrived] == 0.5) and np.all(s_after[arrived] == 0)
            np.testing.assert_array_equal(s_after[~arrived], s_before[~arrived])


def test_erk_initial_counts_and_pruned_weights_stay_zero_between_updates():
    x, y = data()
    model = wrapped_mlp()
    dst = DynamicSparse("set", 0.5, update_frequency=2, end_step=8, seed=3)

    class Check(keras.callbacks.Callback):
        effective = []

        def on_train_batch_end(self, batch, logs=None):
            Check.effective.append([(t.value.numpy(), t.mask.numpy()) for t in tfprune.prunable_weights(self.model)])

    model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, callbacks=[dst, Check()])
    # ERK over (8, 16) and (16, 3) at density 0.5: ε = 88 / 43, exact 49.12 and 38.88 kept of 88 in all,
    # rounded by largest remainder to 49 and 39
    assert [int(m.sum()) for m in tfprune.get_masks(model)] == [49, 39]
    assert [u.step for u in dst.updates] == [2, 4, 6]
    assert all(sum(u.moved.values()) > 0 for u in dst.updates)
    for step in Check.effective:
        for value, mask in step:
            assert np.all(value[mask == 0] == 0) and int(mask.sum()) in (49, 39)
    plain = tfprune.strip(model)
    kernels = [plain.get_layer(name).kernel.numpy() for name in ("hidden", "logits")]
    for mask, kernel in zip(tfprune.get_masks(model), kernels):
        assert np.all(kernel[~mask] == 0)
    np.testing.assert_array_equal(plain.predict(x, verbose=0), model.predict(x, verbose=0))


def set_masks(seed, jit_compile=False):
    x, y = data()
    model = wrapped_mlp(jit_compile=jit_compile)
    dst = DynamicSparse("set", 0.7, update_frequency=1, drop_fraction=0.5, end_step=6, seed=seed)
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[dst])
    return model, dst


def test_set_with_a_seed_is_reproducible_and_seeds_differ():
    (a, _), (b, _), (c, set_c) = set_masks(1), set_masks(1), set_masks(2)
    masks_a, masks_b, masks_c = (tfprune.get_masks(m) for m in (a, b, c))
    for ma, mb, mc in zip(masks_a, masks_b, masks_c):
        np.testing.assert_array_equal(ma, mb)
        assert int(ma.sum()) == int(mc.sum())
    assert any(not np.array_equal(ma, mc) for ma, mc in zip(masks_a, masks_c))
    assert [u.step for u in set_c.updates] == [1, 2, 3, 4, 5]


def test_set_under_xla_keeps_counts_and_zeros():
    model, dst = set_masks(1, jit_compile=True)
    eager, _ = set_masks(1)
    for m, e in zip(tfprune.get_masks(model), tfprune.get_masks(eager)):
        assert int(m.sum()) == int(e.sum())
    assert len(dst.updates) == 5 and all(sum(u.moved.values()) > 0 for u in dst.updates)


def test_summaries_log_the_connections_moved(tmp_path):
    x, y = data()
    model = wrapped_mlp()
    dst = DynamicSparse("set", 0.5, update_frequency=2, end_step=6, seed=0)
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
              callbacks=[PruningSummaries(tmp_path), dst])
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()

    def scalars(tag):
        return {e.step: float(np.asarray(tf_value(e))) for e in events.Tensors(tag)}

    def tf_value(event):
        import tensorflow as tf
        return tf.make_ndarray(event.tensor_proto)

    assert [u.step for u in dst.updates] == [2, 4]
    assert scalars("connections_moved") == {u.step: sum(u.moved.values()) for u in dst.updates}
    assert scalars("connections_moved/hidden/kernel") == {u.step: u.moved["hidden/kernel"] for u in dst.updates}


def test_save_load_strip_and_tflite_export_keep_the_masks_and_predictions(tmp_path):
    model, _ = set_masks(4)
    model.save(tmp_path / "dst.keras")
    loaded = keras.models.load_model(tmp_path / "dst.keras")
    masks = tfprune.get_masks(model)
    for a, b in zip(masks, tfprune.get_masks(loaded)):
        np.testing.assert_array_equal(a, b)
    x, _ = data(1)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    report = tfprune.export.tflite(tfprune.strip(loaded), tmp_path / "dst.tflite", check_data=x[:8])
    assert report.max_abs_diff <= 1e-5
    assert sorted(t.shape for t in report.sparse_tensors) == [(3, 16), (16, 8)]  # [out, in]; both ≥ 30 % zeros


def test_optimizer_slots_of_sgd_with_momentum_and_plain_sgd():
    with_momentum = wrapped_mlp(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    plain = wrapped_mlp(optimizer=keras.optimizers.SGD(0.1))
    for model, count in ((with_momentum, 1), (plain, 0)):
        model.optimizer.build(model.trainable_variables)
        for t in tfprune.prunable_weights(model):
            slots = optimizer_slots(model.optimizer, t.variable)
            assert len(slots) == count and all(tuple(s.shape) == t.shape for s in slots)


@pytest.mark.parametrize("make, match", [
    (lambda: DynamicSparse("snip", 0.5, end_step=10), "criterion must be one of"),
    (lambda: DynamicSparse("set", 1.0, end_step=10), r"sparsity must be a number in \(0, 1\)"),
    (lambda: DynamicSparse("set", 0.0, end_step=10), r"sparsity must be a number in \(0, 1\)"),
    (lambda: DynamicSparse("set", 0.5, drop_fraction=1.0, end_step=10), r"drop_fraction must be a number in \(0, 1\)"),
    (lambda: DynamicSparse("set", 0.5, drop_fraction=0, end_step=10), r"drop_fraction must be a number in \(0, 1\)"),
    (lambda: DynamicSparse("set", 0.5, update_frequency=0, end_step=10), "update_frequency must be an int >= 1"),
    (lambda: DynamicSparse("set", 0.5, allocation="normal", end_step=10), "allocation must be one of"),
    (lambda: DynamicSparse("set", 0.5, drop_schedule="linear", end_step=10), "drop_schedule must be one of"),
    (lambda: DynamicSparse("rigl", 0.5, end_step=10), "pass data="),
])
def test_bad_arguments_raise_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_models_raise_before_any_mask_changes():
    x, y = data()
    plain = mlp()
    plain.compile("adam", LOSS)
    with pytest.raises(ValueError, match=r"call tfprune.wrap\(model\)"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[DynamicSparse("set", 0.5, end_step=10)])
    model = wrapped_mlp()
    masks = [np.arange(m.size).reshape(m.shape) % 3 == 0 for m in tfprune.get_masks(model)]
    tfprune.apply_masks(model, masks)
    weights = [w.numpy() for w in model.weights]
    with pytest.raises(ValueError, match=r"keep \[43, 16\] weights per tensor, but sparsity=0.5"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[DynamicSparse("set", 0.5, end_step=10)])
    for before, now in zip(weights, model.weights):
        np.testing.assert_array_equal(before, now.numpy())


@pytest.mark.slow  # two processes and a restart: about 25 s on two busy cores
def test_sigkill_then_backup_and_restore_ends_bit_identical(tmp_path):
    # step 15 is in epoch 2 (steps 12-17), after the backup of epochs 0-1 and the update at step 12
    a, b = kill_and_resume(tmp_path, "rigl", kill_step=15)
    assert a["epochs_run"] == [0, 1, 2, 3] and b["epochs_run"] == [2, 3]
    assert a["update_steps"] == [4, 8, 12, 16, 20] and b["update_steps"] == [12, 16, 20]
    assert a["moved"][2:] == b["moved"] and all(m > 0 for m in a["moved"])
    for key in ("masks", "weights", "optimizer"):
        assert a[key] == b[key], key
    # ERK at density 0.2 over 36 + 192 weights: exact 6.43 and 39.17 of kept_count(0.2, 228) = 46,
    # largest remainder to the convolution
    assert a["kept"] == b["kept"] == [7, 39]


def test_mirrored_strategy_gives_the_masks_of_one_device():
    result = mirrored_vs_one_device(
        'DynamicSparse("rigl", 0.8, update_frequency=3, end_step=15, data=(x, y), samples=64, batch_size=32, seed=0)')
    assert result["replicas"] == 2 and result["mask_copies"] == [2, 2]
    assert result["update_steps"] == [[3, 6, 9, 12]] * 2  # 16 steps, every 3 before end_step 15
    assert result["moved"][0] == result["moved"][1] and all(m > 0 for m in result["moved"][0])
    assert result["replicas_agree"] and result["same_masks_at_every_update"]
    assert result["kept"] == [7, 39]  # ERK at density 0.2, as in the resume test
