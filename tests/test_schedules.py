"""tfprune.schedules: round densities (closed forms, end point, monotonicity), the schedule objects
(float64 closed forms, when they prune, configs and Keras serialisation, errors) and round-schedule
objects in prune_at_init. TF-MOT as the oracle: tests/test_schedules_tfmot.py."""

import keras
import numpy as np
import pytest
from helpers import residual_cnn

import tfprune
from tfprune.sparsity import schedules
from tfprune.sparsity.schedules import SCHEDULES, ConstantSparsity, Exponential, Linear, PolynomialDecay, round_densities

DENSITIES = [1.0, 0.5, 0.1, 0.01, 1e-6]
ROUNDS = [1, 2, 3, 7, 100]


@pytest.mark.parametrize(
    "d,rounds,expected",
    [
        (0.01, 2, [0.1, 0.01]),
        (0.001, 3, [0.1, 0.01, 0.001]),
        (1e-4, 4, [0.1, 0.01, 0.001, 1e-4]),
        (0.25, 2, [0.5, 0.25]),
        (1.0, 3, [1.0, 1.0, 1.0]),
    ],
)
def test_exponential_hand_values(d, rounds, expected):
    """Exponential schedule on powers: d=10^-T gives 10^-1, 10^-2, …; d=1/4 over 2 gives 1/2, 1/4."""
    assert round_densities(d, rounds) == pytest.approx(expected, rel=1e-12)
    assert round_densities(d, rounds, "exponential") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "d,rounds,expected",
    [
        (0.5, 2, [0.75, 0.5]),
        (0.1, 3, [0.7, 0.4, 0.1]),
        (0.2, 4, [0.8, 0.6, 0.4, 0.2]),
        (1.0, 2, [1.0, 1.0]),
    ],
)
def test_linear_hand_values(d, rounds, expected):
    """Linear schedule removes the same number of weights every round."""
    assert round_densities(d, rounds, "linear") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("schedule", ["exponential", "linear"])
@pytest.mark.parametrize("rounds", ROUNDS)
@pytest.mark.parametrize("d", DENSITIES)
def test_closed_form_end_point_and_monotone(d, rounds, schedule):
    """Round t keeps d^((t+1)/T) or 1-(1-d)(t+1)/T; the last is d exactly; non-increasing; length T."""
    got = round_densities(d, rounds, schedule)
    assert isinstance(got, list) and len(got) == rounds
    f = np.arange(1, rounds + 1, dtype=np.float64) / rounds
    # 1-(1-d)f written as d+(1-d)(1-f): the same number, without cancellation near d
    expected = d**f if schedule == "exponential" else d + (1.0 - d) * (1.0 - f)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert got[-1] == d
    assert all(a >= b for a, b in zip(got, got[1:]))
    assert all(d <= x <= 1.0 for x in got)


@pytest.mark.parametrize("schedule", ["exponential", "linear"])
@pytest.mark.parametrize("d", [1.0, 0.3, 1e-3])
def test_single_round_is_final_density(d, schedule):
    """T = 1 gives [d]."""
    assert round_densities(d, 1, schedule) == [d]


def test_exponential_removes_same_fraction_each_round():
    """In the exponential schedule every round keeps the same fraction d^(1/T) of the previous one."""
    got = np.array([1.0] + round_densities(1e-3, 6))
    np.testing.assert_allclose(got[1:] / got[:-1], 1e-3 ** (1 / 6), rtol=1e-12)


def test_linear_removes_same_amount_each_round():
    """In the linear schedule every round removes the same fraction (1-d)/T of all weights."""
    got = np.array([1.0] + round_densities(0.04, 8, "linear"))
    np.testing.assert_allclose(np.diff(got), -0.12, rtol=1e-12)


def test_schedules_constant():
    """SCHEDULES names exactly the two schedules."""
    assert tuple(SCHEDULES) == ("exponential", "linear")


@pytest.mark.parametrize("rounds", [0, -1, 1.5, True, False, "3", None])
def test_bad_rounds_raise(rounds):
    """rounds must be an int >= 1 (not a bool, float or string)."""
    with pytest.raises(ValueError, match="rounds"):
        round_densities(0.1, rounds)


