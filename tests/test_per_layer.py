"""Per-layer configuration: several mask-changing callbacks in one fit, each over the layers its
policy selects, with its own schedule, criterion and pattern (TF-MOT's 2:4 guide); overlapping
selections, round schedules and schedules that would grow the masks refused before the first step."""

import numpy as np
import pytest
import keras

import tfprune
from tfprune.callbacks import DynamicSparse, GradualPruning, active_pruners
from tfprune.policies import OnlyLayers
from tfprune.schedules import ConstantSparsity, Exponential, PolynomialDecay

L = keras.layers


def _guide_model():
    """TF-MOT's 2:4 guide CNN at a tenth of its width: conv 5×5 (unstructured), conv 5×5 and
    Dense (2:4), a dense classifier."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 1)),
        L.Conv2D(4, 5, padding="same", activation="relu", name="conv_unstructured"),
        L.MaxPooling2D(),
        L.Conv2D(8, 5, padding="same", activation="relu", name="conv_2by4"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dense(16, activation="relu", name="dense_2by4"),
        L.Dense(10, name="classifier"),
    ])


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 12, 12, 1)).astype("float32"), rng.integers(0, 10, n)


def _compiled(model):
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _state(model):
    return [v.numpy().copy() for v in model.variables]


def _groups_of(mask, axis, m):
    """Non-zeros per group of ``m`` consecutive entries along ``axis`` (NumPy re-derivation)."""
    rows = np.moveaxis(mask, axis, -1)
    return rows.reshape(-1, rows.shape[-1] // m, m).sum(axis=-1)


def test_tfmot_guide_configuration_in_one_fit():
    pruned = ["conv_unstructured", "conv_2by4", "dense_2by4"]
    wrapped = _compiled(tfprune.wrap(_guide_model(), policy=OnlyLayers(names=pruned)))
    unstructured = GradualPruning(PolynomialDecay(0.0, 0.5, begin_step=0, end_step=6, frequency=2),
                                  policy=OnlyLayers(names=["conv_unstructured"]))
    two_by_four = GradualPruning(ConstantSparsity(0.5, begin_step=0), pattern="2:4",
                                 policy=OnlyLayers(names=["conv_2by4", "dense_2by4"]))
    x, y = _data()
    wrapped.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[unstructured, two_by_four])

    targets = {t.layer.name: t for t in tfprune.prunable_weights(wrapped)}
    masks = dict(zip([t.layer.name for t in tfprune.prunable_weights(wrapped)], tfprune.get_masks(wrapped)))
    assert sorted(masks) == sorted(pruned)
    for name in pruned:
        assert 1.0 - masks[name].mean() == 0.5, name
    for name in ("conv_2by4", "dense_2by4"):
        groups = _groups_of(masks[name], targets[name].reduction_axis, 4)
        assert (groups == 2).all(), name
    assert (_groups_of(masks["conv_unstructured"], 2, 1) >= 0).all()  # unconstrained, but exact count:
    assert int(masks["conv_unstructured"].sum()) == 5 * 5 * 1 * 4 // 2
    assert set(unstructured.last_update.sparsities) == {targets["conv_unstructured"].name}
    assert set(two_by_four.last_update.sparsities) == {targets["conv_2by4"].name, targets["dense_2by4"].name}
    # the 2:4 callback's one update came at step 0, when the unstructured layer was still dense
    assert two_by_four.last_update.model_sparsity == pytest.approx((800 + 1152) / 2 / (100 + 800 + 1152))


def test_two_callbacks_over_one_layer_are_refused_before_the_first_step():
    wrapped = _compiled(tfprune.wrap(_guide_model()))
    x, y = _data(16)
    wrapped.optimizer.build(wrapped.trainable_variables)
    before = _state(wrapped)
    first = GradualPruning(ConstantSparsity(0.5, 0), policy=OnlyLayers(names=["conv_2by4", "dense_2by4"]))
    second = GradualPruning(ConstantSparsity(0.5, 0), pattern="2:4", policy=OnlyLayers(names=["dense_2by4"]))
    with pytest.raises(ValueError, match=r"would both change the masks of \['[\w/]*dense_2by4/kernel'\]"):
        wrapped.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[first, second])
    assert all(np.array_equal(a, b) for a, b in zip(before, _state(wrapped)))
    assert int(wrapped.optimizer.iterations.numpy()) == 0
    # a fit with disjoint selections afterwards is not confused by the refused one
    third = GradualPruning(ConstantSparsity(0.5, 0), policy=OnlyLayers(names=["conv_unstructured"]))
    wrapped.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[first, third])
    assert active_pruners(wrapped) == ()


def test_gradual_and_dynamic_sparse_share_a_fit_over_disjoint_layers():
    wrapped = _compiled(tfprune.wrap(_guide_model()))
    x, y = _data()
    seen = []
    probe = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(active_pruners(wrapped)))
    gradual = GradualPruning(ConstantSparsity(0.75, 0), policy=OnlyLayers(names=["conv_unstructured", "conv_2by4"]))
    dynamic = DynamicSparse("set", 0.5, allocation="uniform", update_frequency=2, end_step=6, seed=0,
                            policy=OnlyLayers(names=["dense_2by4", "classifier"]))
    wrapped.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[gradual, dynamic, probe])
    assert seen[0] == (gradual, dynamic)
    counts = {t.layer.name: int(m.sum()) for t, m in zip(tfprune.prunable_weights(wrapped), tfprune.get_masks(wrapped))}
    assert counts == {"conv_unstructured": 25, "conv_2by4": 5 * 5 * 4 * 8 // 4,
                      "dense_2by4": 72 * 16 // 2, "classifier": 16 * 10 // 2}
    assert sum(sum(u.moved.values()) for u in dynamic.updates) > 0


def test_a_round_schedule_is_refused_by_the_callback():
    with pytest.raises(TypeError, match="round schedule of tfprune.prune_at_init"):
        GradualPruning(Exponential(0.9, rounds=10))
    with pytest.raises(ValueError, match="round_schedule must be one of"):
        tfprune.prune_at_init(_guide_model(), "magnitude", sparsity=0.5,
                              round_schedule=PolynomialDecay(0.0, 0.5, 0, 10))


@pytest.mark.parametrize("schedule, message", [
    (PolynomialDecay(0.8, 0.5, begin_step=0, end_step=10), "lowers the sparsity from 0.8 to 0.5"),
    (ConstantSparsity(0.3, begin_step=0), "prunes to sparsity 0.3 at step 0, but its sparsest masked tensor is at 0.5"),
])
def test_a_schedule_that_would_grow_the_masks_is_refused_before_the_first_step(schedule, message):
    wrapped = _compiled(tfprune.prune_at_init(_guide_model(), "magnitude", sparsity=0.5, scope="local", verbose=0))
    x, y = _data(16)
    wrapped.optimizer.build(wrapped.trainable_variables)
    before = _state(wrapped)
    with pytest.raises(ValueError, match=message):
        wrapped.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[GradualPruning(schedule)])
    assert all(np.array_equal(a, b) for a, b in zip(before, _state(wrapped)))


def test_a_resumed_schedule_is_checked_from_the_current_step():
    schedule = PolynomialDecay(0.2, 0.6, begin_step=0, end_step=100, frequency=10)
    assert schedule.next_update(0) == (0, schedule(0)[1])
    assert schedule.next_update(41) == (50, schedule(50)[1])
    assert schedule.next_update(101) is None
    assert ConstantSparsity(0.5, begin_step=5, frequency=3).next_update(7) == (8, pytest.approx(0.5))


def test_a_pattern_a_layer_cannot_reach_warns_by_name():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, name="narrow"), L.Dense(8, name="wide")])
    with pytest.warns(UserWarning, match=r"cannot reach sparsity 0.5 on [\w/]*narrow/kernel \(keeps 0.6667\)"):
        pruned = tfprune.prune_at_init(model, "magnitude", pattern="2:4", verbose=0)
    kept = {t.layer.name: int(m.sum()) for t, m in zip(tfprune.prunable_weights(pruned), tfprune.get_masks(pruned))}
    assert kept == {"narrow": 8, "wide": 16}  # 2 of 3 inputs per output; 2 of every 4


def test_policy_on_a_wrapped_model_prunes_only_its_layers():
    wrapped = tfprune.wrap(_guide_model())
    pruned = tfprune.prune_at_init(wrapped, "magnitude", sparsity=0.9, policy=OnlyLayers(names=["dense_2by4"]),
                                   verbose=0)
    densities = {t.layer.name: m.mean() for t, m in zip(tfprune.prunable_weights(pruned), tfprune.get_masks(pruned))}
    assert densities["dense_2by4"] == pytest.approx(0.1, abs=1e-3)
    assert all(densities[n] == 1.0 for n in ("conv_unstructured", "conv_2by4", "classifier"))
