"""One argument check per kind (tfprune.base.arguments), the same in every entry point, types
included, and models that are not Keras 3 models named as what they are; every refusal leaves the
model's variables bit-identical."""

import os

import keras
import numpy as np
import pytest
from helpers import mlp64
from subprocess_util import run_python

import tfprune
from tfprune import ArgumentError, autoprune, structured
from tfprune.base import arguments
from tfprune.callbacks import DynamicSparse, GradualPruning
from tfprune.schedules import ConstantSparsity

X = np.random.default_rng(0).normal(size=(20, 64)).astype("float32")
Y = np.arange(20) % 10


def bits(model):
    """Every variable of ``model`` as (path, dtype, shape, bytes): equal only if bit-identical."""
    return [(v.path, v.dtype, tuple(v.shape), np.asarray(v.numpy()).tobytes()) for v in model.variables]


@pytest.mark.parametrize("check, message", [
    (lambda: arguments.number("sparsity", "0.5", 0, 1, high_open=True),
     "sparsity must be a number in [0, 1), got '0.5' (a str)"),
    (lambda: arguments.number("sparsity", True, 0, 1, high_open=True),
     "sparsity must be a number in [0, 1), got True (a bool)"),
    (lambda: arguments.number("sparsity", float("nan"), 0, 1, high_open=True),
     "sparsity must be a number in [0, 1), got nan"),
    (lambda: arguments.number("temperature", 0, 0, low_open=True), "temperature must be a finite number > 0, got 0"),
    (lambda: arguments.number("tolerance", -1, 0, optional=True),
     "tolerance must be None or a finite number >= 0, got -1"),
    (lambda: arguments.count("batch_size", 0), "batch_size must be an int >= 1, got 0"),
    (lambda: arguments.count("rounds", 2.0), "rounds must be an int >= 1, got 2.0"),
    (lambda: arguments.count("n", 5, 1, 4), "n must be an int in [1, 4], got 5"),
    (lambda: arguments.seed("a"), "seed must be None or an int in [0, 2**32 - 1], got 'a' (a str)"),
    (lambda: arguments.seed(-1, "--seed", optional=False), "--seed must be an int in [0, 2**32 - 1], got -1"),
    (lambda: arguments.flag("include_bias", 1), "include_bias must be True or False, got 1"),
    (lambda: arguments.verbosity("loud"), "verbose must be 0, 1, 2 or a bool, got 'loud' (a str)"),
    (lambda: arguments.choice("scope", "layer", ("global", "local")),
     "scope must be one of 'global', 'local', got 'layer'"),
    (lambda: arguments.choice("scope", 1, ("global", "local")), "scope must be one of 'global', 'local', got 1 (an int)"),
    (lambda: arguments.choice("quantize", "int8", (None, "dynamic"), advice="or leave it out"),
     "quantize must be one of None, 'dynamic', got 'int8': or leave it out"),
    (lambda: arguments.path("log_dir", None), "log_dir must be a path (a non-empty str or os.PathLike), got None"),
    (lambda: arguments.path("log_dir", ""), "log_dir must be a path (a non-empty str or os.PathLike), got '' (a str)"),
])
def test_each_kind_of_argument_names_the_argument_the_value_and_what_is_accepted(check, message):
    with pytest.raises(ArgumentError) as info:
        check()
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_accepted_values_come_back_in_their_plain_type():
    assert arguments.number("sparsity", np.float32(0.5), 0, 1) == 0.5
    assert type(arguments.count("rounds", np.int64(3))) is int
    assert arguments.seed(None) is None and arguments.seed(2 ** 32 - 1) == 2 ** 32 - 1
    assert arguments.flag("sparse", np.bool_(True)) is True
    assert arguments.verbosity(True) == 1 and arguments.verbosity(2) == 2
    assert arguments.choice("quantize", None, (None, "dynamic")) is None
    assert arguments.path("log_dir", os.path.join("a", "b")) == os.path.join("a", "b")


def gradual(**kwargs):
    return GradualPruning(ConstantSparsity(0.5, 0), **kwargs)


def structured_prune(model, **kwargs):
    return structured.prune(model, "l1", data=(X, Y), **{"kept_macs": 0.5, "verbose": 0, **kwargs})


