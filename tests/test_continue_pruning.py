"""Pruning a pruned model further: the rounds start at its current density (issue 16, item 1)."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.sparsity.schedules import Exponential, Linear

L = keras.layers


def mlp():
    """The issue's model: 64 → 32 (ReLU) → 10; 64·32 + 32·10 = 2368 prunable kernel weights."""
    return keras.Sequential([keras.Input((64,)), L.Dense(32, activation="relu", name="hidden"),
                             L.Dense(10, name="logits")], name="mlp")


N = 64 * 32 + 32 * 10


def kept(density, n):
    """floor(d·n + ½), re-derived in float64."""
    return int(np.floor(np.float64(density) * n + 0.5))


def counts(model):
    return [int(np.count_nonzero(m)) for m in tfprune.get_masks(model)]


def flat(masks):
    return np.concatenate([np.asarray(m, bool).ravel() for m in masks])


def snapshot(model):
    return [v.numpy().copy() for v in model.variables]


@pytest.fixture
def at_09():
    """The issue's starting point: magnitude at sparsity 0.9 (237 of 2368 kept)."""
    model = tfprune.prune_at_init(mlp(), "magnitude", sparsity=0.9, verbose=0)
    assert sum(counts(model)) == kept(0.1, N) == 237
    return model


def recording(seen):
    """A scorer that records the kept weights it finds, then scores by magnitude."""
    def scorer(model, targets, data):
        seen.append(flat(tfprune.get_masks(model)))
        return [np.abs(t.value.numpy()) for t in targets]
    return scorer


@pytest.mark.parametrize("schedule, curve", [
    ("exponential", lambda d0, d, p: d0 * (d / d0) ** p),
    ("linear", lambda d0, d, p: d0 - (d0 - d) * p),
])
def test_rounds_start_at_the_current_density(at_09, schedule, curve):
    """0.9 → 0.99 over 5 rounds: round t keeps floor(d_t·N + ½), d_t on the curve from d0 = 237/N."""
    seen = []
    tfprune.prune_at_init(at_09, recording(seen), sparsity=0.99, rounds=5, schedule=schedule, verbose=0,
                          on_collapse="ignore")
    seen.append(flat(tfprune.get_masks(at_09)))
    d0 = 237 / N
    expected = [237] + [kept(curve(d0, 0.01, (t + 1) / 5), N) for t in range(4)] + [kept(0.01, N)]
    assert [int(s.sum()) for s in seen] == expected
    assert expected[1:] == ([194, 152, 109, 66, 24] if schedule == "linear" else [150, 94, 60, 38, 24])
    for earlier, later in zip(seen, seen[1:]):
        assert not np.any(later & ~earlier)  # nothing comes back


def test_synflow_continues_over_its_100_rounds(at_09):
    """The issue's call: SynFlow to 0.99 on a model at 0.9 keeps exactly kept_count(0.01, N) = 24,
    inside the masks it started from."""
    before = flat(tfprune.get_masks(at_09))
    pruned = tfprune.prune_at_init(at_09, "synflow", sparsity=0.99, verbose=0, on_collapse="ignore")
    after = flat(tfprune.get_masks(pruned))
    assert pruned is at_09
    assert after.sum() == tfprune.masks.kept_count(0.01, N) == 24
    assert not np.any(after & ~before)


def test_magnitude_over_rounds_continues_and_ends_at_the_magnitude_top_k(at_09):
    """magnitude, rounds=5, from 0.9: exactly 24 kept, and they are the 24 largest |θ| (magnitude
    scores do not change between rounds)."""
    weights = np.concatenate([np.abs(t.variable.numpy()).ravel() for t in tfprune.prunable_weights(at_09)])
    tfprune.prune_at_init(at_09, "magnitude", compression=100, rounds=5, verbose=0, on_collapse="ignore")
    after = flat(tfprune.get_masks(at_09))
    assert after.sum() == 24
    assert weights[after].min() > np.sort(weights)[-25]


def test_local_scope_starts_at_the_sparsest_tensor(at_09):
    """Local scope: rounds start at the sparsest tensor's density, so no round asks a tensor for
    more than its mask keeps; each tensor keeps floor(d_t·N_l + ½)."""
    sizes = [64 * 32, 32 * 10]
    start = counts(at_09)
    seen = []
    tfprune.prune_at_init(at_09, recording(seen), sparsity=0.99, rounds=3, scope="local", verbose=0,
                          on_collapse="ignore")
    seen.append(flat(tfprune.get_masks(at_09)))
    d0 = min(c / n for c, n in zip(start, sizes))
    rounds = [[kept(d0 * (0.01 / d0) ** ((t + 1) / 3), n) for n in sizes] for t in range(2)]
    expected = [sum(start)] + [sum(r) for r in rounds] + [sum(kept(0.01, n) for n in sizes)]
    assert [int(s.sum()) for s in seen] == expected
    assert counts(at_09) == [kept(0.01, n) for n in sizes] == [20, 3]


def test_a_fresh_model_keeps_the_schedule_from_density_one():
    seen = []
    model = tfprune.prune_at_init(mlp(), recording(seen), sparsity=0.99, rounds=3, verbose=0, on_collapse="ignore")
    assert [int(s.sum()) for s in seen] == [N, kept(0.01 ** (1 / 3), N), kept(0.01 ** (2 / 3), N)] == [N, 510, 110]
    assert sum(counts(model)) == 24


@pytest.mark.parametrize("amount, named", [(dict(sparsity=0.5), "sparsity=0.5"),
                                           (dict(compression=2), "compression=2")])
def test_asking_for_more_weights_than_the_masks_keep_raises_first(at_09, amount, named):
    """A lower sparsity than the current one cannot be reached by continuing: raised before any
    scoring, naming the argument and both counts; nothing changes."""
    before = snapshot(at_09)
    with pytest.raises(ValueError, match=rf"cannot keep 1184 of the 2368 prunable weights \({named}\): the masks "
                                         r"of model 'mlp' keep only 237 \(sparsity 0\.899916\)"):
        tfprune.prune_at_init(at_09, "magnitude", **amount, verbose=0)
    for a, b in zip(before, snapshot(at_09)):
        np.testing.assert_array_equal(a, b)


def test_round_schedules_started_part_way():
    """starting_at: the curve scaled by the initial density (closed forms), the last round exact."""
    exp = Exponential(0.99, rounds=4).starting_at(0.9)
    lin = Linear(0.99, rounds=4).starting_at(0.9)
    for t in range(4):
        assert exp(t) == (True, pytest.approx(1 - 0.1 * 0.1 ** ((t + 1) / 4), rel=1e-12))
        assert lin(t) == (True, pytest.approx(1 - (0.1 - 0.09 * (t + 1) / 4), rel=1e-12))
    assert exp(3)[1] == lin(3)[1] == 0.99 and exp(-1) == (False, 0.9)
    assert Exponential.from_config(exp.get_config()).get_config() == {"final_sparsity": 0.99, "rounds": 4,
                                                                      "initial_sparsity": 0.9}
    with pytest.raises(ValueError, match=r"initial_sparsity \(0.995\) must be <= final_sparsity \(0.99\)"):
        Exponential(0.99, rounds=4, initial_sparsity=0.995)
