"""The channel dependency graph: groups, producers, pass-through layers, consumers, errors."""

import keras
import numpy as np
import pytest

import tfprune
from helpers import subclassed_mlp
from tfprune.structured import dependency_graph

L = keras.layers


def test_resnet_identity_stage_groups_every_conv_writing_the_stream():
    model = tfprune.models.resnet_cifar(14, input_shape=(8, 8, 3), num_classes=5)
    graph = dependency_graph(model)
    # Stage 1 keeps the stem's width: the stem and every block's second conv write one stream.
    stem = graph.group_of("block1_2_conv2")
    assert stem.producers == ("conv1", "block1_1_conv2", "block1_2_conv2")
    assert stem.size == 16 and stem.prunable and stem.reason == ""
    assert stem.passthrough == ("conv1_bn", "block1_1_conv2_bn", "block1_2_conv2_bn")
    # Read by both blocks' first convs and by the projection and first conv of stage 2.
    assert set(stem.consumers) == {"block1_1_conv1", "block1_2_conv1", "block2_1_conv1", "block2_1_shortcut"}
    # Stage 2 starts with a projection shortcut: it joins the stream of that stage.
    stage2 = graph.group_of("block2_2_conv2")
    assert set(stage2.producers) == {"block2_1_conv2", "block2_1_shortcut", "block2_2_conv2"}
    assert stage2.size == 32
    assert set(stage2.passthrough) == {"block2_1_conv2_bn", "block2_1_shortcut_bn", "block2_2_conv2_bn"}
    # A block's inner conv is a group of its own, read only by the block's second conv.
    inner = graph.group_of("block3_2_conv1")
    assert (inner.producers, inner.size, inner.consumers) == (("block3_2_conv1",), 64, ("block3_2_conv2",))
    assert inner.passthrough == ("block3_2_conv1_bn",)
    # 1 stem + 3 stages x (2 inner + 1 stream) - 1 (stem is stage 1's stream) + fc.
    assert len(graph.groups) == 1 + 3 * 2 + 2 + 1
    assert graph.unsupported == ()
    # Every producer lies in exactly one group.
    producers = [p for g in graph.groups for p in g.producers]
    convs = [layer.name for layer in model.layers if isinstance(layer, (L.Conv2D, L.Dense))]
    assert sorted(producers) == sorted(convs)


def test_output_layer_is_never_prunable():
    model = tfprune.models.resnet_cifar(8, input_shape=(8, 8, 3), num_classes=5)
    graph = dependency_graph(model)
    fc = graph.group_of("fc")
    assert not fc.prunable and fc.max_removable == 0
    assert fc.reason == "reaches the model output (layer 'fc')"
    assert all(g is fc or g.prunable for g in graph.groups)
    assert {g for g, _ in graph.units()} == set(graph.groups) - {fc}
    assert len(graph.units(prunable_only=False)) == sum(g.size for g in graph.groups)


def test_output_through_pass_through_layers_and_concat_is_not_prunable():
    inputs = keras.Input((4, 4, 2))
    a = L.Conv2D(3, 1, name="a")(inputs)
    b = L.Conv2D(5, 1, name="b")(inputs)
    c = L.Conv2D(6, 1, name="c")(inputs)
    cat = L.Concatenate(name="cat")([L.BatchNormalization(name="a_bn")(a), b])
    out = L.Activation("relu")(L.GlobalAveragePooling2D()(cat))
    model = keras.Model(inputs, [out, L.Dense(2, name="head")(L.Flatten()(c))])
    graph = dependency_graph(model)
    for name in ("a", "b"):
        assert "reaches the model output" in graph.group_of(name).reason
    assert graph.group_of("c").prunable
    assert graph.group_of("c").consumers == ("head",)


