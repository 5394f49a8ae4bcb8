"""The layer registry: a custom layer type registered in one call (or opted in by its
prunable_weights() method) is pruned exactly, its MACs are counted by its formula and its units are
removed structurally; layers tfprune does not know are named in a warning; registration errors."""

import math
import re
import warnings

import keras
import numpy as np
import pytest
from helpers import L, residual_cnn

import tfprune
from tfprune.layers import specs as layer_specs
from tfprune import structured
from tfprune.layers.specs import LayerSpec, WeightSpec


class Affine(keras.layers.Layer):
    """``y = x @ w + b`` with its own add_weight variables (no Keras sub-layers)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", name="b")

    def call(self, x):
        return keras.ops.matmul(x, self.w) + self.b

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Linear(Affine):
    """Registered below in one call: pruning, MACs and structured removal."""


class OptedIn(Affine):
    """Opted in by TF-MOT's protocol: the layer lists its prunable weights."""

    def prunable_weights(self):
        return [self.w]


class OptedInTfmotName(Affine):
    def get_prunable_weights(self):
        return [self.w]


class Unknown(Affine):
    """Neither registered nor opted in."""


def linear_macs(layer, call):
    """MACs of one call: every input position times every entry of ``w``."""
    return math.prod(call.input[:-1]) * layer.w.shape[0] * layer.w.shape[1]


SPEC = tfprune.register_layer(
    Linear, weights={"w": "dense", "b": "bias"}, unit_key="units", macs=linear_macs, role="producer"
)


def custom_model(layer_type, name="custom", steps=5, features=6, units=8):
    """(steps, features) → custom layer (units) → ReLU → Flatten → Dense(3)."""
    inputs = keras.Input((steps, features))
    x = layer_type(units, name=name)(inputs)
    x = L.ReLU()(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x))


def kept_top_k(arrays, density):
    """Global top-k of |w| in float64 (ties broken toward the lower flat index), as boolean masks."""
    flat = np.concatenate([np.abs(np.asarray(a, np.float64)).ravel() for a in arrays])
    k = math.floor(density * flat.size + 0.5)
    keep = np.zeros(flat.size, bool)
    keep[np.lexsort((np.arange(flat.size), -flat))[:k]] = True
    out, start = [], 0
    for a in arrays:
        out.append(keep[start:start + a.size].reshape(a.shape))
        start += a.size
    return out


def not_pruned_warnings(record):
    return [str(w.message) for w in record if "not pruned" in str(w.message)]


# ---------------------------------------------------------------------------------------------
# one registration: pruning, MACs, structured removal


def test_registered_layer_is_pruned_exactly():
    model = custom_model(Linear)
    dense_values = [model.get_layer("custom").w.numpy(), model.get_layer("head").kernel.numpy()]
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.75, verbose=0)
    targets = tfprune.prunable_weights(pruned)
    assert [(t.layer.name, t.kind, t.shape, t.reduction_axis, t.unit_axis) for t in targets] == [
        ("custom", "dense", (6, 8), 0, 1), ("head", "dense", (40, 3), 0, 1)
    ]
    masks = tfprune.get_masks(pruned)
    assert sum(int(m.sum()) for m in masks) == math.floor(0.25 * (48 + 120) + 0.5) == 42
    for mask, expected in zip(masks, kept_top_k(dense_values, 0.25)):
        np.testing.assert_array_equal(mask, expected)


def test_registered_formula_counts_macs_and_effective_macs():
    pruned = tfprune.prune_at_init(custom_model(Linear), "magnitude", sparsity=0.75, verbose=0)
    kept = int(tfprune.get_masks(pruned)[0].sum())
    rows = {r.name: r for r in tfprune.profile(pruned, verbose=0).layers}
    assert rows["custom"].macs == 5 * 6 * 8  # steps · in · out
    assert rows["custom"].effective_macs == pytest.approx(5 * kept)  # 5·48 MACs × kept/48
    assert rows["head"].macs == 40 * 3
    report_rows = {r.name: r for r in tfprune.report(pruned, verbose=0).rows}
    assert report_rows["custom/w"].macs == 240


