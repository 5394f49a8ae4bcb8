"""SynFlow on models that are not ReLU chains ending in logits: non-homogeneous activations,
softmax heads, gates, embeddings, attention, keras.applications; the model is left unchanged."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from scores.numpy_mlp import synflow_closed_form

import tfprune
from tfprune.analysis.connectivity import connected_outputs
from tfprune.autodiff.linearized import linearized

L = keras.layers
RNG = np.random.default_rng(3)
KERNELS = [RNG.normal(size=(5, 6)), RNG.normal(size=(6, 4)), RNG.normal(size=(4, 3))]


def saturating_chain():
    """Every kind of non-homogeneous activation tfprune reaches, on a chain whose linearised form
    is the bias-free linear chain of KERNELS: activation attributes, activation layers, op nodes,
    a capped ReLU, and a softmax head."""
    inputs = keras.Input((5,))
    x = L.Dense(6, use_bias=False, activation="gelu", name="d0")(inputs)
    x = L.ReLU(max_value=6.0)(x)
    x = ops.sigmoid(x)  # an operation node
    x = L.Dense(4, use_bias=False, activation="relu6", name="d1")(x)
    x = L.Activation("hard_swish")(x)
    x = ops.tanh(x)
    outputs = L.Dense(3, use_bias=False, activation="softmax", name="d2")(x)
    model = keras.Model(inputs, outputs)
    model.set_weights([k.astype("float32") for k in KERNELS])
    return model


def test_saturating_chain_scores_as_its_linear_chain():
    model = saturating_chain()
    scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model), rescale=False)
    for s, e in zip(scores, synflow_closed_form(KERNELS)):
        np.testing.assert_allclose(s, e, rtol=1e-5)


def test_the_model_is_unchanged_after_scoring_and_after_an_error_inside():
    model = saturating_chain()
    x = RNG.normal(size=(4, 5)).astype("float32")
    before = model.predict(x, verbose=0)
    activations = [(layer, vars(layer).get("activation")) for layer in model.layers]
    targets = tfprune.prunable_weights(model)
    first = tfprune.scores.synflow(model, targets, rescale=False)
    second = tfprune.scores.synflow(model, targets, rescale=False)  # the cached, traced step
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="inside"):
        with linearized(model):
            assert not np.allclose(np.asarray(model(x)), before)  # really changed inside
            raise RuntimeError("inside")
    for layer, activation in activations:
        assert vars(layer).get("activation") is activation
    relu = next(layer for layer in model.layers if isinstance(layer, L.ReLU))
    assert (relu.max_value, relu.threshold) == (6.0, 0.0)
    assert not any("call" in vars(op) for op in model.operations)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    np.testing.assert_allclose(np.asarray(model(x)).sum(axis=1), 1.0, rtol=1e-6)  # softmax head back


def test_a_gate_counts_once_geometric_mean_of_its_factors():
    """x ⊙ σ(W_g x): with σ the identity and the product a geometric mean, R = Σ_j sqrt(h_j g_j)
    with h = 1|W_0|, g = h|W_g|; scores are w ∂R/∂w (derived here in float64)."""
    w0, wg, w1 = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 4)), RNG.normal(size=(4, 2))
    inputs = keras.Input((3,))
    h = L.Dense(4, use_bias=False)(inputs)
    gate = L.Dense(4, use_bias=False, activation="sigmoid")(h)
    outputs = L.Dense(2, use_bias=False)(L.Multiply()([h, gate]))
    model = keras.Model(inputs, outputs)
    model.set_weights([w.astype("float32") for w in (w0, wg, w1)])
    a0, ag, a1 = np.abs(w0), np.abs(wg), np.abs(w1)
    hv = a0.sum(axis=0)
    g = hv @ ag
    m = np.sqrt(hv * g)
    dm = a1.sum(axis=1)  # ∂R/∂m
    dg = dm * 0.5 * np.sqrt(hv / g)
    dh = dm * 0.5 * np.sqrt(g / hv) + ag @ dg
    expected = [a0 * dh[None, :], ag * np.outer(hv, dg), a1 * m[:, None]]
    scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model), rescale=False)
    for s, e in zip(scores, expected):
        np.testing.assert_allclose(s, e, rtol=1e-5)
    np.testing.assert_allclose(scores[2].sum(), scores[0].sum(), rtol=1e-5)  # degree 1: flow conserved


def test_every_embedding_row_is_scored_as_with_the_all_ones_one_hot_input():
    """Embedding(V, d) → mean over tokens → Dense: h = Σ_i |E_i| (every token at once),
    s_E[i, j] = |E[i, j]| Σ_k |W[j, k]|, s_W[j, k] = h_j |W[j, k]|."""
    inputs = keras.Input((4,), dtype="int32")
    x = L.Embedding(7, 3, mask_zero=True)(inputs)
    outputs = L.Dense(2, use_bias=False, activation="softmax")(L.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    embedding, kernel = [np.abs(w) for w in model.get_weights()]
    expected = [embedding * kernel.sum(axis=1)[None, :], embedding.sum(axis=0)[:, None] * kernel]
    scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model), rescale=False)
    for s, e in zip(scores, expected):
        np.testing.assert_allclose(s, e, rtol=1e-5)
    assert (scores[0] > 0).all()


def test_layer_normalization_counts_as_its_scale_and_shift():
    """Dense → LayerNormalization → Dense: y = |γ| ⊙ (1|W0|) + |β|, s_W0[i, j] = |W0[i, j]| |γ_j| c_j
    with c = |W1| 1, s_W1[j, k] = y_j |W1[j, k]| (float64)."""
    w0, gamma, beta, w1 = RNG.normal(size=(5, 4)), RNG.normal(size=4), RNG.normal(size=4), RNG.normal(size=(4, 3))
    inputs = keras.Input((5,))
    x = L.LayerNormalization()(L.Dense(4, use_bias=False)(inputs))
    model = keras.Model(inputs, L.Dense(3, use_bias=False, activation="softmax")(x))
    model.set_weights([w.astype("float32") for w in (w0, gamma, beta, w1)])
    a0, a1 = np.abs(w0), np.abs(w1)
    y = np.abs(gamma) * a0.sum(axis=0) + np.abs(beta)
    expected = [a0 * (np.abs(gamma) * a1.sum(axis=1))[None, :], y[:, None] * a1]
    scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model), rescale=False)
    for s, e in zip(scores, expected):
        np.testing.assert_allclose(s, e, rtol=1e-5)


def test_embedding_lstm_scores_are_finite_and_reach_every_row():
    """LSTM gates stay sigmoids (bounded), its tanh becomes the identity: finite, positive scores."""
    inputs = keras.Input((10,), dtype="int32")
    x = L.LSTM(8)(L.Embedding(100, 8, mask_zero=True)(inputs))
    model = keras.Model(inputs, L.Dense(2, activation="softmax")(x))
    scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model))
    for s in scores:
        assert np.isfinite(s).all() and s.min() > 0
    assert (scores[0].sum(axis=1) > 0).all()  # all 100 embedding rows


def test_attention_query_and_key_kernels_are_scored():
    """Linear attention on identical tokens, bias-free: R is of degree 1 in each kernel, so each
    kernel's scores sum to R (Euler), R re-derived in float64."""
    tokens, width, heads, key_dim = 4, 6, 2, 3
    inputs = keras.Input((tokens, width))
    attention = L.MultiHeadAttention(heads, key_dim, use_bias=False)
    outputs = L.Dense(2, use_bias=False)(L.Flatten()(attention(inputs, inputs)))
    model = keras.Model(inputs, outputs)
    wq, wk, wv, wo, w = [np.abs(v.numpy()).astype(np.float64) for v in model.trainable_variables]
    x = np.ones((tokens, width))
    q, k, v = (np.einsum("td,dhe->the", x, m) for m in (wq, wk, wv))
    weights = np.einsum("the,she->hts", q, k) / np.sqrt(key_dim)
    out = np.einsum("hts,she,hed->td", weights, v, wo)
    flow = (out.reshape(-1) @ w).sum()
    targets = tfprune.prunable_weights(model)
    scores = tfprune.scores.synflow(model, targets, rescale=False)
    assert [t.kind for t in targets] == ["attention"] * 4 + ["dense"]
    for t, s in zip(targets, scores):
        assert s.min() > 0 and s.max() > s.min(), t.name
        np.testing.assert_allclose(s.sum(), flow, rtol=1e-4)


