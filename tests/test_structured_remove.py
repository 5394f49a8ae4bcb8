"""Physical removal: the smaller model computes what the original computes when nothing of the
removed channels reaches their consumers, and its parameters and MACs are the hand-counted ones."""

import keras
import numpy as np
import pytest
from helpers import assert_same_outputs, zeroed_copy

import tfprune
from tfprune.structured import dependency_graph, remove

L = keras.layers


def randomize(model, seed=0):
    """Non-trivial weights: random biases, β and moving means, γ and moving variances in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.name in ("gamma", "moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif v.name in ("beta", "moving_mean", "bias"):
            v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    return model


def reference(model, zero_rows):
    """A copy of ``model`` whose consumers ignore the removed channels: ``{(layer, weight): (axis,
    indices)}`` entries of those weights are set to zero."""
    paths = {(name, weight): next(v.path for v in model.get_layer(name).weights if v.name == weight)
             for name, weight in zero_rows}
    return zeroed_copy(model, {paths[key]: entry for key, entry in zero_rows.items()})


def inputs_for(model, n=4, seed=1):
    shape = model.inputs[0].shape[1:]
    return np.random.default_rng(seed).normal(0, 0.5, (n, *shape)).astype("float32")


# ---------------------------------------------------------------- (a) a plain CNN with BN


def plain_cnn():
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(6, 3, padding="same", name="conv1")(inputs)))
    x = L.ReLU()(L.BatchNormalization(name="bn2")(L.Conv2D(8, 3, padding="same", name="conv2")(x)))
    x = L.Flatten()(L.MaxPooling2D(2)(x))  # (4, 4, 8) -> 128
    x = L.Dense(10, activation="relu", name="fc")(x)
    return randomize(keras.Model(inputs, L.Dense(4, name="out")(x), name="plain_cnn"))


PLAIN_UNITS = {"conv1": [1, 4], "conv2": [0, 3, 7], "fc": [2, 5]}


def plain_params(c1, c2, f):
    """conv1 3x3x3 + bias, BN (4 per channel), conv2 3x3xc1 + bias, BN, fc on 4x4xc2, out."""
    return (27 * c1 + c1) + 4 * c1 + (9 * c1 * c2 + c2) + 4 * c2 + (16 * c2 * f + f) + (f * 4 + 4)


def test_plain_cnn_equivalence_and_params():
    model = plain_cnn()
    smaller = remove(model, PLAIN_UNITS)
    flat_rows = [p * 8 + c for p in range(16) for c in (0, 3, 7)]  # Flatten of (4, 4, 8): p·C + c
    ref = reference(model, {
        ("conv2", "kernel"): (2, [1, 4]),
        ("fc", "kernel"): (0, flat_rows),
        ("out", "kernel"): (0, [2, 5]),
    })
    assert_same_outputs(smaller, ref, inputs_for(model))
    assert model.count_params() == plain_params(6, 8, 10) == 1998
    assert smaller.count_params() == plain_params(4, 5, 8) == 1017
    assert smaller.get_layer("conv2").kernel.shape == (3, 3, 4, 5)
    assert smaller.get_layer("bn2").moving_variance.shape == (5,)
    assert smaller.get_layer("fc").kernel.shape == (80, 8)
    # The kept weights are the original ones, in order.
    np.testing.assert_array_equal(
        smaller.get_layer("conv2").kernel.numpy(),
        model.get_layer("conv2").kernel.numpy()[:, :, [0, 2, 3, 5]][..., [1, 2, 4, 5, 6]],
    )
    np.testing.assert_array_equal(
        smaller.get_layer("bn1").moving_mean.numpy(), model.get_layer("bn1").moving_mean.numpy()[[0, 2, 3, 5]]
    )


def test_plain_cnn_macs_drop_by_hand_count():
    model = plain_cnn()
    smaller = remove(model, PLAIN_UNITS)

    def macs(c1, c2, f):  # same-padded 8x8 convolutions: 64 output positions
        return 27 * c1 * 64 + 9 * c1 * c2 * 64 + 16 * c2 * f + f * 4

    before = tfprune.profile(model, verbose=0).total
    after = tfprune.profile(smaller, verbose=0).total
    assert before.macs == macs(6, 8, 10) == 39336
    assert after.macs == macs(4, 5, 8) == 19104
    assert before.macs - after.macs == 20232
    assert after.params == smaller.count_params()


def test_saves_loads_compiles_and_trains(tmp_path):
    model = plain_cnn()
    smaller = remove(model, PLAIN_UNITS)
    x = inputs_for(model)
    path = tmp_path / "smaller.keras"
    smaller.save(path)
    loaded = keras.models.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), np.asarray(smaller(x, training=False)))
    loaded.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = loaded.get_layer("fc").kernel.numpy().copy()
    loaded.fit(x, np.array([0, 1, 2, 3]), epochs=1, verbose=0)
    assert not np.allclose(loaded.get_layer("fc").kernel.numpy(), before)


def test_original_model_unchanged_and_independent():
    model = plain_cnn()
    weights = [w.copy() for w in model.get_weights()]
    smaller = remove(model, PLAIN_UNITS)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.count_params() == 1998
    smaller.get_layer("out").bias.assign(np.zeros(4, "float32"))  # new variables, not shared
    np.testing.assert_array_equal(model.get_layer("out").bias.numpy(), weights[-1])


def test_empty_removal_is_a_copy():
    model = plain_cnn()
    copy = remove(model, {})
    x = inputs_for(model)
    np.testing.assert_array_equal(np.asarray(copy(x, training=False)), np.asarray(model(x, training=False)))


# ---------------------------------------------------------------- (b) residual network


def resnet14_params(s1, m11, m12, s2, m21, m22, s3, m31, m32, classes=5):
    """3x3 convs without bias + BN (4 per channel); projections 1x1 + BN where the width changes."""
    def block(c_in, mid, c_out, projection):
        return 9 * c_in * mid + 4 * mid + 9 * mid * c_out + 4 * c_out + (c_in * c_out + 4 * c_out) * projection

    return (
        27 * s1 + 4 * s1
        + block(s1, m11, s1, 0) + block(s1, m12, s1, 0)
        + block(s1, m21, s2, 1) + block(s2, m22, s2, 0)
        + block(s2, m31, s3, 1) + block(s3, m32, s3, 0)
        + s3 * classes + classes
    )


def test_resnet_equivalence_and_params():
    model = randomize(tfprune.models.resnet_cifar(14, input_shape=(8, 8, 3), num_classes=5))
    units = {
        "block1_2_conv2": [1, 7],  # the stage-1 stream: conv1 and every block's conv2
        "block1_1_conv1": [0],
        "block2_1_shortcut": [3],  # the stage-2 stream, named through two of its producers:
        "block2_2_conv2": [3, 10],  # merged to {3, 10}
        "block3_2_conv1": [4, 5, 6],
    }
    smaller = remove(model, units)
    ref = reference(model, {
        **{(name, "kernel"): (2, [1, 7])
           for name in ("block1_1_conv1", "block1_2_conv1", "block2_1_conv1", "block2_1_shortcut")},
        ("block1_1_conv2", "kernel"): (2, [0]),
        **{(name, "kernel"): (2, [3, 10]) for name in ("block2_2_conv1", "block3_1_conv1", "block3_1_shortcut")},
        ("block3_2_conv2", "kernel"): (2, [4, 5, 6]),
    })
    assert_same_outputs(smaller, ref, inputs_for(model))
    assert model.count_params() == resnet14_params(16, 16, 16, 32, 32, 32, 64, 64, 64)
    assert smaller.count_params() == resnet14_params(14, 15, 16, 30, 32, 32, 64, 64, 61)
    for name in ("conv1", "block1_1_conv2", "block1_2_conv2"):
        assert smaller.get_layer(name).kernel.shape[-1] == 14
    assert smaller.get_layer("block2_1_shortcut").kernel.shape == (1, 1, 14, 30)
    assert smaller.get_layer("block2_1_shortcut_bn").gamma.shape == (30,)


# ---------------------------------------------------------------- (c) concatenate, depthwise, separable


def concat_net():
    inputs = keras.Input((6, 6, 3))
    a = L.ReLU()(L.BatchNormalization(name="a_bn")(L.Conv2D(4, 1, name="a")(inputs)))
    b = L.Conv2D(5, 3, padding="same", name="b")(inputs)
    b = L.BatchNormalization(name="b_bn")(L.DepthwiseConv2D(3, padding="same", name="b_dw")(b))
    c = L.BatchNormalization(name="cat_bn")(L.Concatenate(name="cat")([a, b]))  # a at 0-3, b at 4-8
    y = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(c)  # reads 2c, 2c + 1
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2")(y)  # 2s, 2s + 1
    h = L.Concatenate(name="cat2")([L.GlobalAveragePooling2D()(y), L.GlobalAveragePooling2D()(c)])  # 12 + 9
    return randomize(keras.Model(inputs, L.Dense(4, name="out")(h)))


def concat_params(a, b, s):
    c = a + b
    return (
        (3 * a + a) + 4 * a  # a, a_bn
        + (27 * b + b) + (9 * b + b) + 4 * b  # b, b_dw, b_bn
        + 4 * c  # cat_bn
        + (9 * c * 2 + 2 * c * s + s)  # sep: depthwise, pointwise, bias
        + (9 * s * 2 + 2 * s)  # dw2
        + (2 * s + c) * 4 + 4  # out
    )


def test_concat_depthwise_separable_equivalence_and_params():
    model = concat_net()
    smaller = remove(model, {"a": [1], "b": [0, 3], "sep": [2, 5]})
    concat_channels = [1, 4 + 0, 4 + 3]
    ref = reference(model, {
        ("sep", "pointwise_kernel"): (2, sorted(2 * c + m for c in concat_channels for m in (0, 1))),
        ("out", "kernel"): (0, [2 * 2, 2 * 2 + 1, 2 * 5, 2 * 5 + 1] + [12 + c for c in concat_channels]),
    })
    assert_same_outputs(smaller, ref, inputs_for(model))
    assert model.count_params() == concat_params(4, 5, 6) == 762
    assert smaller.count_params() == concat_params(3, 3, 4) == 474
    assert smaller.get_layer("sep").depthwise_kernel.shape == (3, 3, 6, 2)
    assert smaller.get_layer("dw2").kernel.shape == (3, 3, 4, 2)


# ---------------------------------------------------------------- (d) Dense stack after Flatten (Sequential)


def dense_stack():
    model = keras.Sequential([
        keras.Input((5, 3)),
        L.Conv1D(4, 2, name="conv"),  # (4, 4)
        L.Flatten(name="flat"),  # 16 = 4 positions x 4 channels
        L.Dense(7, activation="relu", name="fc1"),
        L.BatchNormalization(name="bn"),
        L.Dropout(0.5),
        L.Dense(6, activation="tanh", name="fc2"),
        L.Dense(3, name="out"),
    ], name="dense_stack")
    return randomize(model)


def dense_params(c, f1, f2):
    return (2 * 3 * c + c) + (4 * c * f1 + f1) + 4 * f1 + (f1 * f2 + f2) + (f2 * 3 + 3)


def test_dense_stack_after_flatten_equivalence_and_params():
    model = dense_stack()
    smaller = remove(model, {"conv": [1, 2], "fc1": [0, 6], "fc2": [5]})
    assert isinstance(smaller, keras.Sequential)
    ref = reference(model, {
        ("fc1", "kernel"): (0, [p * 4 + c for p in range(4) for c in (1, 2)]),
        ("fc2", "kernel"): (0, [0, 6]),
        ("out", "kernel"): (0, [5]),
    })
    assert_same_outputs(smaller, ref, inputs_for(model))
    assert model.count_params() == dense_params(4, 7, 6) == 244
    assert smaller.count_params() == dense_params(2, 5, 5) == 127
    np.testing.assert_array_equal(
        smaller.get_layer("fc1").kernel.numpy(),
        model.get_layer("fc1").kernel.numpy()[[0, 3, 4, 7, 8, 11, 12, 15]][:, 1:6],
    )


# ---------------------------------------------------------------- more layer types


def test_transpose_conv_and_squeeze_excitation():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = L.Conv2DTranspose(5, 3, strides=2, padding="same", name="up")(x)  # kernel (3, 3, out, in)
    s = L.Dense(3, activation="relu", name="squeeze")(L.GlobalAveragePooling2D()(x))
    s = L.Dense(5, activation="sigmoid", name="excite")(s)  # joins "up": x * s channel by channel
    x = L.Multiply()([x, s])
    model = randomize(keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x))))
    smaller = remove(model, {"conv": [0, 5], "up": [1, 3], "squeeze": [2]})
    ref = reference(model, {
        ("up", "kernel"): (3, [0, 5]),
        ("squeeze", "kernel"): (0, [1, 3]),
        ("out", "kernel"): (0, [1, 3]),
        ("excite", "kernel"): (0, [2]),
    })
    assert_same_outputs(smaller, ref, inputs_for(model))

    def params(c, u, q):
        return (27 * c + c) + (9 * c * u + u) + (u * q + q) + (q * u + u) + (u * 2 + 2)

    assert model.count_params() == params(6, 5, 3) == 493
    assert smaller.count_params() == params(4, 3, 2) == 248
    assert smaller.get_layer("up").kernel.shape == (3, 3, 3, 4)


def test_layer_normalization_loses_the_channels_weights():
    inputs = keras.Input((5,))
    x = L.LayerNormalization(name="ln")(L.Dense(6, name="fc1")(inputs))
    model = randomize(keras.Model(inputs, L.Dense(2, name="out")(L.Dense(4, name="fc2")(x))))
    smaller = remove(model, {"fc1": [0, 2]})
    kept = model.get_layer("ln").gamma.numpy()[[1, 3, 4, 5]]
    np.testing.assert_array_equal(smaller.get_layer("ln").gamma.numpy(), kept)
    assert smaller.count_params() == model.count_params() - 2 * (5 + 1) - 2 * 2 - 2 * 4


# ---------------------------------------------------------------- validation


def test_removing_the_last_unit_raises():
    model = plain_cnn()
    with pytest.raises(ValueError, match=r"never removed, so remove at most 5"):
        remove(model, {"conv1": list(range(6))})
    resnet = tfprune.models.resnet_cifar(8, input_shape=(8, 8, 3))
    # 16 channels of one group, given through two of its producers.
    with pytest.raises(ValueError, match=r"cannot remove 16 of the 16 channels.*at most 15"):
        remove(resnet, {"conv1": list(range(8)), "block1_1_conv2": list(range(8, 16))})
    assert remove(resnet, {"conv1": list(range(8)), "block1_1_conv2": list(range(8, 15))}).get_layer(
        "conv1").kernel.shape[-1] == 1


@pytest.mark.parametrize("units, message", [
    ({"nope": [0]}, r"no layer named 'nope' in model 'plain_cnn'"),
    ({"bn1": [0]}, r"layer 'bn1' \(BatchNormalization\) does not produce channels"),
    ({"conv1": [6]}, r"channels \[6\] of layer 'conv1' are out of range: it has 6 channels"),
    ({"conv1": [-1]}, r"channels \[-1\] of layer 'conv1' are out of range"),
    ({"conv1": [2, 2]}, r"channels \[2\] of layer 'conv1' are given more than once"),
    ({"conv1": [1.0]}, r"must be integers"),
    ({"conv1": 1}, r"must be a list of integers"),
    ({"out": [0]}, r"'out' cannot be removed.*not prunable: it reaches the model output \(layer 'out'\)"),
    ([("conv1", 0)], r"units must be a dict"),
])
def test_invalid_units_raise_and_leave_the_model_unchanged(units, message):
    model = plain_cnn()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=message):
        remove(model, units)
    assert model.count_params() == 1998
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_unsupported_layer_blocks_removal():
    inputs = keras.Input((6,))
    x = L.Lambda(lambda t: 2 * t, name="lam")(L.Dense(5, name="fc1")(inputs))
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Dense(4, name="fc2")(x)))
    with pytest.raises(ValueError, match=r"not prunable: it is read by unsupported layer 'lam'"):
        remove(model, {"fc1": [0]})
    smaller = remove(model, {"fc2": [1]})  # the rest of the model can still shrink
    assert smaller.count_params() == model.count_params() - (5 + 1) - 2


def test_wrapped_model_raises():
    wrapped = tfprune.wrap(plain_cnn())
    with pytest.raises(ValueError, match=r"tfprune\.strip\(model\) first"):
        remove(wrapped, {"conv1": [0]})


def test_graph_removal_helper_round_trip():
    model = plain_cnn()
    graph = dependency_graph(model)
    pairs = [(graph.group_of(name), c) for name, channels in PLAIN_UNITS.items() for c in channels]
    assert graph.removal(pairs) == PLAIN_UNITS
    assert len(graph.units()) == 6 + 8 + 10
    assert remove(model, graph.removal(pairs)).count_params() == 1017