# The same argument, given the same bad value, is refused the same way by every entry point taking it.
SAME_MESSAGE = {
    "seed='a'": ("seed must be None or an int in [0, 2**32 - 1], got 'a' (a str)", [
        lambda m: tfprune.prune_at_init(m, "random", sparsity=0.5, seed="a"),
        lambda m: structured_prune(m, seed="a"),
        lambda m: gradual(seed="a"),
        lambda m: DynamicSparse("set", 0.5, end_step=10, seed="a"),
        lambda m: tfprune.data.load("digits", "train", seed="a"),
    ]),
    "verbose='loud'": ("verbose must be 0, 1, 2 or a bool, got 'loud' (a str)", [
        lambda m: tfprune.prune_at_init(m, "magnitude", sparsity=0.5, verbose="loud"),
        lambda m: structured_prune(m, verbose="loud"),
        lambda m: gradual(verbose="loud"),
        lambda m: DynamicSparse("set", 0.5, end_step=10, verbose="loud"),
        lambda m: autoprune.Monitor(verbose="loud"),
    ]),
    "sparsity='0.5'": ("sparsity must be a number in [0, 1), got '0.5' (a str)", [
        lambda m: tfprune.prune_at_init(m, "magnitude", sparsity="0.5"),
        lambda m: tfprune.masks.from_scores([np.ones(4)], sparsity="0.5"),
        lambda m: tfprune.masks.resolve_density(sparsity="0.5"),
    ]),
    "include_bias='yes'": ("include_bias must be True or False, got 'yes' (a str)", [
        lambda m: tfprune.prune_at_init(m, "magnitude", sparsity=0.5, include_bias="yes"),
        lambda m: tfprune.wrap(m, include_bias="yes"),
        lambda m: tfprune.prunable_weights(m, include_bias="yes"),
        lambda m: autoprune.wrap(m, include_bias="yes"),
    ]),
    "scope='layer'": ("scope must be one of 'global', 'local', got 'layer'", [
        lambda m: tfprune.prune_at_init(m, "magnitude", sparsity=0.5, scope="layer"),
        lambda m: gradual(scope="layer"),
        lambda m: tfprune.masks.from_scores([np.ones(4)], sparsity=0.5, scope="layer"),
    ]),
}


@pytest.mark.parametrize("argument", SAME_MESSAGE)
def test_an_argument_is_refused_the_same_way_everywhere_and_changes_nothing(argument):
    message, calls = SAME_MESSAGE[argument]
    for call in calls:
        model = mlp64()
        before = bits(model)
        with pytest.raises(ArgumentError) as info:
            call(model)
        assert str(info.value) == message
        assert bits(model) == before and not tfprune.is_wrapped(model)