@pytest.mark.parametrize("schedule", ["cosine", "Exponential", "", None])
def test_unknown_schedule_raises(schedule):
    """An unknown schedule name raises ValueError naming it."""
    with pytest.raises(ValueError, match="schedule"):
        round_densities(0.1, 3, schedule)


@pytest.mark.parametrize("d", [0.0, 1.5, -0.1, float("nan")])
def test_bad_final_density_raises(d):
    """A final density outside (0, 1] raises ValueError quoting it."""
    with pytest.raises(ValueError, match=str(d)):
        round_densities(d, 3)


# --- schedule objects -------------------------------------------------------------------------

@pytest.mark.parametrize("power", [1, 3, 0.5])
def test_polynomial_decay_follows_the_closed_form(power):
    """f + (i - f)(1 - p)^power, p = (s - b)/(e - b) clipped to [0, 1], in float64: equal to float32 precision."""
    i, f, b, e = 0.2, 0.9, 100, 1100
    schedule = PolynomialDecay(i, f, b, e, power=power, frequency=10)
    steps = np.arange(0, 1500)
    p = np.clip((steps - b) / (e - b), 0.0, 1.0)
    expected = f + (i - f) * (1.0 - p) ** power
    got = np.array([schedule(int(s))[1] for s in steps])
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-7)
    assert got[-1] == float(np.float32(f)) and schedule.final_sparsity == f  # TF-MOT returns float32 values


def test_steps_that_prune():
    """From begin_step every frequency steps up to end_step; end_step -1 never stops."""
    due = lambda schedule: [s for s in range(1200) if schedule(s)[0]]  # noqa: E731
    assert due(PolynomialDecay(0.0, 0.5, 100, 1000, frequency=300)) == [100, 400, 700, 1000]
    assert due(PolynomialDecay(0.0, 0.5, 3, 20, frequency=7)) == [3, 10, 17]
    assert due(ConstantSparsity(0.5, 1000, frequency=50)) == [1000, 1050, 1100, 1150]
    assert due(ConstantSparsity(0.5, 5, end_step=5, frequency=1)) == [5]
    assert ConstantSparsity(0.8, 0)(7) == (False, float(np.float32(0.8)))
    assert PolynomialDecay(0.0, 0.5, 0, 10, frequency=1)(np.int64(10)) == (True, 0.5)


def test_round_schedules_follow_their_closed_forms():
    """Round t of T keeps d^((t+1)/T) or 1 - (1 - d)(t+1)/T; the last round is the final sparsity exactly."""
    for schedule, density in [(Exponential(0.999, 3), lambda t: 0.001 ** ((t + 1) / 3)),
                              (Linear(0.9, 4), lambda t: 1 - 0.9 * (t + 1) / 4)]:
        got = [schedule(t) for t in range(schedule.rounds)]
        assert all(due for due, _ in got) and got[-1][1] == schedule.final_sparsity
        np.testing.assert_allclose([s for _, s in got], [1 - density(t) for t in range(schedule.rounds)], rtol=1e-12)
        assert schedule(-1) == (False, 0.0) and schedule(schedule.rounds) == (False, schedule.final_sparsity)


@pytest.mark.parametrize("schedule", ["exponential", "linear"])
def test_round_densities_and_round_schedules_agree(schedule):
    objects = schedules.get(schedule, final_sparsity=0.95, rounds=5)
    np.testing.assert_allclose([1 - objects(t)[1] for t in range(5)], round_densities(0.05, 5, schedule), rtol=1e-12)


ALL = [PolynomialDecay(0.1, 0.8, 5, 505, power=2, frequency=7), ConstantSparsity(0.6, 10, end_step=-1, frequency=3),
       Exponential(0.99, 10), Linear(0.5, 4)]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_configs_and_keras_serialisation_round_trip(schedule):
    steps = range(0, 600, 3)
    for again in [type(schedule).from_config(schedule.get_config()),
                  keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule)),
                  schedules.get(keras.saving.serialize_keras_object(schedule)),
                  schedules.get({"class_name": type(schedule).__name__, "config": schedule.get_config()})]:
        assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
        assert [again(s) for s in steps] == [schedule(s) for s in steps]
    assert repr(schedule).startswith(type(schedule).__name__ + "(")
    assert schedules.get(schedule) is schedule


