"""Accuracy against compression: prune at initialisation, train, test, for each method and seed.

The experiment of the SynFlow paper's Fig. 6 and the SNIP/FORCE tables: every network of a sweep
starts from the same initial weights for a given seed, is pruned by one method to one compression,
trained with one :class:`tfprune.training.Recipe` and tested. Results go to a CSV file one row at
a time, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time

import keras
import numpy as np

from tfprune.base import arguments
from tfprune.sparsity import masks as masks_lib
from tfprune.analysis import datachecks
from tfprune import scores
from tfprune import training
from tfprune.base.deprecation import renamed
from tfprune._optional import require
from tfprune.base.files import replacing_text
from tfprune.experiments.grid import check_grid
from tfprune.pruning import prune_at_init
from tfprune.layers.targets import is_wrapped, prunable_weights
from tfprune.layers.wrapping import get_masks

__all__ = ["AccuracySweep", "accuracy_sweep", "kept_weights", "COLUMNS"]

COLUMNS = ("method", "seed", "compression", "log10_compression", "sparsity", "kept", "total", "collapsed",
           "test_accuracy", "test_loss", "prune_seconds", "train_seconds")
_INTEGER = {"seed", "kept", "total", "collapsed"}
_TEXT = {"method"}
DENSE = "dense"


def _key(method, compression, seed):
    return method, round(math.log10(compression), 6), int(seed)


@dataclasses.dataclass
class AccuracySweep:
    """Results of :func:`accuracy_sweep`: one dict per (method, compression, seed), keys :data:`COLUMNS`.

    The dense network of each seed is a row with method ``"dense"`` and compression 1.
    """

    rows: list

    def to_csv(self, path):
        """Writes the rows to ``path`` (atomically: a failed write leaves the old file)."""
        with replacing_text(path, newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows({c: row[c] for c in COLUMNS} for row in self.rows)

    @classmethod
    def from_csv(cls, path):
        """Reads a CSV written by :meth:`to_csv`.

        Raises:
            ValueError: naming the file and line of a row that is cut short, too long, or holds
                a value that is not a number where one belongs.

        Example:
            >>> AccuracySweep.from_csv("runs/sweep.csv").table()
        """
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ValueError(f"{path} is not an accuracy-sweep CSV: its columns are {reader.fieldnames}, "
                                 f"expected {list(COLUMNS)}")
            return cls([_parse_row(row, path, reader.line_num) for row in reader])

    def methods(self):
        """Method names in the order they first appear, without ``"dense"``."""
        return [m for m in dict.fromkeys(r["method"] for r in self.rows) if m != DENSE]

    def summary(self):
        """Per method and compression, the test accuracies over seeds.

        Returns:
            ``{method: {compression: [accuracy per seed]}}``, compressions ascending; the dense
            networks under ``"dense"`` at compression 1.
        """
        out = {}
        for row in sorted(self.rows, key=lambda r: (r["compression"], r["seed"])):
            out.setdefault(row["method"], {}).setdefault(row["compression"], []).append(row["test_accuracy"])
        return out

    def table(self):
        """A Markdown table: one row per method, mean test accuracy % (min–max over seeds) per compression."""
        summary = self.summary()
        compressions = sorted({c for m in self.methods() for c in summary[m]})
        head = "| method | " + " | ".join(f"10^{math.log10(c):.2f}" for c in compressions) + " |"
        lines = [head, "|---" * (len(compressions) + 1) + "|"]
        if DENSE in summary:
            dense = summary[DENSE][1.0]
            lines.append(f"| dense | {_cell(dense)} |" + " |" * (len(compressions) - 1))
        for method in self.methods():
            cells = [_cell(summary[method][c]) if c in summary[method] else "" for c in compressions]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def plot(self, path, title=None):
        """Saves a PNG of test accuracy against compression, one line per method (mean over
        seeds, shaded min–max), the dense accuracy dashed (SynFlow paper Fig. 6 style)."""
        require("matplotlib", "AccuracySweep.plot").use("Agg")
        import matplotlib.pyplot as plt

        summary = self.summary()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in self.methods():
            cs = sorted(summary[method])
            accs = [100 * np.asarray(summary[method][c]) for c in cs]
            x = np.log10(cs)
            ax.plot(x, [a.mean() for a in accs], marker="o", label=method)
            ax.fill_between(x, [a.min() for a in accs], [a.max() for a in accs], alpha=0.2)
        if DENSE in summary:
            ax.axhline(100 * np.mean(summary[DENSE][1.0]), color="black", linestyle="--", label="dense")
        ax.set(xlabel="log10 compression", ylabel="test accuracy %", title=title or "accuracy against compression")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _parse_row(row, path, line):
    """One CSV row as typed values; a clear error for a row cut short or holding a bad value."""
    if None in row or None in row.values():  # csv.DictReader's marks of too many and too few values
        raise ValueError(f"{path}, line {line}: not {len(COLUMNS)} comma-separated values (a row cut short, e.g. by "
                         "an interrupted copy): delete that line, and a resumed sweep trains that network again")
    parsed = {}
    for column, value in row.items():
        try:
            parsed[column] = value if column in _TEXT else int(value) if column in _INTEGER else float(value)
        except ValueError:
            raise ValueError(f"{path}, line {line}: column {column!r} holds {value!r}, not a number: delete that "
                             "line, and a resumed sweep trains that network again") from None
    return parsed


def _cell(values):
    values = 100 * np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ({values.min():.2f}–{values.max():.2f})"


def _scoring_subset(train, samples, seed):
    x, y = train
    if samples is None or samples >= len(x):
        return x, y
    index = np.sort(np.random.default_rng(seed).choice(len(x), samples, replace=False))
    return x[index], y[index]


def _check_resumable(csv_path, config):
    """The rows already in ``csv_path`` if its configuration (in ``<csv>.json``) equals ``config``."""
    config_path = csv_path + ".json"
    if not os.path.exists(csv_path):
        return []
    if not os.path.exists(config_path):
        raise ValueError(f"{csv_path} exists but {config_path} (the configuration it was made with) does not: "
                         "move it away or choose another output")
    with open(config_path) as f:
        try:
            old = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path} (the configuration of {csv_path}) is not valid JSON: {error}: "
                             "move both away or choose another output") from None
    if old != config:
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise ValueError(f"{csv_path} was made with a different configuration ({', '.join(changed)} differ): "
                         "choose another output to start a new sweep, or the same settings to resume")
    return AccuracySweep.from_csv(csv_path).rows


@renamed(methods="criteria")
def accuracy_sweep(model_fn, train, test, criteria, compressions, *, recipe, seeds=(0,), samples=None,
                   rounds=None, scope="global", include_bias=False, include_dense=True, csv_path=None,
                   describe=None, verbose=1, **criterion_options):
    """Prunes fresh networks at initialisation, trains and tests them, for every method, compression and seed.

    Args:
        model_fn: Returns a new, built logits classifier; called after
            ``keras.utils.set_random_seed(seed)``, so all criteria of a seed start from the same weights.
        train: ``(x, y)`` training arrays.
        test: ``(x, y)`` test arrays.
        criteria: Criterion names (see :func:`tfprune.scores.available`).
        compressions: Compressions (each ``>= 1``), e.g. ``10 ** np.arange(0.5, 3.25, 0.5)``.
        recipe: The :class:`tfprune.training.Recipe` every network is trained with.
        seeds: Seeds of the initial weights, the scoring sample and the random scores (whole
            numbers in ``[0, 2**32 - 1]``).
        samples: Training examples the data-driven scorers see (a random subset per seed); default
            the scorers' own default (10 per class).
        rounds: Pruning rounds for every method; default each method's own.
        scope: ``"global"`` or ``"local"``.
        include_bias: Prune biases too (the SNIP paper's protocol); they then count in ``kept``
            and ``total``.
        include_dense: Also train the unpruned network of each seed (method ``"dense"``).
        csv_path: Write the results here after each network, with the configuration in
            ``<csv_path>.json``; if the file exists with the same configuration, its finished
            networks are kept and not trained again (the sweep resumes). A sweep that fails
            before its first network is finished removes the files it created.
        describe: Extra JSON-serialisable entries of the configuration (e.g. model and data names).
        verbose: 1 prints one line per network as it finishes, 0 is silent.
        **criterion_options: Passed to the scorers.

    Returns:
        An :class:`AccuracySweep`.

    Raises:
        ValueError: before any network is trained, for an empty or repeated method, compression or
            seed, a compression below 1, a seed outside ``[0, 2**32 - 1]``, ``samples`` below 1,
            ``train`` or ``test`` that do not fit the model (:func:`tfprune.analysis.datachecks.check_arrays`),
            or a ``csv_path`` made with another configuration or not readable (naming the file and line).

    Example:
        >>> sweep = accuracy_sweep(lambda: tfprune.models.lenet_300_100(), train, test,
        ...                        ["random", "snip", "synflow"], [10, 100], recipe=Recipe(epochs=2))
        >>> sweep.plot("sweep.png")
    """
    criteria, compressions, seeds = check_grid([scores.get(m).name for m in criteria], compressions, seeds)
    arguments.count("samples", samples, optional=True)
    model = model_fn()
    datachecks.check_arrays(model, train, name="train")
    datachecks.check_arrays(model, test, name="test")
    config = dict(recipe=dataclasses.asdict(recipe), methods=criteria, samples=samples, rounds=rounds,
                  scope=scope, include_bias=include_bias, train_examples=len(train[0]), test_examples=len(test[0]),
                  criterion_options={k: repr(v) for k, v in sorted(criterion_options.items())}, **(describe or {}))
    config = json.loads(json.dumps(config))  # as it reads back from the file (tuples become lists)
    rows = _check_resumable(csv_path, config) if csv_path else []
    new_files = bool(csv_path) and not any(os.path.exists(p) for p in (csv_path, csv_path + ".json"))
    if csv_path:
        with replacing_text(csv_path + ".json") as f:
            json.dump(config, f, indent=1, sort_keys=True)
    done = {_key(r["method"], r["compression"], r["seed"]) for r in rows}
    cells = [(DENSE, 1.0, s) for s in seeds if include_dense]
    cells += [(m, c, s) for s in seeds for c in compressions for m in criteria]
    todo = [cell for cell in cells if _key(*cell) not in done]
    if verbose and len(todo) < len(cells):
        print(f"resuming: {len(cells) - len(todo)} of {len(cells)} networks already in {csv_path}", flush=True)
    try:
        for number, (method, compression, seed) in enumerate(todo, 1):
            row = _run_network(model_fn, method, compression, seed, train, test, recipe, samples, rounds, scope,
                               include_bias, criterion_options)
            rows.append(row)
            if csv_path:
                AccuracySweep(rows).to_csv(csv_path)
                new_files = False  # a finished network: keep the files, a rerun resumes from them
            if verbose:
                print(f"[{number}/{len(todo)}] {method} 10^{row['log10_compression']:.2f} seed {seed}: "
                      f"test accuracy {row['test_accuracy']:.4f}, {row['collapsed']} layers collapsed "
                      f"(prune {row['prune_seconds']:.1f} s, train {row['train_seconds']:.1f} s)", flush=True)
    except BaseException:
        if new_files:  # failed before its first network: leave nothing behind
            os.remove(csv_path + ".json")
        raise
    return AccuracySweep(rows)


def _run_network(model_fn, method, compression, seed, train, test, recipe, samples, rounds, scope, include_bias,
                 criterion_options):
    """Builds, prunes, trains and tests one network; returns its row."""
    keras.utils.set_random_seed(seed)
    model = model_fn()
    start = time.perf_counter()
    if method != DENSE:
        model = prune_at_init(model, method, compression=compression, scope=scope, rounds=rounds, seed=seed,
                              data=_scoring_subset(train, samples, seed), include_bias=include_bias, verbose=0,
                              on_collapse="ignore", **criterion_options)
    prune_seconds = time.perf_counter() - start
    kept, total, collapsed = kept_weights(model, include_bias)
    _, train_seconds = training.fit(model, train, recipe)
    accuracy, loss = training.evaluate(model, test)
    return dict(method=method, seed=seed, compression=compression, log10_compression=math.log10(compression),
                sparsity=1 - kept / total, kept=kept, total=total, collapsed=collapsed, test_accuracy=accuracy,
                test_loss=loss, prune_seconds=prune_seconds, train_seconds=train_seconds)


def kept_weights(model, include_bias=False):
    """``(kept, total, collapsed layers)`` of the prunable weights (a plain model counts as dense);
    a layer has collapsed when its kernel keeps nothing (biases do not count).

    Example:
        >>> kept, total, collapsed = kept_weights(tfprune.prune_at_init(model, "snip", sparsity=0.9, data=d))
    """
    if not is_wrapped(model):
        total = sum(t.size for t in prunable_weights(model, include_bias=include_bias))
        return total, total, 0
    targets = prunable_weights(model)
    total = sum(t.size for t in targets)
    found = get_masks(model)
    kernels = [m for m, t in zip(found, targets) if t.kind != "bias"]
    return int(sum(np.count_nonzero(m) for m in found)), total, len(masks_lib.collapsed_layers(kernels))