def test_concat_depthwise_and_separable():
    inputs = keras.Input((6, 6, 3))
    a = L.ReLU()(L.BatchNormalization(name="a_bn")(L.Conv2D(4, 1, name="a")(inputs)))
    b = L.Conv2D(5, 3, padding="same", name="b")(inputs)
    b = L.DepthwiseConv2D(3, padding="same", name="b_dw")(b)
    c = L.BatchNormalization(name="cat_bn")(L.Concatenate(name="cat")([a, b]))
    y = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(c)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2")(y)
    h = L.Concatenate(name="cat2")([L.GlobalAveragePooling2D()(y), L.GlobalMaxPooling2D()(c)])
    model = keras.Model(inputs, L.Dense(4, name="out")(h))
    graph = dependency_graph(model)
    a, b, sep = graph.group_of("a"), graph.group_of("b"), graph.group_of("sep")
    assert (a.size, b.size, sep.size) == (4, 5, 6)
    assert a.passthrough == ("a_bn", "cat_bn") and a.consumers == ("sep", "out")
    assert b.passthrough == ("b_dw", "cat_bn") and b.consumers == ("sep", "out")
    assert sep.passthrough == ("dw2",) and sep.consumers == ("out",)
    assert a.prunable and b.prunable and sep.prunable
    # Indices dropped from each weight axis: concat offsets, depth multipliers, concat of pools.
    dropped = graph.dropped({a.index: {1}, b.index: {0, 3}, sep.index: {2}})
    np.testing.assert_array_equal(dropped["cat_bn"]["in"], [1, 4 + 0, 4 + 3])
    np.testing.assert_array_equal(dropped["b_dw"]["in"], [0, 3])
    np.testing.assert_array_equal(dropped["sep"]["in"], [1, 4, 7])
    np.testing.assert_array_equal(dropped["sep"]["mid"], [2, 3, 8, 9, 14, 15])  # 2c, 2c + 1
    np.testing.assert_array_equal(dropped["sep"]["out"], [2])
    np.testing.assert_array_equal(dropped["dw2"]["out"], [4, 5])
    np.testing.assert_array_equal(dropped["out"]["in"], [4, 5, 12 + 1, 12 + 4, 12 + 7])


def test_flatten_reads_position_major():
    inputs = keras.Input((3, 2, 4))
    x = L.Flatten(name="flat")(L.Conv2D(5, 1, name="conv")(inputs))
    x = L.Dense(7, name="fc1")(L.Dropout(0.1)(x))
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    graph = dependency_graph(model)
    conv = graph.group_of("conv")
    assert conv.consumers == ("fc1",)
    rows = graph.dropped({conv.index: {1, 4}})["fc1"]["in"]
    np.testing.assert_array_equal(rows, sorted(p * 5 + c for p in range(6) for c in (1, 4)))
    assert graph.group_of("fc1").consumers == ("out",)


def test_sequential_model():
    model = keras.Sequential([
        keras.Input((5, 3)), L.Conv1D(4, 2, name="conv"), L.Flatten(), L.Dense(6, name="fc"),
        L.Dense(2, name="out"),
    ])
    graph = dependency_graph(model)
    assert [g.producers for g in graph.groups] == [("conv",), ("fc",), ("out",)]
    assert [g.prunable for g in graph.groups] == [True, True, False]
    assert graph.removal([(graph.groups[1], 3), (graph.groups[0], 2), (graph.groups[1], 0)]) == {
        "fc": [0, 3], "conv": [2]
    }


@keras.saving.register_keras_serializable(package="tfprune_tests")
class Scale(L.Layer):
    """A custom layer: the graph cannot know what it does to channels."""

    def call(self, x):
        return 2.0 * x


def test_unsupported_layers_are_named_and_block_what_they_read():
    inputs = keras.Input((6,))
    x = L.Dense(5, name="fc1")(inputs)
    x = L.Lambda(lambda t: t * 2, name="lam")(x)
    x = L.Dense(4, name="fc2")(x)
    x = Scale(name="scale")(x)
    x = L.Dense(3, name="fc3")(x)
    model = keras.Model(inputs, L.Dense(2, name="out")(x))
    graph = dependency_graph(model)
    assert graph.unsupported == ("lam", "scale")
    assert graph.reasons["lam"] == "Lambda layers are not supported"
    assert not graph.group_of("fc1").prunable
    assert graph.group_of("fc1").reason == "is read by unsupported layer 'lam' (Lambda layers are not supported)"
    assert "is read by unsupported layer 'scale'" in graph.group_of("fc2").reason
    assert graph.group_of("fc3").prunable  # reads the custom layer's output, which is not removed


