"""Layer-collapse sweep: which compressions leave every prunable layer with a weight.

A network has *collapsed* when some prunable layer keeps no weight: no path from input to output
is left. The *critical compression* of a method is the largest compression it reaches before that
happens. Tanaka et al. (NeurIPS 2020, Fig. 1 and 2) show that magnitude, SNIP and GraSP collapse
far below the maximum possible compression ``N/K`` (``N`` prunable weights in ``K`` layers), and
that iterative SynFlow does not.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import time

import keras
import numpy as np

from tfprune.sparsity import masks as masks_lib
from tfprune import scores
from tfprune.base.deprecation import renamed
from tfprune.base.files import replacing_text
from tfprune.experiments.grid import check_grid
from tfprune._optional import require
from tfprune.pruning import prune_at_init
from tfprune.layers.targets import prunable_weights
from tfprune.layers.wrapping import get_masks

__all__ = ["CollapseSweep", "collapse_sweep", "critical_compression"]


@dataclasses.dataclass
class CollapseSweep:
    """Results of :func:`collapse_sweep`.

    Attributes:
        layer_names: Names of the prunable weights (the per-layer columns), in model order.
        rows: One dict per (method, seed, compression): ``method``, ``seed``, ``compression``,
            ``log10_compression``, ``layers_alive``, ``layers_total``, ``kept_fraction`` (a list,
            one per layer) and ``seconds``.
        critical: Per method, the median over seeds of the critical compression (``None`` when,
            for some seed, the method collapsed already at the smallest compression tried).
        critical_per_seed: Per method, the critical compression of each seed, in seed order
            (``None`` for a seed that collapsed at the smallest compression).
        max_compression: ``N / K``, the largest compression at which no layer need be empty.
    """

    layer_names: list
    rows: list
    critical: dict
    max_compression: float
    critical_per_seed: dict = dataclasses.field(default_factory=dict)

    def to_csv(self, path):
        """Writes one line per row; the per-layer kept fractions become columns ``kept:<name>``
        (atomically: a failed write leaves the old file)."""
        columns = ["method", "seed", "compression", "log10_compression", "layers_alive", "layers_total", "seconds"]
        with replacing_text(path, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns + [f"kept:{name}" for name in self.layer_names])
            for row in self.rows:
                writer.writerow([row[c] for c in columns] + list(row["kept_fraction"]))

    def plot(self, path, compression=None):
        """Saves a PNG: kept fraction per layer at one compression (SynFlow paper Fig. 2 style)
        and layers alive against compression, one line per method.

        Args:
            path: Where to write the PNG.
            compression: The compression of the left panel; default the largest one swept.
        """
        require("matplotlib", "CollapseSweep.plot").use("Agg")
        import matplotlib.pyplot as plt

        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        compression = max(r["compression"] for r in self.rows) if compression is None else compression
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for method in methods:
            at = [r for r in self.rows if r["method"] == method and math.isclose(r["compression"], compression)]
            if at:
                kept = np.median([r["kept_fraction"] for r in at], axis=0)
                left.plot(range(1, len(kept) + 1), np.maximum(kept, 1e-8), marker="o", label=method)
            sweep = sorted({r["compression"] for r in self.rows if r["method"] == method})
            alive = [np.median([r["layers_alive"] for r in self.rows if r["method"] == method and r["compression"] == c])
                     for c in sweep]
            right.plot(np.log10(sweep), alive, marker="o", label=method)
        left.set(yscale="log", xlabel="prunable layer", ylabel="kept fraction (1e-8: collapsed)",
                 xticks=range(1, len(self.layer_names) + 1),
                 title=f"kept fraction per layer at compression 10^{math.log10(compression):.2f}")
        right.axvline(math.log10(self.max_compression), color="grey", linestyle="--", label="N/K")
        right.set(xlabel="log10 compression", ylabel="layers alive", title="layers alive",
                  yticks=range(0, len(self.layer_names) + 1))
        for ax in (left, right):
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def critical_compression(compressions, collapsed):
    """The largest compression before the first collapse.

    Args:
        compressions: Compressions tried, in any order.
        collapsed: For each, whether the network had collapsed.

    Returns:
        The largest compression below the smallest collapsed one (all of them if none
        collapsed), or ``None`` if the smallest compression already collapsed.

    Example:
        >>> critical_compression([10, 100, 1000], [False, False, True])
        100
    """
    best = None
    for c, dead in sorted(zip(compressions, collapsed)):
        if dead:
            break
        best = c
    return best


def _scored_once(method):
    """``method``'s scorer, made to compute its scores on the first call and return them after.

    A one-round criterion scores the unpruned network, whatever the compression: with the model
    (same seed, same weights) reused, its scores at every compression are those of the first.
    """
    scorer, kept = scores.get(method), []

    @functools.wraps(scorer.fn)
    def once(*args, **options):
        if not kept:
            kept.append(scorer.fn(*args, **options))
        return kept[0]

    return dataclasses.replace(scorer, fn=once)


@renamed(methods="criteria")
def collapse_sweep(model_fn, criteria, compressions, data=None, rounds=None, *, seeds=(0,), scope="global",
                   policy=None, verbose=1, **criterion_options):
    """Prunes fresh models at each compression with each method and records layer collapse.

    Args:
        model_fn: A function returning a new, built model; called after
            ``keras.utils.set_random_seed(seed)`` so each seed gives the same initial weights
            for every method. For a one-round method (magnitude, random, SNIP, GraSP) one model
            per seed is scored once and masked at every compression (the scores do not depend on
            it); iterative criteria prune a fresh model at each compression.
        criteria: Criterion names or callables.
        compressions: Compressions to try (each ``>= 1``), e.g. ``10 ** np.arange(0, 6.25, 0.25)``.
        data: Data for the criteria that need it.
        rounds: Rounds for every method; default each method's own (SynFlow 100).
        seeds: Seeds to repeat the sweep with (whole numbers in ``[0, 2**32 - 1]``).
        scope, policy: As for :func:`tfprune.prune_at_init`.
        verbose: 1 prints a line per (method, seed, compression), 0 is silent.
        **criterion_options: Passed to the scorers.

    Returns:
        A :class:`CollapseSweep`.

    Raises:
        ValueError: before any model is built, for an empty or repeated method, compression or
            seed, a compression below 1 or a seed outside ``[0, 2**32 - 1]``.

    Example:
        >>> sweep = tfprune.collapse_sweep(lambda: tfprune.models.vgg(16), ["magnitude", "synflow"],
        ...                                10 ** np.arange(1, 6.5, 0.5))
        >>> sweep.critical, sweep.plot("collapse.png")
    """
    criteria, compressions, seeds = check_grid(criteria, compressions, seeds)
    rows, layer_names, max_compression = [], None, None
    for method in criteria:
        one_shot = (rounds or scores.get(method).default_rounds) == 1
        for seed in seeds:
            model = scorer = None
            for compression in compressions:
                if model is None:
                    keras.utils.set_random_seed(seed)
                    model = model_fn()
                    scorer = _scored_once(method) if one_shot else method
                if layer_names is None:
                    targets = prunable_weights(model, policy)
                    layer_names = [t.name for t in targets]
                    max_compression = sum(t.size for t in targets) / len(targets)
                start = time.perf_counter()
                pruned = prune_at_init(model, scorer, compression=compression, data=data, rounds=rounds,
                                       scope=scope, policy=policy, seed=seed, verbose=0, on_collapse="ignore",
                                       **criterion_options)
                if not one_shot or pruned is model:  # iterative, or a subclassed model wrapped in place
                    model = None
                kept = masks_lib.densities(get_masks(pruned))
                row = dict(method=getattr(method, "__name__", method), seed=seed, compression=float(compression),
                           log10_compression=math.log10(compression),
                           layers_alive=sum(k > 0 for k in kept), layers_total=len(kept), kept_fraction=kept,
                           seconds=time.perf_counter() - start)
                rows.append(row)
                if verbose:
                    print(f"{row['method']:>10s} seed {seed} 10^{row['log10_compression']:.2f}: "
                          f"{row['layers_alive']}/{row['layers_total']} layers alive ({row['seconds']:.1f} s)",
                          flush=True)
    critical, critical_per_seed = {}, {}
    for method in dict.fromkeys(r["method"] for r in rows):
        per_seed = []
        for seed in seeds:
            mine = [r for r in rows if r["method"] == method and r["seed"] == seed]
            per_seed.append(critical_compression([r["compression"] for r in mine],
                                                 [r["layers_alive"] < r["layers_total"] for r in mine]))
        critical_per_seed[method] = per_seed
        known = [c for c in per_seed if c is not None]
        critical[method] = float(np.median(known)) if len(known) == len(per_seed) else None
    return CollapseSweep(layer_names, rows, critical, max_compression, critical_per_seed)
