"""Density schedules for iterative pruning: the density kept after each round.

Round ``t`` of ``T`` (``t = 0 … T-1``) keeps

* ``"exponential"`` (default): ``d_t = d^((t+1)/T)`` — the same fraction is removed every round;
* ``"linear"``: ``d_t = 1 - (1 - d)(t+1)/T`` — the same number of weights is removed every round.

The last round always ends at the final density ``d``.
"""

from __future__ import annotations

SCHEDULES = ("exponential", "linear")

__all__ = ["SCHEDULES", "round_densities"]


def round_densities(final_density, rounds, schedule="exponential"):
    """Densities to reach after each of ``rounds`` rounds, ending at ``final_density``.

    Args:
        final_density: Kept fraction after the last round, in (0, 1].
        rounds: Number of rounds, an int >= 1.
        schedule: ``"exponential"`` or ``"linear"``.

    Returns:
        A list of ``rounds`` floats, non-increasing, the last equal to ``final_density``.

    Raises:
        ValueError: on an unknown schedule, ``rounds < 1`` or a density outside (0, 1].

    Example:
        >>> round_densities(0.01, 2)
        [0.1, 0.01]
        >>> round_densities(0.5, 2, "linear")
        [0.75, 0.5]
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    if not 0.0 < final_density <= 1.0:
        raise ValueError(f"final density must be in (0, 1], got {final_density}")
    steps = [(t + 1) / rounds for t in range(rounds)]
    if schedule == "exponential":
        out = [final_density**f for f in steps]
    else:
        out = [1.0 - (1.0 - final_density) * f for f in steps]
    out[-1] = final_density
    return out