@pytest.mark.parametrize("call, message", [
    (lambda m: structured_prune(m, kept_macs="0.5"), "kept_macs must be a finite number > 0, got '0.5' (a str)"),
    (lambda m: structured_prune(m, kept_macs=None, kept_params=0), "kept_params must be a finite number > 0, got 0"),
    (lambda m: structured_prune(m, step_fraction=1.5), "step_fraction must be a number in (0, 1], got 1.5"),
    (lambda m: structured_prune(m, finetune_steps=2.5), "finetune_steps must be an int >= 0, got 2.5"),
    (lambda m: structured_prune(m, samples=0), "samples must be None or an int >= 1, got 0"),
    (lambda m: tfprune.prune_at_init(m, "magnitude", sparsity=0.5, rounds=0), "rounds must be None or an int >= 1, got 0"),
    (lambda m: tfprune.prune_at_init(m, "magnitude", compression="10"),
     "compression must be a finite number >= 1, got '10' (a str)"),
    (lambda m: tfprune.prune_at_init(m, "magnitude", sparsity=0.5, allocation="erdos"),
     "allocation must be one of 'uniform', 'erk', got 'erdos': or a sequence of per-tensor densities"),
    (lambda m: autoprune.wrap(m, penalty="1e-4"), "penalty must be a finite number >= 0, got '1e-4' (a str)"),
    (lambda m: autoprune.wrap(m, ste="relu"), "ste must be one of 'softplus', 'leaky_relu', 'linear', got 'relu'"),
    (lambda m: tfprune.unwrap(m, zero_masked="yes"), "zero_masked must be True or False, got 'yes' (a str)"),
    (lambda m: tfprune.export.tflite(m, "x.tflite", tolerance="1e-5"),
     "tolerance must be None or a finite number >= 0, got '1e-5' (a str)"),
    (lambda m: tfprune.export.tflite(m, "x.tflite", sparse="yes"), "sparse must be True or False, got 'yes' (a str)"),
    (lambda m: tfprune.data.load("digits", "train", batch_size=0), "batch_size must be an int >= 1, got 0"),
    (lambda m: tfprune.data.load("digits", "train", as_dataset=1), "as_dataset must be True or False, got 1"),
    (lambda m: tfprune.schedules.PolynomialDecay("0", 0.5, 0, 10), "initial_sparsity must be a number in [0, 1), "
                                                                    "got '0' (a str)"),
    (lambda m: tfprune.patterns.NByM(2, "4"), "m of NByM(n, m) must be an int >= 1, got '4' (a str)"),
])
def test_entry_points_refuse_bad_types_and_ranges_before_any_work(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = mlp64()
    before = bits(model)
    with pytest.raises(ArgumentError) as info:
        call(model)
    assert str(info.value) == message
    assert bits(model) == before and os.listdir(tmp_path) == []


DENSE = keras.layers.Dense(4, name="dense_layer")
DENSE.build((None, 8))
LAYER_MESSAGE = ("model must be a Keras 3 model (keras.Model), got the Dense layer 'dense_layer': pass a model that "
                 "holds it, e.g. keras.Sequential([keras.Input(shape), layer])")
NONE_MESSAGE = "model must be a Keras 3 model (keras.Model), got None: pass the model itself"
MODEL_CALLS = {
    "prune_at_init": lambda m: tfprune.prune_at_init(m, "magnitude", sparsity=0.5),
    "wrap": tfprune.wrap,
    "unwrap": tfprune.unwrap,
    "strip": tfprune.strip,
    "get_masks": tfprune.get_masks,
    "apply_masks": lambda m: tfprune.apply_masks(m, []),
    "prunable_weights": tfprune.prunable_weights,
    "autoprune.wrap": autoprune.wrap,
    "structured.prune": structured_prune,
    "export.tflite": lambda m: tfprune.export.tflite(m, "x.tflite"),
}


@pytest.mark.parametrize("entry", MODEL_CALLS)
def test_a_layer_or_none_is_named_as_such(entry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = [v.numpy().tobytes() for v in DENSE.variables]
    for given, message in [(DENSE, LAYER_MESSAGE), (None, NONE_MESSAGE)]:
        with pytest.raises(ArgumentError) as info:
            MODEL_CALLS[entry](given)
        assert str(info.value) == message
    assert [v.numpy().tobytes() for v in DENSE.variables] == before and os.listdir(tmp_path) == []


@pytest.mark.parametrize("entry", [e for e in MODEL_CALLS if e != "export.tflite"])  # export takes tf_keras models
def test_a_tf_keras_model_is_sent_to_tfprune_tfmot(entry):
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4)], name="legacy")
    before = [v.numpy().tobytes() for v in model.variables]
    with pytest.raises(ArgumentError) as info:
        MODEL_CALLS[entry](model)
    assert str(info.value) == (
        "model must be a Keras 3 model (keras.Model), got the tf_keras Sequential 'legacy': tfprune's Keras 3 API "
        "does not take tf_keras models: use tfprune.tfmot for them (tfprune.tfmot.prune_at_init, "
        "tfprune.tfmot.Rescore), or rebuild the model in Keras 3")
    assert [v.numpy().tobytes() for v in model.variables] == before


def test_other_objects_are_named_with_their_type():
    with pytest.raises(ArgumentError, match=r"^model must be a Keras 3 model \(keras.Model\), got array\(\[0., 0.\]\) "
                                            r"\(a ndarray\): pass a keras.Model"):
        tfprune.wrap(np.zeros(2))


def test_a_model_made_before_keras_switched_backend_is_named_as_such():
    """keras.config.set_backend re-imports Keras: a model made before is no keras.Model of the new one;
    the error names the backend it was made under and the one Keras now runs on, and nothing is wrapped."""
    out = run_python("""
        import keras
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        keras.config.set_backend("numpy")
        import tfprune
        try:
            tfprune.wrap(model)
        except tfprune.ArgumentError as error:
            print(error)
    """)
    assert ("got the Sequential 'sequential', made under Keras' 'tensorflow' backend: Keras now runs on 'numpy', "
            "and keras.config.set_backend re-imports Keras") in out
