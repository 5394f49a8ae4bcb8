"""prune_at_init: the driver over scorers, rounds and schedules, and its errors."""

import keras
import numpy as np
import pytest
from helpers import L, residual_cnn, subclassed_mlp

import tfprune
from tfprune import ArgumentError
from tfprune.scores import registry


def weights_of(model):
    return [v.numpy().copy() for v in model.weights]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def flat(masks):
    return np.concatenate([m.ravel() for m in masks])


def test_compression_and_sparsity_give_the_same_masks():
    a = tfprune.prune_at_init(residual_cnn(), "magnitude", compression=10, verbose=0)
    keras.utils.set_random_seed(0)  # the same initial weights again
    b = tfprune.prune_at_init(residual_cnn(), "magnitude", sparsity=0.9, verbose=0)
    np.testing.assert_array_equal(flat(tfprune.get_masks(a)), flat(tfprune.get_masks(b)))


@pytest.mark.parametrize("schedule", ["exponential", "linear"])
def test_rounds_follow_the_schedule_and_keep_pruned_weights_pruned(schedule):
    """Each round keeps floor(d_t·N+½) weights, d_t from the schedule; masks only shrink."""
    seen = []

    def recording_scorer(model, targets, data):
        seen.append(flat(tfprune.get_masks(model)))
        return [np.random.default_rng(len(seen)).random(t.shape) for t in targets]

    model = tfprune.prune_at_init(residual_cnn(), recording_scorer, sparsity=0.9, rounds=4, schedule=schedule, verbose=0)
    seen.append(flat(tfprune.get_masks(model)))
    n = seen[0].size
    densities = tfprune.schedules.round_densities(0.1, 4, schedule)
    assert [int(s.sum()) for s in seen] == [n] + [int(np.floor(d * n + 0.5)) for d in densities]
    for earlier, later in zip(seen, seen[1:]):
        assert not np.any(later & ~earlier)  # nothing comes back


def test_pruning_a_wrapped_model_continues_from_its_masks():
    first = tfprune.prune_at_init(residual_cnn(), "random", sparsity=0.5, seed=0, verbose=0)
    m1 = flat(tfprune.get_masks(first))
    again = tfprune.prune_at_init(first, "random", sparsity=0.8, seed=1, verbose=0)
    m2 = flat(tfprune.get_masks(again))
    assert again is first and not np.any(m2 & ~m1)
    assert m2.sum() == int(np.floor(0.2 * m2.size + 0.5))
    with pytest.raises(ValueError, match="cannot keep"):
        tfprune.prune_at_init(first, "random", sparsity=0.5, seed=2, verbose=0)
    np.testing.assert_array_equal(flat(tfprune.get_masks(first)), m2)


def test_subclassed_model_is_pruned_in_place():
    model = subclassed_mlp()
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.75, verbose=0)
    masks = tfprune.get_masks(pruned)
    assert pruned is model and flat(masks).sum() == int(np.floor(0.25 * flat(masks).size + 0.5))


def test_policy_and_include_bias_reach_wrap():
    model = tfprune.prune_at_init(residual_cnn(), "magnitude", sparsity=0.5, policy="skip_first_last",
                                  include_bias=True, verbose=0)
    targets = tfprune.prunable_weights(model)
    assert "conv" not in [t.layer.name for t in targets] and "bias" in [t.kind for t in targets]


@pytest.fixture
def scorer_named():
    added = []

    def add(name, fn, **kwargs):
        tfprune.scores.register(name, **kwargs)(fn)
        added.append(name)
        return name

    yield add
    for name in added:
        registry._SCORERS.entries.pop(name)


def nan_in_second(model, targets, data):
    scores = [np.abs(t.variable.numpy()) for t in targets]
    scores[1].flat[0] = np.nan
    return scores


