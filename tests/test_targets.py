"""prunable_weights: kinds, model types, policies, and errors."""

import re

import keras
import numpy as np
import pytest
from helpers import L, residual_cnn, subclassed_mlp

import tfprune
from tfprune.layers.policies import ExcludeLayers, OnlyLayers, SkipFirstLast


def summary(targets):
    return [(t.layer.name, t.kind, t.shape) for t in targets]


def test_functional_cnn_kinds_and_shapes():
    """Every kernel of the residual CNN, with its kind and shape, in model order."""
    assert summary(tfprune.prunable_weights(residual_cnn())) == [
        ("conv", "conv", (3, 3, 3, 8)),
        ("depthwise", "depthwise", (3, 3, 8, 1)),
        ("separable", "depthwise", (3, 3, 8, 1)),
        ("separable", "pointwise", (1, 1, 8, 8)),
        ("hidden", "dense", (8, 16)),
        ("logits", "dense", (16, 3)),
    ]


@pytest.mark.parametrize(
    "layer, input_shape, expected",
    [
        (L.Conv1D(2, 3, name="l"), (7, 3), [("conv", (3, 3, 2))]),
        (L.Conv3D(2, 2, name="l"), (4, 4, 4, 1), [("conv", (2, 2, 2, 1, 2))]),
        (L.Conv2DTranspose(2, 3, name="l"), (5, 5, 3), [("conv_transpose", (3, 3, 2, 3))]),
        (L.Embedding(11, 4, name="l"), (5,), [("embedding", (11, 4))]),
        (L.GRU(3, name="l"), (5, 2), [("rnn", (2, 9)), ("rnn_recurrent", (3, 9))]),
        (L.SimpleRNN(3, name="l"), (5, 2), [("rnn", (2, 3)), ("rnn_recurrent", (3, 3))]),
        (L.EinsumDense("ab,bc->ac", output_shape=4, name="l"), (3,), [("dense", (3, 4))]),
    ],
)
def test_kinds_of_layer_types(layer, input_shape, expected):
    inputs = keras.Input(input_shape, dtype="int32" if isinstance(layer, L.Embedding) else "float32")
    model = keras.Model(inputs, layer(inputs))
    assert [(t.kind, t.shape) for t in tfprune.prunable_weights(model)] == expected


def test_include_bias_and_norm():
    """Biases and γ/β only when asked; BN moving statistics never."""
    model = residual_cnn()
    plain = tfprune.prunable_weights(model)
    with_bias = tfprune.prunable_weights(model, include_bias=True)
    with_norm = tfprune.prunable_weights(model, include_norm=True)
    assert [t.kind for t in with_bias].count("bias") == 5
    assert len(with_bias) == len(plain) + 5
    assert [t.name for t in with_norm if t.kind == "norm"] == ["bn/gamma", "bn/beta"]


def test_sequential_nested_and_subclassed_models():
    """Sequential, nested (functional in functional) and subclassed models list the same kernels."""
    seq = keras.Sequential([keras.Input((10,)), L.Dense(16), L.Dense(16), L.Dense(12), L.Dense(3)])
    inner = keras.Sequential([keras.Input((16,)), L.Dense(16), L.Dense(12)])
    inputs = keras.Input((10,))
    nested = keras.Model(inputs, L.Dense(3)(inner(L.Dense(16)(inputs))))
    sub = subclassed_mlp(features=10)
    expected = [(10, 16), (16, 16), (16, 12), (12, 3)]
    for model in (seq, nested, sub):
        assert [t.shape for t in tfprune.prunable_weights(model)] == expected
    assert re.match(r"subclassed_mlp(_\d+)?/dense(_\d+)?/kernel$", tfprune.prunable_weights(sub)[0].name)


def test_policy_skip_first_last():
    assert [t.layer.name for t in tfprune.prunable_weights(residual_cnn(), policy="skip_first_last")] == [
        "depthwise", "separable", "separable", "hidden"]
    assert [t.layer.name for t in tfprune.prunable_weights(residual_cnn(), policy=SkipFirstLast(first=False))][0] == "conv"


def test_policy_only_and_exclude_by_type_and_name():
    model = residual_cnn()
    assert [t.layer.name for t in tfprune.prunable_weights(model, policy=OnlyLayers(types=["Dense"]))] == ["hidden", "logits"]
    assert [t.layer.name for t in tfprune.prunable_weights(model, policy=OnlyLayers(types=L.Conv2D, names=["logits"]))] == ["conv", "logits"]
    assert [t.layer.name for t in tfprune.prunable_weights(model, policy=ExcludeLayers(names=["conv", "hidden"]))] == [
        "depthwise", "separable", "separable", "logits"]


def test_custom_callable_policy():
    """Any callable (layers, model) -> layers is a policy."""
    every_other = lambda layers, model: layers[::2]  # noqa: E731
    assert [t.layer.name for t in tfprune.prunable_weights(residual_cnn(), policy=every_other)] == ["conv", "separable", "separable", "logits"]


@pytest.mark.parametrize(
    "policy, message",
    [
        (OnlyLayers(types=["LSTM"]), "no layer of type 'LSTM'"),
        (ExcludeLayers(names=["nope"]), "no layer named 'nope'"),
        ("skip_everything", "policy must be one of 'all', 'skip_first_last', got 'skip_everything'"),
        (OnlyLayers(types=["BatchNormalization"]), "no prunable weights"),
    ],
)
def test_policy_errors(policy, message):
    with pytest.raises(ValueError, match=message):
        tfprune.prunable_weights(residual_cnn(), policy=policy)


def test_model_without_prunable_weights():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, L.BatchNormalization()(L.Flatten()(inputs)))
    with pytest.raises(ValueError, match="no prunable weights.*none of its layers"):
        tfprune.prunable_weights(model)


def test_unbuilt_model_says_how_to_build_it():
    model = keras.Sequential([L.Dense(3)])
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        tfprune.prunable_weights(model)
    model.build((None, 5))
    assert [t.shape for t in tfprune.prunable_weights(model)] == [(5, 3)]


def test_not_a_keras3_model():
    with pytest.raises(TypeError, match="Keras 3 model"):
        tfprune.prunable_weights(np.zeros(3))


def test_target_value_is_masked_weight():
    """Target.value is w ⊙ m for a wrapped model and w for a plain one; size is the entry count."""
    model = residual_cnn()
    t = tfprune.prunable_weights(model)[0]
    np.testing.assert_array_equal(t.value, t.variable.numpy())
    wrapped = tfprune.wrap(model)
    t = tfprune.prunable_weights(wrapped)[0]
    mask = np.zeros(t.shape, bool)
    mask[0, 0] = True
    tfprune.apply_masks(wrapped, {t.name: mask})
    np.testing.assert_array_equal(t.value, t.variable.numpy() * mask)
    assert t.size == 3 * 3 * 3 * 8 and t.wrapper is wrapped.layers[1]
