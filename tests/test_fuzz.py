"""Property-based tests of the public entry points' arguments (hypothesis, seeded, bounded).

For every (entry point, argument) of :data:`CASES`, each generated value that the argument does
not accept — by the specification written here, independently of ``tfprune.base.arguments`` —
raises a :class:`tfprune.ArgumentError` before any work and leaves the model's variables
bit-identical; each generated value it accepts runs. ``export.tflite`` is run up to its conversion
(the conversion itself is tested in ``test_export.py``): an accepted value reaches it.
"""

import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfprune
from tfprune import ArgumentError, autoprune, structured
from tfprune.callbacks import DynamicSparse, GradualPruning
from tfprune.export import tflite_export
from tfprune.schedules import ConstantSparsity, Exponential, PolynomialDecay

SETTINGS = dict(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
X = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
Y = np.arange(16) % 3


def model():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden), name="tiny")


def bits(m):
    return [np.asarray(v.numpy()).tobytes() for v in m.variables]


# --- the specification: what each kind of argument accepts ----------------------------------------

def is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(v)


def real_in(low, high, low_open=False, high_open=False):
    return lambda v: is_real(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)


def int_in(low, high=math.inf, optional=False):
    return lambda v: (optional and v is None) or (is_int(v) and low <= v <= high)


def one_of(*choices):
    return lambda v: any(type(v) is type(c) and v == c for c in choices)


def is_bool(v):
    return isinstance(v, (bool, np.bool_))


def is_seed(v):
    return v is None or (is_int(v) and 0 <= v <= 2 ** 32 - 1)


def is_verbose(v):
    return is_bool(v) or (is_int(v) and 0 <= v <= 2)


SPARSITY = real_in(0, 1, high_open=True)
ANY = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40), st.floats(allow_nan=True),
                st.text(max_size=4), st.sampled_from(["0.5", "1", "global", "uniform", "erk", "2:4"]),
                st.lists(st.integers(0, 3), max_size=2), st.builds(np.float32, st.floats(-2, 2, width=32)),
                st.builds(np.int64, st.integers(-3, 3)), st.builds(np.bool_, st.booleans()), st.just(np.zeros(2)))


def prune(criterion="magnitude", **kwargs):
    """``prune_at_init`` at sparsity 0.5, silent (collapse included), with ``kwargs`` instead."""
    return lambda m: tfprune.prune_at_init(m, criterion, **{"sparsity": 0.5, "verbose": 0, "on_collapse": "ignore",
                                                            **kwargs})


def structured_prune(**kwargs):
    return lambda m: structured.prune(m, "l1", data=(X, Y), **{"kept_macs": 0.8, "finetune_steps": 0,
                                                               "final_finetune_epochs": 0, "verbose": 0, **kwargs})


class Reached(Exception):
    """Raised in place of the TFLite conversion: the arguments were accepted."""


def export(**kwargs):
    return lambda m: tfprune.export.tflite(m, "unused.tflite", **kwargs)


