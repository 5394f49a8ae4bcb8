"""GradualPruning and PruningSummaries in ``fit``: kept counts against the schedule's closed form,
the top-|w| selection re-derived in NumPy, strip, TensorBoard scalars read back, and bad input."""

import glob
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import batch, compile_for_test
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tfprune
from tfprune.callbacks import GradualPruning, PruningSummaries
from tfprune.sparsity.masks import kept_count
from tfprune.sparsity.schedules import ConstantSparsity, PolynomialDecay

END_STEP, FREQUENCY = 12, 3
UPDATE_STEPS = [0, 3, 6, 9, 12]  # (step - 0) % 3 == 0 and step <= 12, within 18 steps


def small_cnn():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="small_cnn")


def polynomial_sparsity(step, final=0.9, end=END_STEP):
    """TF-MOT's PolynomialDecay(0, final, 0, end, power=3) in closed form, float64."""
    progress = min(1.0, step / end)
    return final * (1.0 - (1.0 - progress) ** 3)


def schedule_sparsity(schedule, step, closed_form):
    """The schedule's sparsity at ``step``, checked against the closed form (it computes in float32)."""
    due, sparsity = schedule(step)
    assert due and sparsity == pytest.approx(closed_form, abs=1e-6)
    return sparsity


def top_k_mask(scores, previous, k):
    """The ``k`` highest scores among the entries ``previous`` keeps, ties to the lower flat index."""
    flat = np.where(previous.ravel(), np.abs(scores.ravel()).astype(np.float64), -np.inf)
    order = np.lexsort((np.arange(flat.size), -flat))
    keep = np.zeros(flat.size, bool)
    keep[order[:k]] = True
    return keep.reshape(scores.shape)


class Recorder(keras.callbacks.Callback):
    """Listed after GradualPruning: at each new update, the dense weights it scored and the masks
    before and after it."""

    def __init__(self, pruning):
        super().__init__()
        self.pruning, self.records = pruning, []

    def on_train_begin(self, logs=None):
        self.masks = tfprune.get_masks(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        if len(self.pruning.updates) == len(self.records):
            return
        masks = tfprune.get_masks(self.model)
        weights = [t.variable.numpy() for t in tfprune.prunable_weights(self.model)]
        self.records.append((self.pruning.last_update, weights, self.masks, masks))
        self.masks = masks


def fit_gradual(jit_compile=False, scope="local", epochs=3, schedule=None):
    keras.utils.set_random_seed(0)
    model = compile_for_test(tfprune.wrap(small_cnn()), jit_compile=jit_compile)
    pruning = GradualPruning(schedule or PolynomialDecay(0.0, 0.9, 0, END_STEP, frequency=FREQUENCY), scope=scope)
    recorder = Recorder(pruning)
    x, y = batch((6, 6, 1), n=48)
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=[pruning, recorder])
    return model, pruning, recorder.records, x


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager_graph", "xla"])
def test_polynomial_decay_keeps_exact_counts_of_the_highest_magnitudes(jit_compile):
    model, pruning, records, x = fit_gradual(jit_compile)
    assert [u.step for u in pruning.updates] == UPDATE_STEPS
    targets = tfprune.prunable_weights(model)
    for update, weights, before, after in records:
        s = schedule_sparsity(pruning.schedule, update.step, polynomial_sparsity(update.step))
        assert update.target_sparsity == s
        for t, w, old, new in zip(targets, weights, before, after):
            k = kept_count(1.0 - s, t.size)
            assert np.count_nonzero(new) == k, (update.step, t.name)
            np.testing.assert_array_equal(new, top_k_mask(w, old, k))  # top-|w| among those kept so far
            assert update.sparsities[t.name] == pytest.approx(1.0 - k / t.size, abs=1e-12)
    # 36 conv weights keep round(3.6) = 4, 192 dense weights keep round(19.2) = 19 at sparsity 0.9
    assert [int(m.sum()) for m in tfprune.get_masks(model)] == [4, 19]
    plain = tfprune.strip(model)
    for t, m in zip(targets, tfprune.get_masks(model)):
        stripped = plain.get_layer(t.layer.name).kernel.numpy()
        assert np.all(stripped[~m] == 0) and np.all(stripped[m] != 0), t.name
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=1e-6)


def test_global_scope_ranks_all_weights_together():
    model, pruning, records, _ = fit_gradual(scope="global", epochs=1,
                                             schedule=PolynomialDecay(0.5, 0.8, 0, 4, frequency=4))
    assert [u.step for u in pruning.updates] == [0, 4]
    for update, weights, before, after in records:
        s = schedule_sparsity(pruning.schedule, update.step, 0.5 if update.step == 0 else 0.8)
        flat_w = np.concatenate([w.ravel() for w in weights])
        flat_old = np.concatenate([m.ravel() for m in before])
        expected = top_k_mask(flat_w, flat_old, kept_count(1.0 - s, flat_w.size))  # 228 weights: 114, then 46
        np.testing.assert_array_equal(np.concatenate([m.ravel() for m in after]), expected)
        assert update.model_sparsity == pytest.approx(1.0 - expected.sum() / flat_w.size, abs=1e-12)