def test_unsupported_concat_feeding_add_and_depthwise_channels_first():
    inputs = keras.Input((4, 4, 6))
    a = L.Conv2D(2, 1, name="a")(inputs)
    b = L.Conv2D(4, 1, name="b")(inputs)
    c = L.Conv2D(6, 1, name="c")(inputs)
    x = L.Add(name="add")([L.Concatenate(name="cat")([a, b]), c])
    x = L.Conv2D(3, 1, name="d")(x)
    y = L.DepthwiseConv2D(1, data_format="channels_first", name="dw_cf")(L.Conv2D(4, 1, name="e")(inputs))
    model = keras.Model(inputs, [x, y])
    graph = dependency_graph(model)
    assert sorted(graph.unsupported) == ["add", "dw_cf"]
    assert "lay out their channels differently" in graph.reasons["add"]
    for name in ("a", "b", "c"):
        assert "is read by unsupported layer 'add'" in graph.group_of(name).reason
    assert "data_format='channels_first'" in graph.group_of("e").reason


def test_squeeze_excitation_joins_the_excite_layer():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    s = L.Dense(2, activation="relu", name="squeeze")(L.GlobalAveragePooling2D()(x))
    s = L.Reshape((1, 1, 8))(L.Dense(8, activation="sigmoid", name="excite")(s))
    x = L.Multiply(name="scale")([x, s])
    model = keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))
    graph = dependency_graph(model)
    group = graph.group_of("conv")
    assert group.producers == ("conv", "excite") and group.size == 8 and group.prunable
    assert set(group.consumers) == {"squeeze", "out"}
    assert graph.unsupported == ()


def test_join_with_model_input_and_single_channel():
    inputs = keras.Input((4, 4, 3), name="image")
    x = L.Add(name="add")([inputs, L.Conv2D(3, 1, name="res")(inputs)])
    x = L.Conv2D(1, 1, name="one")(x)
    x = L.Multiply(name="mul")([L.Conv2D(5, 1, name="five")(x), x])  # the 1-channel input broadcasts
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(x)))
    graph = dependency_graph(model)
    assert graph.group_of("res").reason == "is joined with the model input 'image'"
    assert graph.group_of("one").reason.startswith("has a single channel")
    assert graph.group_of("five").prunable and graph.group_of("five").producers == ("five",)


def test_group_of_errors():
    graph = dependency_graph(tfprune.models.resnet_cifar(8, input_shape=(8, 8, 3)))
    with pytest.raises(ValueError, match=r"no layer named 'nope'.*producers"):
        graph.group_of("nope")
    with pytest.raises(ValueError, match=r"layer 'conv1_bn' \(BatchNormalization\) does not produce channels"):
        graph.group_of("conv1_bn")


def test_subclassed_model_error():
    with pytest.raises(ValueError, match="subclassed model.*functional or Sequential.*reads the layer graph"):
        dependency_graph(subclassed_mlp())


def test_wrapped_model_error():
    wrapped = tfprune.wrap(tfprune.models.lenet_300_100((4, 4, 1)))
    with pytest.raises(ValueError, match=r"wrapped by tfprune.*tfprune\.strip\(model\)"):
        dependency_graph(wrapped)
    assert len(dependency_graph(tfprune.strip(wrapped)).groups) == 3


def test_nested_model_with_a_repeated_layer_name_error():
    # Nested models are followed (tests/test_structured_real.py); their layers are named across models.
    inner = keras.Sequential([keras.Input((4,)), L.Dense(3, name="fc")], name="inner")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2, name="fc")(inner(inputs)))
    with pytest.raises(ValueError, match="two layers named 'fc' .*distinct names"):
        dependency_graph(model)
