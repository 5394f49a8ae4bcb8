"""The demo: prune a small network at initialisation with each method, train briefly, compare.

Runs on the embedded digits data set by default, so it needs no download.
"""

from __future__ import annotations

import time

import keras

from tfprune.experiments import data as data_lib
from tfprune.sparsity import masks
from tfprune import scores, training
from tfprune.pruning import prune_at_init
from tfprune.experiments.sweep import kept_weights

__all__ = ["mlp", "run", "format_table"]


def mlp(input_shape, num_classes, hidden=(300, 100)):
    """A LeNet-300-100-style perceptron: Flatten, ReLU Dense layers, a logits Dense layer."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    for width in hidden:
        x = keras.layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name="mlp")


def _train_and_test(model, train, test, epochs, batch_size):
    recipe = training.Recipe(epochs=epochs, batch_size=batch_size, optimizer="adam", learning_rate=1e-3,
                             weight_decay=0.0, lr_schedule="constant")
    _, seconds = training.fit(model, train, recipe)
    return training.evaluate(model, test)[0], seconds


_PAPER_ORDER = ("random", "magnitude", "snip", "grasp", "synflow", "iter_snip", "force")


def _default_methods():
    """Every registered scorer: the built-in ones in the order of the papers, then any others."""
    known = scores.available()
    return [m for m in _PAPER_ORDER if m in known] + [m for m in known if m not in _PAPER_ORDER]


def run(dataset="digits", sparsities=(0.9, 0.98), methods=None, epochs=30, batch_size=64, seed=0,
        data_dir=None, verbose=1):
    """Prunes an MLP at initialisation with each method and sparsity, trains it, tests it.

    Args:
        dataset: A name known to :func:`tfprune.data.load` (default: the embedded digits).
        sparsities: Fractions of the prunable weights to remove.
        methods: Scorer names; default every registered scorer.
        epochs: Training epochs per network.
        batch_size: Training batch size.
        seed: Seed of the initial weights (the same for every run) and of random scores.
        data_dir: Folder of ``.npz`` files for :func:`tfprune.data.load`.
        verbose: 1 prints each row as it is done, 0 is silent.

    Returns:
        A list of dicts with ``method``, ``sparsity``, ``kept``, ``total``, ``collapsed`` (number
        of layers left with no weight), ``accuracy``, ``prune_seconds`` and ``train_seconds``; the
        first row is the dense network.

    Example:
        >>> rows = run(epochs=5)
        >>> print(format_table(rows))
    """
    methods = [scores.get(m).name for m in (methods or _default_methods())]
    for sparsity in sparsities:
        masks.resolve_density(sparsity=sparsity)  # fail before any training
    train = data_lib.load(dataset, "train", data_dir)
    test = data_lib.load(dataset, "test", data_dir)
    classes = data_lib.num_classes(dataset)
    scoring_data = (train[0][: 10 * classes], train[1][: 10 * classes])

    def fresh_model():
        keras.utils.set_random_seed(seed)
        return mlp(train[0].shape[1:], classes)

    rows = []

    def record(row):
        rows.append(row)
        if verbose:
            print(format_table([row], header=len(rows) == 1), flush=True)

    dense = fresh_model()
    total = kept_weights(dense)[1]
    accuracy, seconds = _train_and_test(dense, train, test, epochs, batch_size)
    record(dict(method="dense", sparsity=0.0, kept=total, total=total, collapsed=0, accuracy=accuracy,
                prune_seconds=0.0, train_seconds=seconds))
    for sparsity in sparsities:
        for method in methods:
            model = fresh_model()
            start = time.perf_counter()
            # the table's "collapsed layers" column reports emptied layers: no CollapseWarning amid the rows
            pruned = prune_at_init(model, method, sparsity=sparsity, data=scoring_data, seed=seed, verbose=0,
                                   on_collapse="ignore")
            prune_seconds = time.perf_counter() - start
            kept, _, collapsed = kept_weights(pruned)
            accuracy, seconds = _train_and_test(pruned, train, test, epochs, batch_size)
            record(dict(method=method, sparsity=sparsity, kept=kept, total=total, collapsed=collapsed,
                        accuracy=accuracy, prune_seconds=prune_seconds, train_seconds=seconds))
    return rows


_COLUMNS = [("method", 10), ("sparsity", 8), ("kept weights", 15), ("collapsed layers", 16),
            ("test accuracy", 13), ("prune s", 8), ("train s", 8)]


def format_table(rows, header=True):
    """The demo's rows as a fixed-width text table.

    Args:
        rows: Rows as returned by :func:`run`.
        header: Start with the column names.

    Returns:
        The table as a string.
    """
    lines = []
    if header:
        lines.append("  ".join(n.ljust(w) if i == 0 else n.rjust(w) for i, (n, w) in enumerate(_COLUMNS)))
    for r in rows:
        cells = [r["method"], f"{r['sparsity']:.3f}", f"{r['kept']:,}/{r['total']:,}", str(r["collapsed"]),
                 f"{r['accuracy']:.4f}",
                 f"{r['prune_seconds']:.2f}", f"{r['train_seconds']:.2f}"]
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, (_, w)) in enumerate(zip(cells, _COLUMNS))))
    return "\n".join(lines)