def two_of_four(w):
    """The 2:4 mask of a Dense kernel re-derived in NumPy: each 4 consecutive inputs of an output
    keep their 2 largest |w| (ties to the lower index)."""
    groups = np.abs(w.astype(np.float64)).reshape(w.shape[0] // 4, 4, w.shape[1])
    rank = np.argsort(np.argsort(-groups, axis=1, kind="stable"), axis=1)
    return (rank < 2).reshape(w.shape)


def test_two_of_four_applies_the_full_pattern_at_the_first_update_and_keeps_it():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = compile_for_test(tfprune.wrap(keras.Model(inputs, keras.layers.Dense(4)(hidden))))
    pruning = GradualPruning(PolynomialDecay(0.0, 0.5, 0, 4, frequency=2), pattern="2:4")
    recorder = Recorder(pruning)
    x, y = batch((8,), n=48)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[pruning, recorder])
    assert [u.step for u in pruning.updates] == [0, 2, 4]
    records = recorder.records
    _, weights, _, first = records[0]
    for w, m in zip(weights, first):
        np.testing.assert_array_equal(m, two_of_four(w))  # the whole pattern at step 0, where the schedule says 0
    for update, _, _, masks in records:
        assert update.model_sparsity == 0.5
        assert all(np.array_equal(m, f) for m, f in zip(masks, first))  # magnitude keeps pruned weights pruned
    plain = tfprune.strip(model)
    for t, m in zip(tfprune.prunable_weights(model), first):
        kernel = plain.get_layer(t.layer.name).kernel.numpy()
        np.testing.assert_array_equal(kernel != 0, m)
        assert np.all(np.count_nonzero(kernel.reshape(-1, 4, kernel.shape[1]), axis=1) == 2)


def read_scalars(log_dir):
    """``(step, tag, value)`` of every scalar in the event files of ``log_dir``, in file order."""
    out = []
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.append((event.step, value.tag, float(tf.make_ndarray(value.tensor))))
    return out


class EpochEnds(keras.callbacks.Callback):
    """Records the optimizer step and the masks at each epoch end."""

    def __init__(self):
        super().__init__()
        self.records = []

    def on_epoch_end(self, epoch, logs=None):
        self.records.append((int(self.model.optimizer.iterations.numpy()), tfprune.get_masks(self.model)))


def expected_scalars(step, names, masks):
    """The scalars PruningSummaries should write for ``masks`` at ``step``, from the masks in float64."""
    rows = [(step, f"sparsity/{n}", 1.0 - np.count_nonzero(m) / m.size) for n, m in zip(names, masks)]
    total = sum(m.size for m in masks)
    return rows + [(step, "model_sparsity", 1.0 - sum(np.count_nonzero(m) for m in masks) / total)]


def assert_same_scalars(written, expected):
    assert [(s, tag) for s, tag, _ in written] == [(s, tag) for s, tag, _ in expected]
    for (_, tag, got), (_, _, want) in zip(written, expected):
        assert got == pytest.approx(want, abs=1e-7), tag  # written as float32


@pytest.mark.parametrize("summaries_first", [True, False], ids=["summaries_first", "summaries_last"])
def test_summaries_log_each_update_and_epoch_end_with_the_measured_sparsities(tmp_path, summaries_first):
    model = compile_for_test(tfprune.wrap(small_cnn()))
    pruning = GradualPruning(PolynomialDecay(0.0, 0.9, 0, 6, frequency=2))
    recorder, ends = Recorder(pruning), EpochEnds()
    x, y = batch((6, 6, 1), n=32)
    summaries = PruningSummaries(tmp_path)  # it finds the updates whatever the order
    callbacks = [summaries, pruning, recorder, ends] if summaries_first else [pruning, recorder, ends, summaries]
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
    names = [t.name for t in tfprune.prunable_weights(model)]
    assert names == ["conv/kernel", "logits/kernel"]
    updates = {u.step: masks for u, _, _, masks in recorder.records}
    assert sorted(updates) == [0, 2, 4, 6] and [s for s, _ in ends.records] == [4, 8]
    expected = []
    for step in [0, 2]:
        expected += expected_scalars(step, names, updates[step])
    expected += expected_scalars(4, names, ends.records[0][1])  # the first epoch ends after 4 steps ...
    for step in [4, 6]:  # ... before the update at step 4, made when the second epoch starts
        expected += expected_scalars(step, names, updates[step])
    expected += expected_scalars(8, names, ends.records[1][1])
    assert_same_scalars(read_scalars(tmp_path), expected)
    assert expected[-1][2] == pytest.approx(1.0 - (4 + 19) / 228)  # sparsity 0.9 reached at step 6


