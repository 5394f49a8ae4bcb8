"""Errors blame the right thing (issue 16, items 7, 12, 13): NaN/inf in the data is the data's, a
non-finite weight is named, NaN structured scores name their layer, a too large compression is
called compression — and every variable is bit-identical after the failure."""

import numpy as np
import pytest
from helpers import assert_unchanged, mlp64, snapshot

import tfprune
from tfprune.sparsity import masks
from tfprune import structured
from tfprune.structured import criteria


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    return rng.random((64, 64)).astype("float32"), np.arange(64) % 10


def with_value(model, layer, weight, index, value):
    variable = getattr(model.get_layer(layer), weight)
    array = variable.numpy()
    array.flat[index] = value
    variable.assign(array)
    return model


# ------------------------------------------------------------------------------------------
# item 13: NaN in the data, inf in one kernel


@pytest.mark.parametrize("method", ["snip", "grasp", "force", "iter_snip"])
def test_nan_in_the_data_is_reported_as_the_data(xy, method):
    x, y = xy
    x = x.copy()
    x[7, 0] = np.nan
    x[9, 1] = np.inf
    model = mlp64()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"^data: x holds 1 NaN and 1 infinite values \(of 4096; first at example "
                                         r"7\): the data, not the model, is not finite"):
        tfprune.prune_at_init(model, method, sparsity=0.5, data=(x, y), samples=64, rounds=1, verbose=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", ["magnitude", "random", "snip", "grasp", "synflow", "force"])
def test_an_inf_kernel_is_named(xy, method):
    """Before, SNIP blamed the scores of 'hidden/kernel' for an inf in 'logits/kernel'."""
    model = with_value(mlp64(), "logits", "kernel", 37, np.inf)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"^weight 'mlp/logits/kernel' of model 'mlp' holds 0 NaN and 1 infinite "
                                         r"values \(of 320; first at flat index 37\)"):
        tfprune.prune_at_init(model, method, sparsity=0.5, data=xy, rounds=1, verbose=0)
    assert_unchanged(model, before)


def test_a_nan_bias_is_named_though_it_is_not_pruned(xy):
    model = with_value(mlp64(), "hidden", "bias", 3, np.nan)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"^weight 'mlp/hidden/bias' of model 'mlp' holds 1 NaN and 0 infinite "
                                         r"values \(of 32; first at flat index 3\)"):
        tfprune.prune_at_init(model, "snip", sparsity=0.5, data=xy, verbose=0)
    assert_unchanged(model, before)


# ------------------------------------------------------------------------------------------
# item 7: structured pruning and NaN


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor", "singe"])
def test_structured_prune_names_a_nan_weight(xy, criterion):
    model = with_value(mlp64(), "hidden", "kernel", 100, np.nan)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"weight '[\w/]*hidden/kernel' of model '\w+' holds 1 NaN and 0 infinite "
                                         r"values \(of 2048; first at flat index 100\)"):
        structured.prune(model, criterion, data=xy, kept_params=0.8, finetune_steps=0, final_finetune_epochs=0,
                         samples=32, verbose=0)
    assert_unchanged(model, before)


@pytest.fixture
def nan_criterion():
    def half_nan(model, layers, data=None):
        scores = criteria.l1(model, layers)
        scores["hidden"][[4, 9]] = np.nan
        return scores

    criteria.register("test_half_nan", half_nan)
    yield "test_half_nan"
    criteria._CRITERIA.entries.pop("test_half_nan")


def test_structured_prune_stops_on_nan_scores_naming_the_layer(xy, nan_criterion):
    """Before, NaN was ranked arbitrarily and the loop carried on."""
    model = mlp64()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"criterion 'test_half_nan' gave layer 'hidden' 2 NaN and 0 infinite scores "
                                         r"\(of 32 units\)"):
        structured.prune(model, nan_criterion, data=xy, kept_params=0.8, finetune_steps=0, final_finetune_epochs=0,
                         verbose=0)
    assert_unchanged(model, before)


def test_structured_criterion_on_nan_data_blames_the_data(xy):
    x, y = xy
    x = x.copy()
    x[2, 2] = np.nan
    model = mlp64()
    with pytest.raises(ValueError, match=r"^data: x holds 1 NaN and 0 infinite values \(of 4096; first at example 2\)"):
        criteria.get("singe")(model, data=(x, y), samples=64)


# ------------------------------------------------------------------------------------------
# item 12: compression too large


def test_a_huge_compression_is_called_compression():
    model = mlp64()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"^compression must be at most 1e\+15, got 1e\+30"):
        tfprune.prune_at_init(model, "magnitude", compression=1e30, verbose=0)
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match=r"^compression must be at most 1e\+15, got 1e\+30"):
        masks.from_scores([np.arange(4.0)], compression=1e30)
    assert masks.resolve_density(compression=1e15) == 1e-15
    assert 1.0 - masks.resolve_density(compression=1e15) < 1.0  # its sparsity is still below 1