def test_get_builds_by_name_and_rejects_unknowns():
    assert schedules.get("polynomial_decay", initial_sparsity=0.0, final_sparsity=0.5, begin_step=0,
                         end_step=10).get_config()["end_step"] == 10
    assert schedules.get("constant_sparsity", target_sparsity=0.5, begin_step=0).final_sparsity == 0.5
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        schedules.get("cosine")
    with pytest.raises(ValueError, match="go with a schedule name"):
        schedules.get(ALL[0], rounds=3)
    with pytest.raises(ValueError, match="not a pruning schedule"):
        schedules.get(keras.saving.serialize_keras_object(keras.layers.Dense(2)))


@pytest.mark.parametrize("make, message", [
    (lambda: PolynomialDecay(0.0, 0.5, 100, 50), r"end_step must be >= begin_step \(100\), got 50"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, -1), r"end_step must be >= begin_step \(0\), got -1"),
    (lambda: PolynomialDecay(0.0, 0.5, 10, 10), "needs end_step > begin_step"),
    (lambda: ConstantSparsity(0.5, 100, end_step=50), r"end_step must be >= begin_step \(100\) or -1"),
    (lambda: ConstantSparsity(0.5, 0, end_step=-2), r"or -1 \(prune until training ends\), got -2"),
    (lambda: PolynomialDecay(0.0, 1.0, 0, 10), r"final_sparsity must be a number in \[0, 1\), got 1.0"),
    (lambda: PolynomialDecay(-0.1, 0.5, 0, 10), "initial_sparsity must be a number in"),
    (lambda: ConstantSparsity(float("nan"), 0), "target_sparsity must be a number in"),
    (lambda: ConstantSparsity(True, 0), "target_sparsity must be a number in"),
    (lambda: ConstantSparsity(0.5, 0, frequency=0), "frequency must be an int >= 1, got 0"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, 10, frequency=2.0), "frequency must be an int >= 1, got 2.0"),
    (lambda: PolynomialDecay(0.0, 0.5, 0.0, 10), "begin_step must be an int >= 0, got 0.0"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, "10"), "end_step must be an int, got '10'"),
    (lambda: ConstantSparsity(0.5, -1), "begin_step must be an int >= 0, got -1"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, 10, power=0), "power must be a finite number > 0, got 0"),
    (lambda: Exponential(0.5, 0), "rounds must be an int >= 1, got 0"),
    (lambda: Linear(1.5, 3), r"final_sparsity must be a number in \[0, 1\), got 1.5"),
])
def test_bad_schedules_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("step", [1.5, True, "3", np.array([1, 2])])
def test_bad_steps_raise(step):
    with pytest.raises(TypeError, match="step must be an integer"):
        ConstantSparsity(0.5, 0)(step)


def test_prune_at_init_takes_a_round_schedule_object():
    """Round t keeps floor(d_t·N + ½) weights with d_t = 1 - schedule(t); the amount and rounds come from it."""
    seen = []

    def recording_scorer(model, targets, data):
        seen.append(sum(int(m.sum()) for m in tfprune.get_masks(model)))
        return [np.random.default_rng(len(seen)).random(t.shape) for t in targets]

    schedule = Linear(0.9, 3)
    model = tfprune.prune_at_init(residual_cnn(), recording_scorer, schedule=schedule, verbose=0)
    masks = tfprune.get_masks(model)
    n = sum(m.size for m in masks)
    seen.append(sum(int(m.sum()) for m in masks))
    assert seen == [n] + [int(np.floor((1 - 0.9 * (t + 1) / 3) * n + 0.5)) for t in range(3)]
    fresh = residual_cnn()
    for options, message in [(dict(schedule=schedule, sparsity=0.9), "sets the final sparsity and the rounds"),
                             (dict(schedule=schedule, rounds=3), "leave out sparsity, compression and rounds"),
                             (dict(schedule=PolynomialDecay(0.0, 0.5, 0, 10)), "schedule must be one of"),
                             (dict(schedule="cubic", sparsity=0.5), "schedule must be one of")]:
        with pytest.raises(ValueError, match=message):
            tfprune.prune_at_init(fresh, "magnitude", verbose=0, **options)
    assert not tfprune.is_wrapped(fresh)
