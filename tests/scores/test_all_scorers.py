"""Properties every scorer shares: weights untouched, deterministic, finite on deep networks."""

import keras
import numpy as np
import pytest
from helpers import batch, random_masks, residual_cnn

import tfprune

METHODS = ["magnitude", "random", "snip", "iter_snip", "force", "grasp", "synflow"]
DATA = batch((8, 8, 3), n=30)


def snapshot(model):
    return [v.numpy().copy() for v in model.variables]


@pytest.mark.parametrize("method", METHODS)
def test_scorers_leave_every_variable_untouched(method):
    """Weights, signs, BN statistics, seeds and masks are bit-identical after scoring."""
    model = tfprune.wrap(residual_cnn())
    tfprune.apply_masks(model, random_masks(model, 0.5))
    before = snapshot(model)
    scores = tfprune.scores.get(method)(model, tfprune.prunable_weights(model), DATA)
    assert [np.shape(s) for s in scores] == [t.shape for t in tfprune.prunable_weights(model)]
    for a, b in zip(snapshot(model), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_scorer_errors_leave_every_variable_untouched(method):
    """A scorer that fails half-way (inputs of the wrong shape) changes nothing."""
    model = residual_cnn()
    before = snapshot(model)
    bad = (np.ones((4, 5, 5, 3), "float32"), np.zeros(4, "int64"))
    options = dict(input_shape=(5, 5, 3)) if method == "synflow" else {}
    with pytest.raises(Exception):  # whatever Keras raises for the shape mismatch
        tfprune.prune_at_init(model, method, sparsity=0.5, data=bad, rounds=1, verbose=0, **options)
    for a, b in zip(snapshot(model), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_masks_bit_for_bit(method):
    def masks():
        keras.utils.set_random_seed(0)
        pruned = tfprune.prune_at_init(residual_cnn(), method, sparsity=0.9, data=DATA, rounds=3, seed=5, verbose=0)
        return np.concatenate([m.ravel() for m in tfprune.get_masks(pruned)])

    np.testing.assert_array_equal(masks(), masks())


def test_scores_finite_on_resnet18():
    """SynFlow, SNIP and GraSP scores are finite on the CIFAR ResNet-18 (11.2M weights)."""
    keras.utils.set_random_seed(0)
    model = tfprune.models.resnet18()
    targets = tfprune.prunable_weights(model)
    data = batch((32, 32, 3), num_classes=10, n=20)
    for method in ("synflow", "snip", "grasp"):
        scores = tfprune.scores.get(method)(model, targets, data)
        assert all(np.isfinite(s).all() for s in scores), method
        assert sum(float(np.abs(s).sum()) for s in scores) > 0, method


def test_multi_round_progress_bar_and_silence(capsys):
    tfprune.prune_at_init(residual_cnn(), "synflow", sparsity=0.9, rounds=5, verbose=1)
    assert "5/5" in capsys.readouterr().out
    tfprune.prune_at_init(residual_cnn(), "synflow", sparsity=0.9, rounds=5, verbose=0)
    assert capsys.readouterr().out == ""