def test_summaries_alone_log_the_masks_at_epoch_ends(tmp_path):
    model = compile_for_test(tfprune.prune_at_init(small_cnn(), "magnitude", sparsity=0.75, scope="local", verbose=0))
    x, y = batch((6, 6, 1), n=16)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[PruningSummaries(tmp_path)])
    names = [t.name for t in tfprune.prunable_weights(model)]
    masks = tfprune.get_masks(model)
    assert [int(m.sum()) for m in masks] == [9, 48]  # kept_count(0.25, 36), kept_count(0.25, 192)
    assert_same_scalars(read_scalars(tmp_path), expected_scalars(2, names, masks) + expected_scalars(4, names, masks))
    board = EventAccumulator(str(tmp_path)).Reload()  # TensorBoard's own loader files them as scalars
    for tag in ["sparsity/conv/kernel", "sparsity/logits/kernel", "model_sparsity"]:
        assert board.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
        assert [e.step for e in board.Tensors(tag)] == [2, 4]
    assert float(tf.make_ndarray(board.Tensors("model_sparsity")[-1].tensor_proto)) == pytest.approx(1 - 57 / 228)


def test_summaries_without_tensorboard_say_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what `import tensorboard` sees when it is absent
    with pytest.raises(ImportError, match="pip install tensorboard"):
        PruningSummaries(tmp_path)


def snapshot(model):
    return [v.numpy().copy() for v in model.weights] + [model.optimizer.iterations.numpy()]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("make, error, match", [
    (lambda: GradualPruning(ConstantSparsity(0.5, 0), "no_such_method"), ValueError, "unknown criterion 'no_such_method'"),
    (lambda: GradualPruning(ConstantSparsity(0.5, 0), "snip"), ValueError, "criterion 'snip' needs data"),
    (lambda: GradualPruning(ConstantSparsity(0.5, 0), scope="layer"), ValueError, "scope must be one of"),
    (lambda: GradualPruning(0.5), TypeError, "schedule must be a training-step tfprune.schedules.PruningSchedule"),
    (lambda: GradualPruning(lambda step: (True, 0.5)), TypeError, "schedule must be a training-step tfprune.schedules.PruningSchedule"),
    (lambda: GradualPruning(ConstantSparsity(0.5, 0), pattern="3:2"), ValueError,
     r"n of NByM\(n, m\) must be an int in \[1, 2\], got 3"),
    (lambda: GradualPruning(ConstantSparsity(0.5, 0), samples=10), TypeError, "takes no option"),
    (lambda: GradualPruning(PolynomialDecay(0.0, 0.8, 0, 10), pattern="2:4"), ValueError, r"ends at sparsity 0\.8, but pattern 2:4 fixes the sparsity at 0\.5"),
], ids=["method", "data", "scope", "schedule_number", "schedule_function", "pattern", "option", "n_by_m"])
def test_bad_arguments_raise_at_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_models_raise_before_anything_changes(tmp_path):
    x, y = batch((6, 6, 1), n=16)
    plain = compile_for_test(small_cnn())
    before = snapshot(plain)
    with pytest.raises(ValueError, match=r"has no masks: call tfprune\.wrap\(model\)"):
        plain.fit(x, y, batch_size=8, verbose=0, callbacks=[GradualPruning(ConstantSparsity(0.5, 0))])
    with pytest.raises(ValueError, match=r"has none: call tfprune\.wrap\(model\)"):
        plain.fit(x, y, batch_size=8, verbose=0, callbacks=[PruningSummaries(tmp_path)])
    assert_unchanged(plain, before)
    assert not os.listdir(tmp_path)  # no event file either

    wrapped = tfprune.wrap(small_cnn())
    wrapped.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False,
                    steps_per_execution=2)
    wrapped.optimizer.build(wrapped.trainable_variables)
    before = snapshot(wrapped)
    with pytest.raises(ValueError, match="steps_per_execution=2.*compile it with steps_per_execution=1"):
        wrapped.fit(x, y, batch_size=8, verbose=0, callbacks=[GradualPruning(ConstantSparsity(0.5, 0))])
    assert_unchanged(wrapped, before)


def test_an_update_that_would_grow_a_mask_raises_and_changes_nothing():
    model = compile_for_test(tfprune.prune_at_init(small_cnn(), "magnitude", sparsity=0.9, scope="local", verbose=0))
    model.optimizer.build(model.trainable_variables)
    before = snapshot(model)
    x, y = batch((6, 6, 1), n=16)
    with pytest.raises(ValueError, match="prunes to sparsity 0.5 at step 0, but its sparsest masked tensor is at 0.901042"):
        model.fit(x, y, batch_size=8, verbose=0, callbacks=[GradualPruning(ConstantSparsity(0.5, 0))])
    assert_unchanged(model, before)
