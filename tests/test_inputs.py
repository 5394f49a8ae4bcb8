"""Inputs without data (issue 27): ``input_shape=`` one shape per input (a dict by name or a list) in SynFlow,
profile, the collapse check and structured.prune; integer inputs keep their dtype; an unknown dimension or a
shape for an input the model does not have is named; preprocessing layers are linearised for the flow."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.analysis import inputs
from tfprune.analysis.inputs import UnknownShapeError
from tfprune.autodiff.linearized import linearized

L = keras.layers


def tokens_and_features():
    keras.utils.set_random_seed(0)
    tokens, features = keras.Input((None,), dtype="int32", name="tokens"), keras.Input((3,), name="features")
    pooled = L.GlobalAveragePooling1D()(L.Embedding(20, 4, name="embedding")(tokens))
    outputs = L.Dense(2, name="head")(L.Concatenate()([pooled, features]))
    return keras.Model({"tokens": tokens, "features": features}, outputs, name="tokens_and_features")


def test_one_shape_per_input_by_name_or_in_order():
    model = tokens_and_features()
    targets = tfprune.prunable_weights(model)
    by_name = tfprune.scores.synflow(model, targets, input_shape={"tokens": (7,)})
    in_order = tfprune.scores.synflow(model, targets, input_shape=[(3,), (7,)])  # model.inputs: features, tokens
    for a, b in zip(by_name, in_order):
        np.testing.assert_allclose(a, b, rtol=1e-6)  # the second call runs compiled
    assert all(s.max() > s.min() for s in by_name)
    example = inputs.ones(model, {"tokens": (7,)})
    assert example["tokens"].dtype == "int32" and tuple(example["tokens"].shape) == (1, 7)
    assert tfprune.profile(model, {"tokens": (7,)}, verbose=0).total.macs == \
        tfprune.profile(model, [(3,), (7,)], verbose=0).total.macs == 7 * 2  # the head: (4 + 3) · 2


@pytest.mark.parametrize("input_shape, message", [
    (None, r"model 'tokens_and_features' takes input 'tokens' of shape \(None, None\), with a dimension of unknown "
           r"size: pass input_shape= .*e\.g\. input_shape=\{'tokens': \(16,\), \.\.\.\}"),
    ({"tokens": (7,), "nope": (2,)}, r"input_shape names input\(s\) 'nope' that the model does not have: model "
                                     r"'tokens_and_features' takes 2 inputs \('features', 'tokens'\)"),
    ({"tokens": (7,), "features": (4,)}, r"input_shape gives input 'features' of model 'tokens_and_features' the "
                                         r"shape \(4,\), but the model takes \(3,\)"),
    ((7,), r"input_shape=\(7,\) is one shape, but model 'tokens_and_features' takes 2 inputs"),
    ([(7,)], r"input_shape holds 1 shapes, but model 'tokens_and_features' takes 2 inputs"),
])
def test_bad_or_missing_input_shapes_are_named(input_shape, message):
    model = tokens_and_features()
    with pytest.raises(UnknownShapeError, match=message):
        tfprune.scores.synflow(model, tfprune.prunable_weights(model), input_shape=input_shape)


def test_prune_at_init_checks_collapse_at_the_given_shapes():
    model = tokens_and_features()
    pruned = tfprune.prune_at_init(model, "synflow", sparsity=0.5, rounds=2, input_shape={"tokens": (7,)},
                                   verbose=0)
    from tfprune.analysis.connectivity import connected_outputs
    assert connected_outputs(pruned, {"tokens": (7,)}) == [True]
    with pytest.raises(UnknownShapeError, match="pass input_shape="):
        connected_outputs(pruned)


def test_structured_prune_counts_macs_at_the_given_shape():
    keras.utils.set_random_seed(0)
    sequence = keras.Input((None, 4), name="sequence")
    hidden = L.GlobalAveragePooling1D()(L.Conv1D(8, 3, activation="relu", name="conv")(sequence))
    model = keras.Model(sequence, L.Dense(3, name="logits")(hidden))
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(16, 10, 4)).astype("float32"), rng.integers(0, 3, 16))
    options = dict(kept_params=0.7, finetune_steps=0, final_finetune_epochs=0, verbose=0)
    with pytest.raises(UnknownShapeError, match=r"input of shape \(None, None, 4\).*input_shape=\(16, 4\)"):
        tfprune.structured.prune(model, "l1", data=data, **options)
    result = tfprune.structured.prune(model, "l1", data=data, input_shape=(10, 4), **options)
    units = result.model.get_layer("conv").filters
    assert result.steps[-1].macs == 8 * 3 * 4 * units + units * 3  # 8 positions × 3 taps × 4 channels, then Dense


def test_preprocessing_is_linearised_offsets_dropped_scales_positive():
    """Rescaling(-0.5, offset=3) then Normalization(mean m, variance 4): on ones, ``|−0.5| / 2 = 0.25`` reaches
    the Dense kernel (the offset and the mean dropped, the scale made positive)."""
    x = keras.Input((3,))
    rescaled = L.Rescaling(-0.5, offset=3.0)(x)
    normalised = L.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 4.0, 4.0])(rescaled)
    model = keras.Model(x, L.Dense(2, use_bias=False, name="dense")(normalised))
    kernel = model.get_layer("dense").kernel.numpy()
    ones = np.ones((1, 3), "float32")
    with linearized(model):
        np.testing.assert_allclose(model(ones), 0.25 * ones @ kernel, rtol=1e-6)
    np.testing.assert_allclose(model(ones), (2.5 - np.array([[1.0, 2.0, 3.0]])) / 2 @ kernel, rtol=1e-6)  # restored
