"""Bad input to tfprune.posttraining.prune: a specific error before any weight changes."""

import sys

import keras
import numpy as np
import pytest

import tfprune

L = keras.layers


def stack(width=8):
    return keras.Sequential([keras.Input((width,)), L.Dense(16, name="d1"), L.Dense(4, name="d2")], name="stack")


def x(n=32, width=8):
    return np.random.default_rng(0).normal(size=(n, width)).astype("float32")


def per_row_einsum():
    inputs = keras.Input((4, 6))
    return keras.Model(inputs, L.EinsumDense("abc,bcd->abd", output_shape=(4, 8), name="rows")(inputs), name="rows")


CASES = {
    "no linear layer": (lambda: keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(2, 3)], name="convs"), {},
                        "has no Dense or EinsumDense layer to prune"),
    "batched einsum": (per_row_einsum, {"data": x(width=24).reshape(32, 4, 6)},
                       "EinsumDense layer 'rows' .* is not one matrix product: its kernel shares 'b'"),
    "unknown criterion": (stack, {"criterion": "obs"}, "unknown criterion 'obs'"),
    "no amount": (stack, {"sparsity": None}, "give the fraction of each layer to prune"),
    "sparsity out of range": (stack, {"sparsity": 1.0}, r"sparsity must be a number in \[0, 1\)"),
    "block pattern": (stack, {"sparsity": None, "pattern": "1x4"}, "takes pattern 'unstructured' or N:M"),
    "sparsity against 2:4": (stack, {"sparsity": 0.7, "pattern": "2:4"}, "keeps a fixed fraction 0.5"),
    "width 6 cannot hold 4:8": (lambda: stack(width=6), {"sparsity": None, "pattern": "4:8", "data": x(width=6)},
                                "layer 'stack/d1/kernel' reads 6 along its input axis, not a multiple of 8"),
    "block not a multiple of m": (stack, {"criterion": "sparsegpt", "sparsity": None, "pattern": "2:4",
                                          "block_size": 6}, "block_size 6 must be a multiple of the pattern's m = 4"),
    "negative damping": (stack, {"criterion": "sparsegpt", "damping": -0.1}, "damping must be a number >= 0"),
    "no data": (stack, {"data": None}, "criterion 'wanda' needs calibration data"),
    "no examples": (stack, {"data": x(n=0)}, "data holds no examples"),
    "samples": (stack, {"samples": 0}, "samples must be an int >= 1"),
    "wrong width": (stack, {"data": x(width=5)}, r"data does not fit model 'stack'.*\(8, 5\)"),
    "strings without preprocessor": (stack, {"data": ["some text", "more text", "and more"]},
                                     "model 'stack' has no preprocessor"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_before_any_change(case):
    make, overrides, message = CASES[case]
    model = make()
    before = [w.copy() for w in model.get_weights()]
    arguments = {"criterion": "wanda", "data": x(), "sparsity": 0.5, "verbose": 0} | overrides
    with pytest.raises(ValueError, match=message):
        tfprune.posttraining.prune(model, arguments.pop("criterion"), **arguments)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_run_restores_every_weight(monkeypatch):
    """A failure after the first block was pruned (here: in the second layer's criterion) leaves
    the model as it was."""
    driver = sys.modules["tfprune.posttraining.prune"]  # the module (the package's `prune` is the function)
    model = stack()
    before = [w.copy() for w in model.get_weights()]
    calls = []

    def failing(matrix, statistics, density, pattern):
        calls.append(matrix.shape)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return tfprune.posttraining.wanda.prune_matrix(matrix, statistics, density, pattern)

    monkeypatch.setitem(driver.CRITERIA, "wanda", failing)
    with pytest.raises(KeyboardInterrupt):
        tfprune.posttraining.prune(model, "wanda", data=x(), sparsity=0.5, verbose=0)
    assert calls == [(16, 8), (4, 16)]
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
