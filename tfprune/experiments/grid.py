"""The grid of a sweep — methods × compressions × seeds — checked before the first network is built."""

from __future__ import annotations

from tfprune.base import arguments
from tfprune.sparsity import masks as masks_lib

__all__ = ["check_grid"]


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
        arguments.seed(seed, "seeds", optional=False)
    names = [getattr(m, "__name__", m) for m in methods]
    for what, values in (("methods", names), ("compressions", compressions), ("seeds", seeds)):
        if not values:
            raise ValueError(f"{what} is empty: give at least one")
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{what} repeats {', '.join(repeated)}: give each once")
    return methods, sorted(compressions), [int(s) for s in seeds]
