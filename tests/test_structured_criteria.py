"""Unit relevance criteria (l1, l2, taylor, SInGE) against independent float64 / tape derivations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.structured import criteria

L = keras.layers
RNG = np.random.default_rng(0)

# --- a tiny MLP and its loss gradient written out in NumPy float64 --------------------------------

MLP_W = [RNG.normal(size=(5, 4)), RNG.normal(size=4) * 0.3, RNG.normal(size=(4, 3)), RNG.normal(size=3) * 0.3]
MLP_X = RNG.normal(size=(12, 5)).astype("float32")
MLP_Y = RNG.integers(0, 3, 12)


def mlp():
    inputs = keras.Input((5,))
    h = L.Dense(4, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, L.Dense(3, name="logits")(h), name="mlp")
    model.set_weights([w.astype("float32") for w in MLP_W])
    return model


def np_loss_grads(w, x, y):
    """Mean softmax cross-entropy of the MLP ``w`` on (x, y) and its gradient w.r.t. every weight."""
    k1, b1, k2, b2 = w
    x = x.astype(np.float64)
    z = x @ k1 + b1
    h = np.maximum(z, 0)
    logits = h @ k2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[y]
    loss = -np.mean(np.log((p * onehot).sum(1)))
    d_logits = (p - onehot) / len(x)
    dz = (d_logits @ k2.T) * (z > 0)
    return loss, [x.T @ dz, dz.sum(0), h.T @ d_logits, d_logits.sum(0)]


def np_unit(w, layer):
    """The (kernel, bias) pair of MLP layer 0 or 1 as float64 arrays."""
    return w[2 * layer], w[2 * layer + 1]


def np_rows(kernel, bias):
    return np.concatenate([kernel, bias[None]], axis=0).T  # (units, in + 1)


def scaled(w, layer, scale):
    """``w`` with the units of ``layer`` scaled by ``scale`` (a vector over its units)."""
    out = [a.copy() for a in w]
    out[2 * layer] = out[2 * layer] * scale
    out[2 * layer + 1] = out[2 * layer + 1] * scale
    return out


def np_singe(w, layer, mu, weights, mode):
    kernel, bias = np_unit(w, layer)
    units = kernel.shape[1]
    norms = np.zeros(units)
    for n in range(units):
        for m, ws in zip(mu, weights):
            scale = np.full(units, m) if mode == "layer" else np.where(np.arange(units) == n, m, 1.0)
            g = np_loss_grads(scaled(w, layer, scale), MLP_X, MLP_Y)[1]
            norms[n] += ws * np.linalg.norm(np_rows(g[2 * layer], g[2 * layer + 1])[n])
    return np.linalg.norm(np_rows(kernel, bias), axis=1) * norms


# --- a CNN with every producer kind ---------------------------------------------------------------


def cnn():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    x = L.SeparableConv2D(3, 3, padding="same", name="sep")(x)
    x = L.Conv2DTranspose(3, 2, name="convt")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(5, activation="tanh", name="hidden")(x)
    model = keras.Model(inputs, L.Dense(3, name="logits")(x), name="cnn")
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in model.get_weights()])
    bn = model.get_layer("bn")
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=4).astype("float32"))  # positive variances
    return model


CNN_X = RNG.normal(size=(16, 6, 6, 3)).astype("float32")
CNN_Y = RNG.integers(0, 3, 16)


def numpy_weights(model):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]


def clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def unit_vars(model, name):
    layer = model.get_layer(name)
    kernel = layer.pointwise_kernel if isinstance(layer, L.SeparableConv2D) else layer.kernel
    axis = -2 if isinstance(layer, L.Conv2DTranspose) else -1
    return kernel, layer.bias, axis


def tape_rows(model, name, x, y):
    """Rows (units, weights per unit) of the mean-loss gradient of layer ``name``, by a plain tape."""
    kernel, bias, axis = unit_vars(model, name)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=False))
    gk, gb = tape.gradient(loss, [kernel, bias])
    return rows_by_loop(gk.numpy(), gb.numpy(), axis)


def rows_by_loop(kernel, bias, axis):
    """Each unit's weights, gathered one unit at a time (``kernel[..., n]`` or ``kernel[..., n, :]``)."""
    units = kernel.shape[axis]
    picks = [kernel[..., n] if axis == -1 else kernel[..., n, :] for n in range(units)]
    return np.stack([np.concatenate([k.ravel(), [b]]) for k, b in zip(picks, bias)]).astype(np.float64)