def test_registered_producer_units_are_removed_structurally():
    model = custom_model(Linear)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 6)).astype("float32")
    graph = structured.dependency_graph(model)
    assert graph.group_of("custom").producers == ("custom",) and graph.group_of("custom").prunable
    smaller = structured.remove(model, {"custom": [1, 4]})
    assert smaller.get_layer("custom").w.shape == (6, 6) and smaller.get_layer("custom").units == 6
    assert tuple(smaller.get_layer("head").kernel.shape) == (30, 3)
    # NumPy float64: the original with units 1 and 4 zeroed
    w, b = (np.asarray(v.numpy(), np.float64) for v in (model.get_layer("custom").w, model.get_layer("custom").b))
    w[:, [1, 4]], b[[1, 4]] = 0, 0
    kernel, bias = (np.asarray(v.numpy(), np.float64) for v in model.get_layer("head").weights)
    expected = np.maximum(x @ w + b, 0).reshape(4, -1) @ kernel + bias
    np.testing.assert_allclose(smaller(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    l1 = structured.criteria.l1(model, ["custom"])["custom"]
    np.testing.assert_allclose(l1, np.abs(model.get_layer("custom").w.numpy()).sum(0)
                               + np.abs(model.get_layer("custom").b.numpy()), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# the prunable_weights() protocol and layers tfprune does not know


@pytest.mark.parametrize("layer_type", [OptedIn, OptedInTfmotName])
def test_protocol_layer_is_pruned_exactly_without_warning(layer_type):
    model = custom_model(layer_type)
    dense_values = [model.get_layer("custom").w.numpy(), model.get_layer("head").kernel.numpy()]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.6, verbose=0)
    assert not_pruned_warnings(record) == []
    targets = tfprune.prunable_weights(pruned)
    assert [(t.name, t.kind, t.reduction_axis) for t in targets][0] == ("custom/w", "custom", None)
    masks = tfprune.get_masks(pruned)
    assert sum(int(m.sum()) for m in masks) == math.floor(0.4 * 168 + 0.5) == 67
    for mask, expected in zip(masks, kept_top_k(dense_values, 0.4)):
        np.testing.assert_array_equal(mask, expected)


def test_unknown_layer_warns_by_name_from_prune_report_and_profile():
    model = custom_model(Unknown, name="mystery")
    named = re.escape("mystery (Unknown: ['w', 'b'])")
    with pytest.warns(UserWarning, match=named + ".*register_layer.*prunable_weights"):
        pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.5, verbose=0)
    assert [t.layer.name for t in tfprune.prunable_weights(pruned)] == ["head"]
    with pytest.warns(UserWarning, match=named):
        tfprune.report(pruned, verbose=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tfprune.profile(pruned, verbose=0)
    messages = [str(w.message) for w in record if "mystery" in str(w.message)]
    assert len(messages) == 1  # one warning for MACs and pruning together
    assert re.search(r"not counted \(0\): mystery \(Unknown\).*macs=.*not pruned.*" + named, messages[0])


def test_keras_layers_without_prunable_weights_do_not_warn():
    inputs = keras.Input((4, 6))
    x = L.Dense(8)(inputs)
    for layer in (L.BatchNormalization(), L.LayerNormalization(), L.GroupNormalization(groups=2),
                  L.RMSNormalization(), L.PReLU(), L.Normalization(mean=0.0, variance=1.0)):
        x = layer(x)
    x = L.Attention(use_scale=True)([x, x])
    model = keras.Model(inputs, L.Dense(2)(x))
    assert tfprune.layers.targets.unpruned_layers(model) == []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tfprune.prune_at_init(model, "magnitude", sparsity=0.5, verbose=0)
    assert not_pruned_warnings(record) == []


def test_subclass_of_a_keras_layer_gets_its_spec():
    class MyDense(L.Dense):
        pass

    inputs = keras.Input((6,))
    model = keras.Model(inputs, L.Dense(2, name="out")(MyDense(4, name="mine")(inputs)))
    assert [(t.layer.name, t.kind) for t in tfprune.prunable_weights(model)] == [("mine", "dense"), ("out", "dense")]
    assert {r.name: r.macs for r in tfprune.profile(model, verbose=0).layers} == {"mine": 24, "out": 8}
    assert structured.dependency_graph(model).group_of("mine").prunable


# ---------------------------------------------------------------------------------------------
# axes of every built-in kind


def test_reduction_and_unit_axes_of_targets():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2DTranspose(4, 3, name="transposed")(inputs)
    x = L.Reshape((-1, 4))(x)
    x = L.MultiHeadAttention(num_heads=2, key_dim=5, name="mha")(x, x)
    model = keras.Model(inputs, x)
    axes = {t.name: (t.kind, t.reduction_axis, t.unit_axis) for t in tfprune.prunable_weights(model)}
    assert axes == {
        "transposed/kernel": ("conv_transpose", 3, 2),  # (k, k, out, in)
        "mha/query/kernel": ("attention", 0, 2), "mha/key/kernel": ("attention", 0, 2),  # (dim, heads, key_dim)
        "mha/value/kernel": ("attention", 0, 2),
        "mha/attention_output/kernel": ("attention", 1, 2),  # (heads, value_dim, dim): the inner summed axis
    }
    cnn = {t.name: (t.reduction_axis, t.unit_axis) for t in tfprune.prunable_weights(residual_cnn(), include_bias=True)}
    assert cnn["conv/kernel"] == (2, 3) and cnn["hidden/kernel"] == (0, 1) and cnn["hidden/bias"] == (None, 0)
    assert cnn["depthwise/kernel"] == (None, None) and cnn["separable/pointwise_kernel"] == (2, 3)


# ---------------------------------------------------------------------------------------------
# registration errors


def built(layer_type, features=6, units=4):
    layer = layer_type(units)
    layer.build((None, features))
    return layer


def test_registration_errors_on_a_built_layer():
    class Fresh(Affine):
        pass

    with pytest.raises(ValueError, match=r"has no weight 'kernel'.*own weights: \['b', 'w'\]"):
        tfprune.register_layer(built(Fresh), weights={"kernel": "dense"})
    with pytest.raises(ValueError, match=r"reduction_axis 2 of weight 'w'.*out of range for its rank 2"):
        tfprune.register_layer(built(Fresh), weights={"w": WeightSpec("dense", reduction_axis=2, unit_axis=1)})
    with pytest.raises(ValueError, match="unit_key 'filters' is not in the config"):
        tfprune.register_layer(built(Fresh), weights={"w": "dense"}, unit_key="filters", role="producer")
    assert layer_specs.spec_of(Fresh) is None  # nothing was registered


def test_registration_errors_before_any_layer_exists():
    class Fresh(Affine):
        pass

    with pytest.raises(ValueError, match="unknown kind 'dens'; known kinds: dense, conv"):
        tfprune.register_layer(Fresh, weights={"w": "dens"})
    with pytest.raises(ValueError, match=r"macs must be a function of two arguments \(layer, call\)"):
        tfprune.register_layer(Fresh, weights={"w": "dense"}, macs=lambda layer: 0)
    with pytest.raises(ValueError, match="macs must be a function"):
        tfprune.register_layer(Fresh, weights={"w": "dense"}, macs=12)
    with pytest.raises(ValueError, match='role="producer" needs unit_key'):
        tfprune.register_layer(Fresh, weights={"w": "dense"}, role="producer")
    with pytest.raises(ValueError, match="unknown role 'maker'"):
        tfprune.register_layer(Fresh, weights={"w": "dense"}, role="maker")
    with pytest.raises(TypeError, match="needs a Keras 3 layer class or layer"):
        tfprune.register_layer(object, weights={"w": "dense"})
    with pytest.raises(TypeError, match="either spec or the keywords"):
        tfprune.register_layer(Fresh, LayerSpec({"w": "dense"}), unit_key="units")
    with pytest.raises(ValueError, match="Linear is already registered: pass replace=True"):
        tfprune.register_layer(Linear, weights={"w": "dense"})
    assert layer_specs.spec_of(Fresh) is None


def test_wrong_weight_name_of_a_registered_class_fails_at_first_use_and_changes_nothing():
    class Misnamed(Affine):
        pass

    tfprune.register_layer(Misnamed, weights={"kernel": "dense"})
    model = custom_model(Misnamed, name="misnamed")
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(ValueError, match=r"layer 'misnamed' \(Misnamed\) has no weight 'kernel'.*register_layer"):
        tfprune.prune_at_init(model, "magnitude", sparsity=0.5, verbose=0)
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_protocol_that_returns_a_foreign_variable_is_an_error():
    class Borrowing(Affine):
        def build(self, input_shape):
            super().build(input_shape)
            self.inner = L.Dense(2)
            self.inner.build((None, self.units))

        def prunable_weights(self):
            return [self.w, self.inner.kernel]

    model = custom_model(Borrowing, name="borrowing")
    message = r"Borrowing.prunable_weights\(\) of layer 'borrowing' returned .*kernel.*own weights"
    with pytest.raises(ValueError, match=message):
        tfprune.prunable_weights(model)
