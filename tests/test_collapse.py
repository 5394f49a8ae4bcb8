"""collapse_sweep: layers alive, kept fractions, critical compression, CSV and PNG."""

import csv
import time

import keras
import matplotlib.image
import numpy as np
import pytest
from helpers import L

import tfprune
from tfprune.experiments.collapse import critical_compression


def test_critical_compression_is_the_last_before_the_first_collapse():
    assert critical_compression([10, 100, 1000], [False, False, True]) == 100
    assert critical_compression([1000, 10, 100], [True, False, True]) == 10
    assert critical_compression([10, 100], [False, False]) == 100
    assert critical_compression([10, 100], [True, False]) is None


def mlp():
    inputs = keras.Input((20,))
    x = L.Dense(200, activation="relu")(inputs)
    x = L.Dense(200, activation="relu")(x)
    return keras.Model(inputs, L.Dense(5)(x))


@pytest.fixture(scope="module")
def sweep():
    return tfprune.collapse_sweep(mlp, ["magnitude", "synflow"], 10 ** np.arange(1, 4.01, 0.5), seeds=(0, 1), verbose=0)


def test_rows_match_independent_pruning(sweep):
    """Each row's kept fractions are those of the same pruning done directly."""
    assert len(sweep.layer_names) == 3 and all(name.endswith("/kernel") for name in sweep.layer_names)
    assert sweep.max_compression == (20 * 200 + 200 * 200 + 200 * 5) / 3
    assert len(sweep.rows) == 2 * 2 * 7
    # magnitude is scored once per seed and masked at every compression: each row must still be
    # what pruning a fresh model at that compression gives
    for row in (r for r in sweep.rows if r["method"] == "magnitude"):
        keras.utils.set_random_seed(row["seed"])
        masks = tfprune.get_masks(tfprune.prune_at_init(mlp(), "magnitude", compression=row["compression"],
                                                        seed=row["seed"], verbose=0, on_collapse="ignore"))
        assert row["kept_fraction"] == [m.mean() for m in masks]
        assert row["layers_alive"] == sum(m.any() for m in masks) and row["layers_total"] == 3


def test_one_shot_data_methods_score_once_with_the_same_masks():
    """SNIP scored once per seed gives, at every compression, the masks of a fresh prune_at_init."""
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(50, 20)).astype("float32"), rng.integers(0, 5, 50))
    calls = []

    def counted_snip(model, targets, data):
        calls.append(1)
        return tfprune.scores.snip(model, targets, data)

    grid = [10.0, 100.0, 1000.0]
    result = tfprune.collapse_sweep(mlp, [counted_snip], grid, data=data, seeds=(3,), verbose=0)
    assert len(calls) == 1
    for row, compression in zip(result.rows, grid):
        keras.utils.set_random_seed(3)
        masks = tfprune.get_masks(tfprune.prune_at_init(mlp(), "snip", compression=compression, data=data,
                                                        verbose=0, on_collapse="ignore"))
        assert row["kept_fraction"] == [m.mean() for m in masks]
    assert result.critical_per_seed["counted_snip"] == [critical_compression(
        grid, [r["layers_alive"] < 3 for r in result.rows])]


def test_synflow_avoids_the_collapse_that_magnitude_suffers(sweep):
    """Iterative SynFlow keeps all three layers up to 10^4 (< N/K = 10^4.18); magnitude does not."""
    assert sweep.critical["synflow"] == 10**4
    assert sweep.critical["magnitude"] is not None and sweep.critical["magnitude"] <= 10**3
    for r in sweep.rows:
        kept = int(round(sum(f * n for f, n in zip(r["kept_fraction"], [4000, 40000, 1000]))))
        assert kept == tfprune.masks.kept_count(1 / r["compression"], 45000)


def test_csv_and_png(sweep, tmp_path):
    sweep.to_csv(tmp_path / "sweep.csv")
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 28 and set(rows[0]) >= {"method", "seed", "compression", "layers_alive"}
    assert sum(k.startswith("kept:") for k in rows[0]) == 3
    sweep.plot(tmp_path / "sweep.png")
    image = matplotlib.image.imread(tmp_path / "sweep.png")
    assert image.shape[0] > 300 and image.shape[1] > 600


def test_bad_compression_is_rejected_before_any_work():
    with pytest.raises(ValueError, match="compression must be"):
        tfprune.collapse_sweep(mlp, ["magnitude"], [10, 0.5], verbose=0)


def test_vgg16_synflow_reaches_1e5_and_magnitude_collapses_by_1e3():
    """SynFlow paper, Theorem 3 / Fig. 1: on VGG-16 (CIFAR shapes, 14 prunable layers) 100-round
    SynFlow keeps every layer up to 10^5; global magnitude has collapsed at 10^3."""
    keras.utils.set_random_seed(0)
    model = tfprune.models.vgg(16)
    start = time.perf_counter()
    synflow = tfprune.get_masks(tfprune.prune_at_init(model, "synflow", compression=1e5, verbose=0))
    seconds = time.perf_counter() - start
    assert len(synflow) == 14 and tfprune.masks.collapsed_layers(synflow) == []
    assert sum(int(m.sum()) for m in synflow) == tfprune.masks.kept_count(1e-5, 14_715_584)
    keras.utils.set_random_seed(0)
    magnitude = tfprune.get_masks(tfprune.prune_at_init(tfprune.models.vgg(16), "magnitude", compression=1e3, verbose=0))
    assert tfprune.masks.collapsed_layers(magnitude) != []
    print(f"SynFlow 100 rounds to 10^5 on VGG-16: {seconds:.1f} s")