def model_loss(model, x, y):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(loss_fn(y, model(x, training=False)))


def removed_loss(model, name, unit, x, y):
    """The loss with unit ``unit`` of layer ``name`` actually set to zero in a clone."""
    copy = clone(model)
    kernel, bias, axis = unit_vars(copy, name)
    k = kernel.numpy()
    if axis == -1:
        k[..., unit] = 0
    else:
        k[..., unit, :] = 0
    b = bias.numpy()
    b[unit] = 0
    kernel.assign(k)
    bias.assign(b)
    return model_loss(copy, x, y)


# --- data-free criteria ---------------------------------------------------------------------------


def test_l1_l2_match_numpy_per_unit_for_every_producer_kind():
    model = cnn()
    got_l1, got_l2 = criteria.l1(model), criteria.l2(model)
    assert list(got_l1) == ["conv", "sep", "convt", "hidden", "logits"]
    for name in got_l1:
        kernel, bias, axis = unit_vars(model, name)
        rows = rows_by_loop(kernel.numpy().astype(np.float64), bias.numpy().astype(np.float64), axis)
        np.testing.assert_allclose(got_l1[name], [np.sum(np.abs(r)) for r in rows], rtol=1e-12)
        np.testing.assert_allclose(got_l2[name], [np.sqrt(np.sum(r * r)) for r in rows], rtol=1e-12)
        assert got_l1[name].dtype == np.float64 and got_l1[name].shape == (kernel.shape[axis],)
    # the separable layer's depthwise kernel is not part of its units
    assert got_l1["sep"].shape == (3,)


def test_l1_without_bias_and_conv1d():
    inputs = keras.Input((7, 2))
    x = L.Conv1D(3, 2, use_bias=False, name="c1")(inputs)
    model = keras.Model(inputs, L.Dense(2, use_bias=False, name="d")(L.Flatten()(x)))
    k = model.get_layer("c1").kernel.numpy().astype(np.float64)
    np.testing.assert_allclose(criteria.l1(model, "c1")["c1"], [np.abs(k[..., n]).sum() for n in range(3)],
                               rtol=1e-12)
    d = model.get_layer("d").kernel.numpy().astype(np.float64)
    np.testing.assert_allclose(criteria.l2(model, ["d"])["d"], np.sqrt((d ** 2).sum(0)), rtol=1e-12)


# --- taylor ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 5])
def test_taylor_matches_numpy_rederivation(batch_size):
    """‖W_n ⊙ ∇_{W_n} L‖ with L the mean loss over all 12 examples (batches 5, 5, 2 weighted by size)."""
    model = mlp()
    got = criteria.taylor(model, ["hidden", "logits"], (MLP_X, MLP_Y), batch_size=batch_size)
    g = np_loss_grads(MLP_W, MLP_X, MLP_Y)[1]
    for layer, name in enumerate(["hidden", "logits"]):
        w = np_rows(*np_unit(MLP_W, layer))
        expected = np.sqrt(((w * np_rows(g[2 * layer], g[2 * layer + 1])) ** 2).sum(1))
        np.testing.assert_allclose(got[name], expected, rtol=1e-4, atol=1e-9)


def test_taylor_matches_tape_on_a_clone_in_inference_mode():
    model = cnn()
    got = criteria.taylor(model, None, (CNN_X, CNN_Y), batch_size=8)
    copy = clone(model)
    for name, scores in got.items():
        kernel, bias, axis = unit_vars(model, name)
        w = rows_by_loop(kernel.numpy(), bias.numpy(), axis)
        expected = np.linalg.norm(w * tape_rows(copy, name, CNN_X, CNN_Y), axis=1)
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-9, err_msg=name)


# --- integrated gradients: completeness -----------------------------------------------------------


def completeness_gap(model, name, unit, x, y, steps, path="uniform"):
    a = criteria.integrated_gradients(model, name, unit, (x, y), steps=steps, path=path)
    return sum(float(v.sum()) for v in a.values()) - (model_loss(model, x, y) - removed_loss(model, name, unit, x, y))