def test_all_equal_scores_warn_naming_the_tensor():
    """A layer behind an all-zero layer gets no flow: its 4 weights all score 0."""
    inputs = keras.Input((3,))
    dead = L.Dense(2, use_bias=False, kernel_initializer="zeros", name="dead")(inputs)
    outputs = L.Dense(2, use_bias=False, name="after_dead")(dead)
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match=r"cannot rank .*after_dead/kernel \(all 4 kept weights score 0\)"):
        scores = tfprune.scores.synflow(model, tfprune.prunable_weights(model))
    np.testing.assert_array_equal(scores[1], np.zeros((2, 2)))


APPLICATIONS = {
    "MobileNetV2": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35,
                                                          classes=10),
    "ResNet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10),
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10),
    # include_preprocessing=True (the default): Rescaling(1/127.5, offset=-1) first, linearised for the score
    "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3), classes=10),
}


@pytest.mark.parametrize("name, rounds", [
    ("MobileNetV2", 5),
    ("MobileNetV3Small", 5),
    pytest.param("ResNet50", 20, marks=pytest.mark.slow),
    pytest.param("EfficientNetB0", 5, marks=pytest.mark.slow),
])
def test_synflow_on_applications_scores_every_tensor_and_empties_none(name, rounds):
    """Softmax heads, ReLU6, swish, squeeze-excitation gates: sparsity 0.9 ranks every tensor and
    keeps every tensor and the output alive. Fewer rounds than the default 100 (minutes on CPU);
    ResNet50 at 32×32 needs 20: with 5 its conv5_block1 branch goes (the shortcut carries on)."""
    model = APPLICATIONS[name]()
    targets = tfprune.prunable_weights(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = tfprune.scores.synflow(model, targets)
        pruned = tfprune.prune_at_init(model, "synflow", sparsity=0.9, rounds=rounds, verbose=0)
    assert not [w for w in caught if "cannot rank" in str(w.message) or w.category is tfprune.CollapseWarning]
    for t, s in zip(targets, scores):
        assert np.isfinite(s).all() and s.max() > s.min(), t.name
    masks = tfprune.get_masks(pruned)
    assert tfprune.masks.collapsed_layers(masks) == []
    kept = sum(int(m.sum()) for m in masks)
    assert kept == tfprune.masks.kept_count(0.1, sum(m.size for m in masks))
    assert connected_outputs(pruned) == [True]