def test_registered_custom_scorer_by_name(scorer_named):
    name = scorer_named("test_negative_magnitude", lambda model, targets, data: [-np.abs(t.variable.numpy()) for t in targets])
    model = residual_cnn()
    weights = np.concatenate([np.abs(t.variable.numpy()).ravel() for t in tfprune.prunable_weights(model)])
    masks = flat(tfprune.get_masks(tfprune.prune_at_init(model, name, sparsity=0.5, verbose=0)))
    assert weights[masks].max() <= weights[~masks].min()  # the smallest half was kept


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(method="magnitude", sparsity=1.0), ArgumentError, r"sparsity must be a number in \[0, 1\), got 1.0"),
        (dict(method="magnitude", sparsity=-0.1), ArgumentError, r"sparsity must be a number in \[0, 1\), got -0.1"),
        (dict(method="magnitude", compression=0.5), ValueError, "compression must be a finite number >= 1, got 0.5"),
        (dict(method="magnitude", sparsity=0.5, compression=2), ValueError, "not both"),
        (dict(method="magnitude"), ValueError, "give the amount"),
        (dict(method="nope", sparsity=0.5), ValueError, "known criteria: .*magnitude"),
        (dict(method="magnitude", sparsity=0.5, scope="layerwise"), ValueError, "scope must be"),
        (dict(method="magnitude", sparsity=0.5, rounds=0), ValueError, "rounds must be"),
        (dict(method="magnitude", sparsity=0.5, schedule="cubic"), ValueError, "schedule must be"),
        (dict(method="magnitude", sparsity=0.5, allocation="erk"), ValueError, "use it with scope='local'"),
        (dict(method=nan_in_second, sparsity=0.5), ValueError, "scores of depthwise/kernel contain 1 NaN"),
        (dict(method=lambda m, t, d: [np.ones(2)] * len(t), sparsity=0.5), ValueError, "scores of shape"),
        (dict(method="magnitude", sparsity=0.5, policy=tfprune.policies.OnlyLayers(types=["LSTM"])), ValueError, "LSTM"),
        (dict(method="random", sparsity=0.5, temperature=2.0), TypeError, "takes no option"),
    ],
)
@pytest.mark.parametrize("make_model", [residual_cnn, subclassed_mlp], ids=["functional", "subclassed"])
def test_bad_input_raises_and_leaves_the_model_unchanged(make_model, kwargs, error, message):
    if make_model is subclassed_mlp and ("depthwise" in message or "LSTM" in message):
        message = "scores of subclassed_mlp.*/dense.*/kernel contain 1 NaN" if "NaN" in message else message
    model = make_model()
    before = weights_of(model)
    with pytest.raises(error, match=message):
        tfprune.prune_at_init(model, **kwargs, verbose=0)
    assert not tfprune.is_wrapped(model)
    assert_same(weights_of(model), before)


def test_failure_restores_weights_a_scorer_changed(scorer_named):
    """A scorer that scribbles on the weights and then fails: every weight is restored."""
    def scribble_then_fail(model, targets, data):
        for t in targets:
            t.variable.assign(np.zeros(t.shape))
        raise RuntimeError("scorer failed")

    model = residual_cnn()
    before = weights_of(model)
    with pytest.raises(RuntimeError, match="scorer failed"):
        tfprune.prune_at_init(model, scribble_then_fail, sparsity=0.5, verbose=0)
    assert_same(weights_of(model), before)


def test_data_required_by_a_scorer(scorer_named):
    name = scorer_named("test_needs_data", lambda model, targets, data: [np.ones(t.shape) for t in targets], needs_data=True)
    model = residual_cnn()
    with pytest.raises(ValueError, match="criterion 'test_needs_data' needs data"):
        tfprune.prune_at_init(model, name, sparsity=0.5, verbose=0)


def test_model_without_prunable_weights_and_unbuilt_model():
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="no prunable weights"):
        tfprune.prune_at_init(keras.Model(inputs, L.BatchNormalization()(inputs)), "magnitude", sparsity=0.5)
    with pytest.raises(ValueError, match="not built"):
        tfprune.prune_at_init(keras.Sequential([L.Dense(2)]), "magnitude", sparsity=0.5)