# (entry point, argument): (accepts(value), strategy of accepted values, call(value) -> call(model))
CASES = {
    ("prune_at_init", "sparsity"): (SPARSITY, st.floats(0, 0.9), lambda v: prune(sparsity=v)),
    ("prune_at_init", "compression"): (real_in(1, 1e15), st.floats(1, 1e6),
                                       lambda v: prune(sparsity=None, compression=v)),
    ("prune_at_init", "rounds"): (int_in(1, optional=True), st.integers(1, 3), lambda v: prune(rounds=v)),
    ("prune_at_init", "seed"): (is_seed, st.integers(0, 2 ** 32 - 1), lambda v: prune(criterion="random", seed=v)),
    ("prune_at_init", "verbose"): (is_verbose, st.sampled_from([0, False]), lambda v: prune(verbose=v)),
    ("prune_at_init", "scope"): (one_of("global", "local"), st.sampled_from(["global", "local"]),
                                 lambda v: prune(scope=v)),
    ("prune_at_init", "round_schedule"): (one_of("exponential", "linear"), st.sampled_from(["exponential", "linear"]),
                                          lambda v: prune(round_schedule=v)),
    ("prune_at_init", "on_collapse"): (one_of("warn", "raise", "ignore"), st.sampled_from(["warn", "ignore"]),
                                       lambda v: prune(on_collapse=v)),
    ("prune_at_init", "include_bias"): (is_bool, st.booleans(), lambda v: prune(include_bias=v)),
    ("wrap", "policy"): (lambda v: v is None or one_of("all", "skip_first_last")(v), st.sampled_from([None, "all"]),
                         lambda v: lambda m: tfprune.wrap(m, policy=v)),
    ("GradualPruning", "policy"): (lambda v: v is None or one_of("all", "skip_first_last")(v),
                                   st.sampled_from([None, "all", "skip_first_last"]),
                                   lambda v: lambda m: GradualPruning(ConstantSparsity(0.5, 0), policy=v)),
    ("wrap", "include_norm"): (is_bool, st.booleans(), lambda v: lambda m: tfprune.wrap(m, include_norm=v)),
    ("unwrap", "zero_masked"): (is_bool, st.booleans(),
                                lambda v: lambda m: tfprune.unwrap(tfprune.wrap(m), zero_masked=v)),
    ("GradualPruning", "scope"): (one_of("global", "local"), st.sampled_from(["global", "local"]),
                                  lambda v: lambda m: GradualPruning(ConstantSparsity(0.5, 0), scope=v)),
    ("GradualPruning", "seed"): (is_seed, st.integers(0, 2 ** 32 - 1),
                                 lambda v: lambda m: GradualPruning(ConstantSparsity(0.5, 0), "random", seed=v)),
    ("DynamicSparse", "sparsity"): (real_in(0, 1, True, True), st.floats(0.01, 0.99),
                                    lambda v: lambda m: DynamicSparse("set", v, end_step=10)),
    ("DynamicSparse", "drop_fraction"): (real_in(0, 1, True, True), st.floats(0.01, 0.99),
                                         lambda v: lambda m: DynamicSparse("set", 0.5, drop_fraction=v, end_step=10)),
    ("DynamicSparse", "update_frequency"): (int_in(1), st.integers(1, 10 ** 6),
                                            lambda v: lambda m: DynamicSparse("set", 0.5, update_frequency=v,
                                                                              end_step=10)),
    ("DynamicSparse", "batch_size"): (int_in(1, optional=True), st.integers(1, 64),
                                      lambda v: lambda m: DynamicSparse("set", 0.5, end_step=10, batch_size=v)),
    ("DynamicSparse", "allocation"): (one_of("uniform", "erk"), st.sampled_from(["uniform", "erk"]),
                                      lambda v: lambda m: DynamicSparse("set", 0.5, end_step=10, allocation=v)),
    ("structured.prune", "kept_macs"): (real_in(0, math.inf, low_open=True), st.floats(0.8, 1.0),
                                        lambda v: structured_prune(kept_macs=v)),
    ("structured.prune", "step_fraction"): (real_in(0, 1, low_open=True), st.floats(0.05, 1.0),
                                            lambda v: structured_prune(step_fraction=v)),
    ("structured.prune", "seed"): (is_seed, st.integers(0, 2 ** 32 - 1), lambda v: structured_prune(seed=v)),
    ("autoprune.wrap", "penalty"): (real_in(0, math.inf), st.floats(0, 1),
                                    lambda v: lambda m: autoprune.wrap(m, penalty=v)),
    ("autoprune.wrap", "penalty_norm"): (int_in(1), st.integers(1, 4),
                                         lambda v: lambda m: autoprune.wrap(m, penalty_norm=v)),
    ("autoprune.wrap", "ste"): (one_of(*autoprune.STES), st.sampled_from(autoprune.STES),
                                lambda v: lambda m: autoprune.wrap(m, ste=v)),
    ("export.tflite", "tolerance"): (lambda v: v is None or real_in(0, math.inf)(v), st.floats(0, 1),
                                     lambda v: export(tolerance=v)),
    ("export.tflite", "quantize"): (one_of(None, "dynamic"), st.sampled_from([None, "dynamic"]),
                                    lambda v: export(quantize=v)),
    ("export.tflite", "use_xnnpack"): (is_bool, st.booleans(), lambda v: export(use_xnnpack=v)),
    ("schedules.PolynomialDecay", "power"): (real_in(0, math.inf, low_open=True), st.floats(0.1, 5),
                                             lambda v: lambda m: PolynomialDecay(0.0, 0.5, 0, 10, power=v)),
    ("schedules.PolynomialDecay", "initial_sparsity"): (SPARSITY, st.floats(0, 0.99),
                                                        lambda v: lambda m: PolynomialDecay(v, 0.5, 0, 10)),
    ("schedules.ConstantSparsity", "frequency"): (int_in(1), st.integers(1, 1000),
                                                  lambda v: lambda m: ConstantSparsity(0.5, 0, frequency=v)),
    ("schedules.Exponential", "rounds"): (int_in(1), st.integers(1, 1000), lambda v: lambda m: Exponential(0.9, v)),
    ("patterns.NByM", "m"): (int_in(2), st.integers(2, 16), lambda v: lambda m: tfprune.patterns.NByM(2, v)),
    ("data.load", "batch_size"): (int_in(1), st.integers(1, 4096),
                                  lambda v: lambda m: tfprune.data.load("digits", "test", as_dataset=True,
                                                                        batch_size=v)),
    ("data.load", "shuffle"): (lambda v: v is None or is_bool(v), st.booleans(),
                               lambda v: lambda m: tfprune.data.load("digits", "test", as_dataset=True, shuffle=v)),
}
KEYS = sorted(CASES)


@pytest.fixture(autouse=True)
def no_conversion(monkeypatch, tmp_path):
    """Export stops where the conversion would start; files would go to an empty folder."""
    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(tflite_export, "_converter_factory", reached)
    monkeypatch.chdir(tmp_path)


MODEL = model()


@pytest.mark.parametrize("key", KEYS, ids=".".join)
@settings(max_examples=12, **SETTINGS)
@given(data=st.data())
def test_every_value_an_argument_does_not_accept_is_refused_before_any_work(key, data):
    accepts, _, call = CASES[key]
    value = data.draw(ANY.filter(lambda v: not accepts(v)), label="refused value")
    before = bits(MODEL)
    with pytest.raises(ArgumentError, match=rf"\b{key[1]}\b"):  # the message names the argument
        call(value)(MODEL)
    assert bits(MODEL) == before and not tfprune.is_wrapped(MODEL)


@pytest.mark.parametrize("key", KEYS, ids=".".join)
@settings(max_examples=3, **SETTINGS)
@given(data=st.data())
def test_every_value_an_argument_accepts_runs(key, data):
    accepts, valid, call = CASES[key]
    value = data.draw(valid, label="accepted value")
    assert accepts(value)
    try:
        call(value)(model())
    except Reached:
        assert key[0] == "export.tflite"