@pytest.mark.parametrize("name, unit", [("hidden", 1), ("logits", 2)])
def test_completeness_on_dense_relu_dense(name, unit):
    model = mlp()
    delta = model_loss(model, MLP_X, MLP_Y) - removed_loss(model, name, unit, MLP_X, MLP_Y)
    assert abs(delta) > 1e-3
    gaps = {s: abs(completeness_gap(model, name, unit, MLP_X, MLP_Y, s)) for s in (8, 64, 256)}
    assert gaps[64] < gaps[8] / 4
    assert gaps[256] < 1e-2 * abs(delta)
    midpoint = abs(completeness_gap(model, name, unit, MLP_X, MLP_Y, 16, "midpoint"))
    assert midpoint < gaps[64]  # second order where L(μ) is smooth


def test_completeness_on_conv_batchnorm():
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(3, 3, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, L.Dense(3, name="logits")(x))
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    model.get_layer("bn").moving_variance.assign(np.array([0.5, 1.0, 2.0], "float32"))
    x, y = CNN_X[:, :, :, :2], CNN_Y
    delta = model_loss(model, x, y) - removed_loss(model, "conv", 1, x, y)
    assert abs(delta) > 1e-3
    gaps = {s: abs(completeness_gap(model, "conv", 1, x, y, s)) for s in (8, 64, 256)}
    assert gaps[64] < gaps[8] / 4
    assert gaps[256] < 1e-2 * abs(delta)


def test_integrated_gradients_shapes_and_bias():
    model = cnn()
    a = criteria.integrated_gradients(model, "convt", 2, (CNN_X, CNN_Y), steps=2)
    assert set(a) == {"kernel", "bias"}
    assert a["kernel"].shape == (2, 2, 3) and a["bias"].shape == () and a["kernel"].dtype == np.float64
    sep = criteria.integrated_gradients(model, model.get_layer("sep"), 0, (CNN_X, CNN_Y), steps=2)
    assert set(sep) == {"pointwise_kernel", "bias"} and sep["pointwise_kernel"].shape == (1, 1, 4)


# --- SInGE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["unit", "layer"])
def test_singe_matches_numpy_rederivation(mode):
    model = mlp()
    mu, weights = np.arange(1, 4) / 3, np.full(3, 1 / 3)
    got = criteria.singe(model, ["hidden", "logits"], (MLP_X, MLP_Y), steps=3, mode=mode)
    for layer, name in enumerate(["hidden", "logits"]):
        np.testing.assert_allclose(got[name], np_singe(MLP_W, layer, mu, weights, mode), rtol=1e-4, atol=1e-9)


