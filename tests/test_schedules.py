"""Tests of tfprune.schedules.round_densities: closed forms, end point, monotonicity, errors."""

import numpy as np
import pytest

from tfprune.schedules import SCHEDULES, round_densities

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
