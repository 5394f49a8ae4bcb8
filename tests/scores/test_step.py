"""Scoring steps run eagerly in a lone first round and compiled afterwards (scores.gradients.Step).

Checked by the traces the compiled function records and against a float64 NumPy gradient: the
eager round and the compiled rounds both give SNIP's ``|w ⊙ ∂L/∂w|`` / sum.
"""

import numpy as np
from numpy_mlp import grads, keras_mlp

import tfprune
from tfprune.autodiff import gradients

RNG = np.random.default_rng(5)
W = [RNG.normal(size=(4, 6)), RNG.normal(size=6) * 0.1, RNG.normal(size=(6, 3)), RNG.normal(size=3) * 0.1]
X = RNG.normal(size=(10, 4)).astype("float32")
Y = RNG.integers(0, 3, 10)


def _snip_oracle():
    kernels = W[0::2]
    s = [np.abs(k * g) for k, g in zip(kernels, grads(kernels, W[1::2], X, Y))]
    total = sum(a.sum() for a in s)
    return [a / total for a in s]


def _steps(model):
    return [f for f in model.__dict__["_tfprune_compiled"].values() if isinstance(f, gradients.Step)]


def test_first_round_is_eager_and_the_second_traces_once():
    model = keras_mlp(W)
    targets = tfprune.prunable_weights(model)
    oracle = _snip_oracle()
    first = tfprune.scores.snip(model, targets, (X, Y))
    (step,) = _steps(model)
    assert step.rounds == 1 and step.compiled.experimental_get_tracing_count() == 0
    second = tfprune.scores.snip(model, targets, (X, Y))
    third = tfprune.scores.snip(model, targets, (X, Y))
    assert step.rounds == 3 and step.compiled.experimental_get_tracing_count() == 1
    for got in (first, second, third):
        for g, e in zip(got, oracle):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-7)


def test_rounds_announced_compile_the_first_round():
    """Inside scoring_rounds(n > 1) the first round already runs compiled; scoring_rounds(1) does not."""
    model = keras_mlp(W)
    targets = tfprune.prunable_weights(model)
    with gradients.scoring_rounds(5):
        tfprune.scores.snip(model, targets, (X, Y))
    (step,) = _steps(model)
    assert step.compiled.experimental_get_tracing_count() == 1
    other = keras_mlp(W)
    with gradients.scoring_rounds(1):
        tfprune.scores.snip(other, tfprune.prunable_weights(other), (X, Y))
    assert _steps(other)[0].compiled.experimental_get_tracing_count() == 0


def test_prune_at_init_traces_only_when_rounds_follow():
    """One round of SNIP never traces; three rounds of iterative SNIP trace once, in the first."""
    one = tfprune.prune_at_init(keras_mlp(W), "snip", sparsity=0.5, data=(X, Y), verbose=0)
    assert [s.compiled.experimental_get_tracing_count() for s in _steps(one)] == [0]
    three = tfprune.prune_at_init(keras_mlp(W), "iter_snip", sparsity=0.5, rounds=3, data=(X, Y), verbose=0)
    (step,) = _steps(three)
    assert step.rounds == 3 and step.compiled.experimental_get_tracing_count() == 1


def test_large_batches_compile_the_first_round(monkeypatch):
    """Batches of at least EAGER_BELOW_INPUT_VALUES input values skip the eager round: here 40
    values (10 examples × 4 features) against a limit lowered to 40, then raised to 41."""
    monkeypatch.setattr(gradients, "EAGER_BELOW_INPUT_VALUES", 40)
    model = keras_mlp(W)
    tfprune.scores.snip(model, tfprune.prunable_weights(model), (X, Y))
    assert _steps(model)[0].compiled.experimental_get_tracing_count() == 1
    monkeypatch.setattr(gradients, "EAGER_BELOW_INPUT_VALUES", 41)
    other = keras_mlp(W)
    tfprune.scores.snip(other, tfprune.prunable_weights(other), (X, Y))
    assert _steps(other)[0].compiled.experimental_get_tracing_count() == 0