def test_singe_geometric_path_weights():
    mu, weights = criteria.riemann_path(3, "geometric", ratio=0.5)
    np.testing.assert_allclose(mu, [0.5, 0.25, 0.125])
    np.testing.assert_allclose(weights, [4 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(criteria.riemann_path(4, "midpoint")[0], [0.125, 0.375, 0.625, 0.875])
    model = mlp()
    got = criteria.singe(model, "hidden", (MLP_X, MLP_Y), steps=3, path="geometric", ratio=0.5, mode="unit")
    np.testing.assert_allclose(got["hidden"], np_singe(MLP_W, 0, [0.5, 0.25, 0.125], [4 / 7, 2 / 7, 1 / 7], "unit"),
                               rtol=1e-4, atol=1e-9)


def tape_singe(model, name, mu, weights, mode):
    """‖W_n‖ · Σ_s w_s ‖∇_{W_n} L‖ with the scaled weights really assigned in a clone."""
    copy = clone(model)
    kernel, bias, axis = unit_vars(copy, name)
    k0, b0 = kernel.numpy(), bias.numpy()
    units = b0.shape[0]
    norms = np.zeros(units)
    for n in range(units):
        for m, ws in zip(mu, weights):
            scale = np.full(units, m) if mode == "layer" else np.where(np.arange(units) == n, m, 1.0)
            kernel.assign((k0 * (scale if axis == -1 else scale[:, None])).astype("float32"))
            bias.assign((b0 * scale).astype("float32"))
            norms[n] += ws * np.linalg.norm(tape_rows(copy, name, CNN_X, CNN_Y)[n])
    return np.linalg.norm(rows_by_loop(k0, b0, axis), axis=1) * norms


@pytest.mark.parametrize("name, mode", [("conv", "layer"), ("convt", "unit"), ("sep", "layer")])
def test_singe_matches_tape_with_assigned_weights(name, mode):
    model = cnn()
    got = criteria.singe(model, [name], (CNN_X, CNN_Y), steps=2, mode=mode, batch_size=8)
    np.testing.assert_allclose(got[name], tape_singe(model, name, [0.5, 1.0], [0.5, 0.5], mode), rtol=1e-4)


def test_scoring_writes_no_variable_and_compiles_once():
    model = cnn()
    before = numpy_weights(model)
    data = (CNN_X, CNN_Y)
    criteria.l1(model)
    criteria.taylor(model, None, data)
    criteria.singe(model, ["conv", "hidden"], data, steps=4)
    criteria.singe(model, ["convt"], data, steps=2, mode="unit")
    criteria.integrated_gradients(model, "sep", 1, data, steps=3)
    for a, b in zip(before, numpy_weights(model)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    steps = model.__dict__["_tfprune_compiled"]
    # a step runs eagerly in its first round and is traced once, in its second
    assert steps and any(f.rounds > 1 for f in steps.values())
    assert all(f.compiled.experimental_get_tracing_count() == (f.rounds > 1) for f in steps.values())


def test_registry():
    assert {"l1", "l2", "taylor", "singe"} <= set(criteria.available())
    assert not criteria.get("l2").needs_data and criteria.get("singe").needs_data
    model = mlp()
    got = criteria.get("singe")(model, ["hidden"], (MLP_X, MLP_Y), steps=2)
    np.testing.assert_allclose(got["hidden"], criteria.singe(model, ["hidden"], (MLP_X, MLP_Y), steps=2)["hidden"])

    def linf(model, layers=None, data=None):
        return {n: np.abs(w).max(1) for n, w in criteria.unit_weights(model, layers).items()}

    criteria.register("test_linf", linf)
    try:
        assert criteria.get("test_linf")(model, ["logits"])["logits"].shape == (3,)
        with pytest.raises(ValueError, match="already registered"):
            criteria.register("test_linf", lambda *a: {})
    finally:
        criteria._CRITERIA.entries.pop("test_linf")


def test_errors():
    model = mlp()
    data = (MLP_X, MLP_Y)
    with pytest.raises(ValueError, match="unknown criterion 'fisher'.*l1, l2, singe, taylor"):
        criteria.get("fisher")
    with pytest.raises(ValueError, match="needs data"):
        criteria.get("taylor")(model, ["hidden"])
    with pytest.raises(ValueError, match="needs data"):
        criteria.singe(model, ["hidden"])
    with pytest.raises(TypeError, match="takes no option"):
        criteria.get("l1")(model, ["hidden"], steps=3)
    with pytest.raises(TypeError, match="takes no option"):
        criteria.get("singe")(model, ["hidden"], data, stepz=3)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        criteria.l1(model, ["nope"])
    with pytest.raises(ValueError, match="not a producer"):
        criteria.l2(cnn(), ["bn"])
    with pytest.raises(ValueError, match="path must be one of 'uniform', 'midpoint', 'geometric', got 'linear'"):
        criteria.singe(model, ["hidden"], data, path="linear")
    with pytest.raises(ValueError, match="mode must be one of 'layer', 'unit', got 'joint'"):
        criteria.singe(model, ["hidden"], data, mode="joint")
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        criteria.singe(model, ["hidden"], data, steps=0)
    with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\), got 1.5"):
        criteria.singe(model, ["hidden"], data, path="geometric", ratio=1.5)
    with pytest.raises(ValueError, match="geometric path only"):
        criteria.singe(model, ["hidden"], data, ratio=0.5)
    with pytest.raises(ValueError, match=r"unit must be an integer in \[0, 4\)"):
        criteria.integrated_gradients(model, "hidden", 4, data)
    with pytest.raises(ValueError, match="wrapped"):
        criteria.l1(tfprune.wrap(mlp()))
