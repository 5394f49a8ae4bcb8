"""The grid of a sweep — methods × compressions × seeds — checked before the first network is built."""

from __future__ import annotations

from tfprune.sparsity import masks as masks_lib

__all__ = ["MAX_SEED", "check_grid"]

MAX_SEED = 2 ** 32 - 1  # NumPy's and keras.utils.set_random_seed's largest seed


def check_grid(methods, compressions, seeds):
    """Checks the grid of a sweep and returns it as lists.

    Args:
        methods: Scorer names or callables; at least one, no name twice.
        compressions: Compressions, each ``>= 1``; at least one, none twice.
        seeds: Whole numbers in ``[0, 2**32 - 1]``; at least one, none twice.

    Returns:
        ``(methods, compressions, seeds)``: the methods as given, the compressions as ascending
        floats, the seeds as ints.

    Raises:
        ValueError: naming the empty, repeated or out-of-range entry.

    Example:
        >>> check_grid(["snip"], [100, 10], [0, 1])
        (['snip'], [10.0, 100.0], [0, 1])
    """
    methods, seeds = list(methods), list(seeds)
    for compression in compressions:
        masks_lib.resolve_density(compression=compression)
    compressions = [float(c) for c in compressions]
    for seed in seeds:
        if int(seed) != seed or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seeds must be whole numbers in [0, 2**32 - 1], got {seed!r}")
    names = [getattr(m, "__name__", m) for m in methods]
    for what, values in (("methods", names), ("compressions", compressions), ("seeds", seeds)):
        if not values:
            raise ValueError(f"{what} is empty: give at least one")
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{what} repeats {', '.join(repeated)}: give each once")
    return methods, sorted(compressions), [int(s) for s in seeds]
