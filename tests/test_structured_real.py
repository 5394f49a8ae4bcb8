"""Structured removal on the blocks of real architectures (issue 13): squeeze-and-excitation gates
built with layers (EfficientNet, with a Reshape) and with operators (MobileNetV3), nested models
(ConvNeXt), attention heads and recurrent units.

Each removal is checked against the original model in which nothing of the removed units reaches
their consumers (those entries zeroed), to 1e-5, with hand-counted parameters; the input model is
checked to be unchanged."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_same_outputs, assert_unchanged, snapshot, zeroed_copy

from tfprune import _compat, structured
from tfprune.structured import criteria, dependency_graph, remove

L = keras.layers


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(0)


def randomize(model, seed=0):
    """Non-trivial biases, β and moving statistics; γ and moving variances in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.name in ("gamma", "moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif v.name in ("beta", "moving_mean", "bias"):
            v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    return model


def variable(model, path):
    return next(v for v in model.weights if v.path == path)


def normal(shape, seed=1):
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype("float32")


# ---------------------------------------------------------------- an EfficientNet squeeze-and-excitation block


def se_block():
    """EfficientNet's MBConv: expand, depthwise, squeeze (GAP → Reshape → reduce → expand, sigmoid)
    and excite (Multiply)."""
    inputs = keras.Input((6, 6, 3))
    h = L.Conv2D(8, 1, use_bias=False, name="expand")(inputs)
    h = L.Activation("swish")(L.BatchNormalization(name="expand_bn")(h))
    h = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = L.Activation("swish")(L.BatchNormalization(name="dw_bn")(h))
    s = L.Reshape((1, 1, 8), name="se_reshape")(L.GlobalAveragePooling2D()(h))
    s = L.Conv2D(2, 1, activation="swish", name="se_reduce")(s)
    s = L.Conv2D(8, 1, activation="sigmoid", name="se_expand")(s)
    h = L.Multiply(name="se_excite")([h, s])
    h = L.Conv2D(4, 1, name="project")(h)
    outputs = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(h))
    return randomize(keras.Model(inputs, outputs, name="se_block"))


def se_block_params(c, r):
    """expand 1×1×3×c; two BNs (4 per channel); depthwise 3×3×c; reduce c·r + r; expand r·c + c;
    project c·4 + 4; out 4·3 + 3."""
    return 3 * c + 4 * c + 9 * c + 4 * c + (c * r + r) + (r * c + c) + (c * 4 + 4) + (4 * 3 + 3)


def test_se_block_with_reshape():
    model = se_block()
    before = snapshot(model)
    group = dependency_graph(model).group_of("expand")
    assert group.producers == ("expand", "se_expand") and group.prunable  # the gate joins the main path
    smaller = remove(model, {"expand": [1, 5], "se_reduce": [0]})
    assert smaller.get_layer("se_reshape").target_shape == (1, 1, 6)
    assert model.get_layer("se_reshape").target_shape == (1, 1, 8)
    assert model.count_params() == se_block_params(8, 2) == 253
    assert smaller.count_params() == se_block_params(6, 1) == 182
    ref = zeroed_copy(model, {
        "se_reduce/kernel": (2, [1, 5]),  # reads the squeezed channels
        "project/kernel": (2, [1, 5]),
        "se_expand/kernel": (2, [0]),
    })
    assert_same_outputs(smaller, ref, normal((4, 6, 6, 3)))
    assert_unchanged(model, before)


# ---------------------------------------------------------------- MobileNetV3's operator-built gate


def operator_gate(ops_gate):
    """The gate from the issue, ``ReLU(6)(s + 3) * (1/6)`` applied with a Multiply layer, or with
    ``keras.ops.hard_sigmoid`` and the ``*`` operator on two Keras tensors."""
    inputs = keras.Input((8, 8, 3))
    h = L.Conv2D(8, 1, name="c1")(inputs)
    s = L.Conv2D(8, 1, name="se")(L.GlobalAveragePooling2D(keepdims=True)(h))
    if ops_gate:
        h = h * keras.ops.hard_sigmoid(s)
    else:
        h = L.Multiply()([h, L.ReLU(6.0)(s + 3.0) * (1.0 / 6.0)])
    h = L.Conv2D(4, 1, name="c2")(h)
    return randomize(keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(h))))


@pytest.mark.parametrize("ops_gate", [False, True], ids=["layers", "ops"])
def test_operator_gate(ops_gate):
    model = operator_gate(ops_gate)
    before = snapshot(model)
    graph = dependency_graph(model)
    assert graph.unsupported == ()
    assert graph.group_of("c1").producers == ("c1", "se")
    smaller = remove(model, {"c1": [0, 3]})
    # c1 3·C + C, se C·C + C, c2 C·4 + 4, out 4·2 + 2
    assert model.count_params() == 32 + 72 + 36 + 10
    assert smaller.count_params() == 24 + 42 + 28 + 10
    ref = zeroed_copy(model, {"se/kernel": (2, [0, 3]), "c2/kernel": (2, [0, 3])})
    assert_same_outputs(smaller, ref, normal((4, 8, 8, 3)))
    assert_unchanged(model, before)


def test_reshape_that_changes_the_channels_is_refused_by_name():
    inputs = keras.Input((8,))
    h = L.Dense(8, name="fc")(inputs)
    h = L.Reshape((2, 4), name="split")(h)
    model = keras.Model(inputs, L.Dense(2, name="out")(L.Flatten()(h)))
    before = snapshot(model)
    graph = dependency_graph(model)
    assert not graph.group_of("fc").prunable
    assert "'split'" in graph.group_of("fc").reason and "changes the last axis" in graph.group_of("fc").reason
    with pytest.raises(ValueError, match=r"layer 'fc' cannot be removed.*unsupported layer 'split'"):
        remove(model, {"fc": [0]})
    assert_unchanged(model, before)


def test_unsupported_operation_blocks_what_it_writes():
    inputs = keras.Input((4, 4, 3))
    a = L.Conv2D(6, 1, name="a")(inputs)
    b = keras.ops.flip(L.Conv2D(6, 1, name="b")(inputs), axis=-1)  # reorders the channels
    model = keras.Model(inputs, L.Conv2D(2, 1, name="out")(L.Add()([a, b])))
    graph = dependency_graph(model)
    assert not graph.group_of("a").prunable and "is written by unsupported operation" in graph.group_of("a").reason
    assert not graph.group_of("b").prunable and "is read by unsupported operation" in graph.group_of("b").reason


def test_operation_with_a_per_channel_constant_is_refused():
    inputs = keras.Input((4, 4, 3))
    h = L.Conv2D(6, 1, name="a")(inputs) * np.linspace(0.5, 1.0, 6).astype("float32")
    model = keras.Model(inputs, L.Conv2D(2, 1, name="out")(h))
    group = dependency_graph(model).group_of("a")
    assert not group.prunable and "constant operand of shape (6,)" in group.reason
    assert dependency_graph(operator_gate(False)).group_of("c1").prunable  # scalar constants are fine


# ---------------------------------------------------------------- nested models


def nested_model():
    """A stem, a functional block model on a residual branch, and a Sequential (BN, ReLU) after the add."""
    i = keras.Input((6, 6, 6))
    a = L.ReLU()(L.Conv2D(8, 3, padding="same", name="a")(i))
    block = keras.Model(i, L.Conv2D(6, 1, name="b")(a), name="block")
    tail = keras.Sequential([keras.Input((6, 6, 6)), L.BatchNormalization(name="tail_bn"), L.ReLU()], name="tail")
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(6, 3, padding="same", name="stem")(inputs)
    x = tail(L.Add()([x, block(x)]))
    outputs = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x))
    return randomize(keras.Model(inputs, outputs, name="nested"))


def nested_params(s, a):
    """stem 3×3×3·s + s; a 3×3·s·a + a; b a·s + s; tail BN 4·s; out s·3 + 3."""
    return (27 * s + s) + (9 * s * a + a) + (a * s + s) + 4 * s + (s * 3 + 3)


def test_nested_models():
    model = nested_model()
    before = snapshot(model)
    graph = dependency_graph(model)
    assert graph.group_of("stem").producers == ("stem", "b")  # the residual add ties across the nested model
    assert graph.group_of("stem").passthrough == ("tail_bn",)
    smaller = remove(model, {"stem": [1, 4], "a": [2]})
    assert model.count_params() == nested_params(6, 8) == 707
    assert smaller.count_params() == nested_params(4, 7) == 434
    block = smaller.get_layer("block")
    assert isinstance(block, keras.Model) and block.get_layer("a").filters == 7 and block.get_layer("b").filters == 4
    assert isinstance(smaller.get_layer("tail"), keras.Sequential)
    assert smaller.get_layer("tail").get_layer("tail_bn").gamma.shape == (4,)
    ref = zeroed_copy(model, {
        "a/kernel": (2, [1, 4]),
        "b/kernel": (2, [2]),
        "out/kernel": (0, [1, 4]),
    })
    assert_same_outputs(smaller, ref, normal((4, 6, 6, 3)))
    assert_unchanged(model, before)


def test_convnext_block_grouped_conv_and_layer_scale():
    """ConvNeXt's block without its layer norm (which renormalises): a convolution with one group per
    channel, two Dense layers on the channels, and LayerScale, added to the stem."""
    layer_scale = _compat.convnext_layer_scale()
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    h = L.Conv2D(8, 3, padding="same", groups=8, name="dwconv")(x)
    h = L.Dense(8, name="pw2")(L.Dense(16, activation="gelu", name="pw1")(h))
    h = layer_scale(0.5, 8, name="ls")(h)
    outputs = L.Dense(3, name="out")(L.GlobalAveragePooling2D()(L.Add()([x, h])))
    model = randomize(keras.Model(inputs, outputs))
    model.get_layer("ls").weights[0].assign(np.linspace(0.5, 1.5, 8).astype("float32"))  # Keras names it variable_<n>
    before = snapshot(model)
    group = dependency_graph(model).group_of("stem")
    assert group.producers == ("stem", "pw2") and group.passthrough == ("dwconv", "ls")
    smaller = remove(model, {"stem": [2, 5]})
    assert (smaller.get_layer("dwconv").groups, smaller.get_layer("ls").projection_dim) == (6, 6)
    # stem 3c + c, dwconv 3×3×1×c + c, pw1 16c + 16, pw2 16c + c, ls c, out 3c + 3
    assert model.count_params() == 32 + 80 + 144 + 136 + 8 + 27
    assert smaller.count_params() == 24 + 60 + 112 + 102 + 6 + 21
    ref = zeroed_copy(model, {"pw1/kernel": (0, [2, 5]), "out/kernel": (0, [2, 5])})
    assert_same_outputs(smaller, ref, normal((4, 6, 6, 3)))
    assert_unchanged(model, before)


# ---------------------------------------------------------------- attention heads


def transformer_block(return_scores=False):
    """Post-norm Transformer encoder block on (5, 8) tokens: 4 heads of 3, FFN of 16."""
    inputs = keras.Input((5, 8))
    mha = L.MultiHeadAttention(4, 3, name="mha")
    if return_scores:
        attention, scores = mha(inputs, inputs, return_attention_scores=True)
    else:
        attention = mha(inputs, inputs)
    x = L.LayerNormalization(name="ln1")(L.Add()([inputs, attention]))
    f = L.Dense(8, name="ffn2")(L.Dense(16, activation="relu", name="ffn1")(x))
    x = L.LayerNormalization(name="ln2")(L.Add()([x, f]))
    outputs = L.Dense(3, name="out")(L.GlobalAveragePooling1D()(x))
    if return_scores:
        outputs = [outputs, scores]
    return randomize(keras.Model(inputs, outputs, name="transformer"))


def transformer_counts(h, f):
    """Params: per head q, k, v (8·3 + 3 each) and output 3·8, plus the output bias 8; two LNs;
    FFN 8·f + f, f·8 + 8; out 8·3 + 3. MACs per example (5 tokens): q, k, v 3·5·8·3·h, output
    5·3·8·h, attention h·5·5·(3 + 3), FFN 2·5·8·f, out 8·3."""
    params = (105 * h + 8) + 32 + (9 * f + 8 * f + 8) + 27
    macs = 360 * h + 120 * h + 150 * h + 80 * f + 24
    return macs, params


def test_transformer_heads_and_ffn_units():
    model = transformer_block()
    before = snapshot(model)
    graph = dependency_graph(model)
    heads = graph.group_of("mha")
    assert (heads.size, heads.prunable, heads.producers) == (4, True, ("mha",))
    assert not graph.group_of("ffn2").prunable  # the residual stream is the model input's
    smaller = remove(model, {"mha": [1, 3], "ffn1": [0, 7]})
    assert smaller.get_layer("mha").num_heads == 2
    assert variable(smaller, "mha/query/kernel").shape == (8, 2, 3)
    assert structured.counts(model) == transformer_counts(4, 16) == (3824, 767)
    assert structured.counts(smaller) == transformer_counts(2, 14) == (2404, 523)
    # A removed head reaches nothing when the output projection's slice that reads it is zero.
    ref = zeroed_copy(model, {"mha/attention_output/kernel": (0, [1, 3]), "ffn2/kernel": (0, [0, 7])})
    assert_same_outputs(smaller, ref, normal((4, 5, 8)))
    assert_unchanged(model, before)


def test_heads_whose_scores_are_returned_are_refused_by_name():
    model = transformer_block(return_scores=True)
    before = snapshot(model)
    group = dependency_graph(model).group_of("mha")
    assert not group.prunable and "attention scores" in group.reason
    with pytest.raises(ValueError, match=r"layer 'mha' cannot be removed.*attention scores"):
        remove(model, {"mha": [0]})
    assert dependency_graph(model).group_of("ffn1").prunable
    assert_unchanged(model, before)


HEAD_PARTS = [("query/kernel", 1), ("query/bias", 0), ("key/kernel", 1), ("key/bias", 0),
              ("value/kernel", 1), ("value/bias", 0), ("attention_output/kernel", 0)]


def head_rows(arrays):
    """(heads, weights per head) from ``{part: array}``: each head's slice of every part."""
    return np.stack([
        np.concatenate([np.take(arrays[p], h, axis=axis).ravel() for p, axis in HEAD_PARTS]) for h in range(4)
    ])


def test_head_criteria():
    model = transformer_block()
    x, y = normal((8, 5, 8)), np.arange(8) % 3
    weights = {p: variable(model, f"mha/{p}").numpy().astype(np.float64) for p, _ in HEAD_PARTS}
    rows = head_rows(weights)
    np.testing.assert_allclose(criteria.l1(model, ["mha"])["mha"], np.abs(rows).sum(1), rtol=1e-12)
    np.testing.assert_allclose(criteria.l2(model, ["mha"])["mha"], np.linalg.norm(rows, axis=1), rtol=1e-12)

    variables = [variable(model, f"mha/{p}") for p, _ in HEAD_PARTS]
    with tf.GradientTape() as tape:
        logits = model(x, training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    gradients = tape.gradient(loss, variables)
    grads = head_rows({p: g.numpy().astype(np.float64) for (p, _), g in zip(HEAD_PARTS, gradients)})
    taylor = criteria.taylor(model, ["mha"], (x, y))["mha"]
    np.testing.assert_allclose(taylor, np.linalg.norm(rows * grads, axis=1), rtol=1e-4)
    # SInGE with one step at μ = 1: ‖W_h‖ · ‖∇_{W_h} L‖.
    singe = criteria.singe(model, ["mha"], (x, y), steps=1, mode="unit")["mha"]
    np.testing.assert_allclose(singe, np.linalg.norm(rows, axis=1) * np.linalg.norm(grads, axis=1), rtol=1e-4)


def test_prune_loop_ranks_heads_and_ffn_units():
    model = transformer_block()
    before = snapshot(model)
    data = normal((32, 5, 8)), np.arange(32) % 3
    result = structured.prune(model, "taylor", data=data, kept_macs=0.6, step_fraction=0.5, finetune_steps=1,
                              final_finetune_epochs=0, samples=16, verbose=0)
    heads, units = result.model.get_layer("mha").num_heads, result.model.get_layer("ffn1").units
    assert heads < 4 and units < 16  # both kinds of unit were ranked together
    assert structured.counts(result.model) == transformer_counts(heads, units)
    assert transformer_counts(heads, units)[0] <= 0.6 * 3824
    assert_unchanged(model, before)


# ---------------------------------------------------------------- recurrent units


def recurrent_model():
    """Masked tokens → Dense → SimpleRNN → LSTM → GRU → Dense."""
    inputs = keras.Input((6,), dtype="int32")
    h = L.Embedding(20, 5, mask_zero=True, name="emb")(inputs)
    h = L.Dense(6, name="proj")(h)
    h = L.SimpleRNN(4, return_sequences=True, name="srnn")(h)
    h = L.LSTM(7, return_sequences=True, name="lstm")(h)
    h = L.GRU(6, name="gru")(h)
    return randomize(keras.Model(inputs, L.Dense(3, name="out")(h), name="recurrent"))


def recurrent_params(e, p, s, u, g):
    """emb 20·e; proj e·p + p; SimpleRNN p·s + s·s + s; LSTM 4(s·u + u·u + u); GRU (reset_after)
    3(u·g + g·g) + 2·3·g; out g·3 + 3."""
    rnn = (p * s + s * s + s) + 4 * (s * u + u * u + u) + 3 * (u * g + g * g) + 6 * g
    return 20 * e + (e * p + p) + rnn + (g * 3 + 3)


def test_recurrent_units():
    model = recurrent_model()
    before = snapshot(model)
    graph = dependency_graph(model)
    names = ("emb", "srnn", "lstm", "gru")
    assert [(graph.group_of(n).size, graph.group_of(n).prunable) for n in names] == [(5, True), (4, True), (7, True),
                                                                                     (6, True)]
    smaller = remove(model, {"emb": [4], "proj": [1], "srnn": [0], "lstm": [0, 3], "gru": [2]})
    assert model.count_params() == recurrent_params(5, 6, 4, 7, 6) == 807
    assert smaller.count_params() == recurrent_params(4, 5, 3, 5, 5) == 510
    assert variable(smaller, "lstm/lstm_cell/kernel").shape == (3, 20)
    # A removed unit reaches nothing when its recurrent-kernel row and its consumers' rows are zero.
    ref = zeroed_copy(model, {
        "proj/kernel": (0, [4]),
        "srnn/simple_rnn_cell/kernel": (0, [1]),
        "srnn/simple_rnn_cell/recurrent_kernel": (0, [0]),
        "lstm/lstm_cell/kernel": (0, [0]),
        "lstm/lstm_cell/recurrent_kernel": (0, [0, 3]),
        "gru/gru_cell/kernel": (0, [0, 3]),
        "gru/gru_cell/recurrent_kernel": (0, [2]),
        "out/kernel": (0, [2]),
    })
    tokens = np.random.default_rng(2).integers(0, 20, (4, 6))
    tokens[:, -2:] = 0  # masked steps
    assert_same_outputs(smaller, ref, tokens)
    assert_unchanged(model, before)


def test_recurrent_criteria_take_every_gate():
    model = recurrent_model()
    k, r, b = (variable(model, f"lstm/lstm_cell/{n}").numpy().astype(np.float64)
               for n in ("kernel", "recurrent_kernel", "bias"))
    want = [sum(np.abs(k[:, g * 7 + u]).sum() + np.abs(r[:, g * 7 + u]).sum() + abs(b[g * 7 + u]) for g in range(4))
            for u in range(7)]
    np.testing.assert_allclose(criteria.l1(model, ["lstm"])["lstm"], want, rtol=1e-12)


def test_recurrent_singe_scales_every_gate():
    """SInGE at μ = ½ (one midpoint step, unit mode): ``‖W_u‖ · ‖∇_{W_u} L‖`` with unit ``u``'s column
    of every gate halved, re-derived with a copy whose columns are halved by hand."""
    model = recurrent_model()
    tokens = np.random.default_rng(3).integers(1, 20, (8, 6))
    labels = np.arange(8) % 3
    paths = [f"lstm/lstm_cell/{n}" for n in ("kernel", "recurrent_kernel", "bias")]

    def unit_slices(arrays, u):
        return np.concatenate([np.asarray(a)[..., [g * 7 + u for g in range(4)]].ravel() for a in arrays])

    want = []
    for u in range(7):
        copy = zeroed_copy(model, {})
        for path in paths:
            v = variable(copy, path)
            value = v.numpy()
            value[..., [g * 7 + u for g in range(4)]] *= 0.5
            v.assign(value)
        with tf.GradientTape() as tape:
            logits = copy(tokens, training=False)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        grads = tape.gradient(loss, [variable(copy, p) for p in paths])
        weights = [variable(model, p).numpy().astype(np.float64) for p in paths]
        want.append(np.linalg.norm(unit_slices(weights, u)) * np.linalg.norm(unit_slices(grads, u)))
    got = criteria.singe(model, ["lstm"], (tokens, labels), steps=1, path="midpoint", mode="unit")["lstm"]
    np.testing.assert_allclose(got, want, rtol=1e-4)


# ---------------------------------------------------------------- keras.applications


APPLICATIONS = {
    # model, a prunable group without layer normalisation (removal is then exact)
    "EfficientNetB0": (lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10,
                                                                 classifier_activation=None),
                       "block4a_expand_conv"),
    "MobileNetV3Small": (lambda: keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                                     classes=10, classifier_activation=None),
                         "expanded_conv_6_expand"),
    "ConvNeXtTiny": (lambda: keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=10,
                                                             classifier_activation=None),
                     "convnext_tiny_stage_2_block_3_pointwise_conv_1"),
}


def consumer_zeros(model, group, channels):
    """Zero the input slices (axis -2 of the kernel) of the group's consumers for ``channels``."""
    layers = {layer.name: layer for layer in model.layers} | {
        layer.name: layer for nested in model.layers if isinstance(nested, keras.Model) for layer in nested.layers}
    return {layers[name].kernel.path: (-2, channels) for name in group.consumers}


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_applications_remove(name):
    build, producer = APPLICATIONS[name]
    model = randomize(build())
    before = snapshot(model)
    graph = dependency_graph(model)
    group = graph.group_of(producer)
    assert group.prunable, group.reason
    channels = list(range(0, group.size, 2))
    smaller = remove(model, {producer: channels})
    assert dependency_graph(smaller).group_of(producer).size == group.size - len(channels)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert_same_outputs(smaller, zeroed_copy(model, consumer_zeros(model, group, channels)), x)
    assert structured.counts(smaller)[0] < structured.counts(model)[0]
    assert_unchanged(model, before)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_applications_prune_to_macs(name):
    model = APPLICATIONS[name][0]()
    before = snapshot(model)
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 16)
    result = structured.prune(model, "l1", data=data, kept_macs=0.8, finetune_steps=1, final_finetune_epochs=0,
                              verbose=0)
    macs = structured.counts(model)[0]
    assert result.steps[-1].macs <= 0.8 * macs
    assert structured.counts(result.model)[0] == result.steps[-1].macs
    assert result.model(data[0][:2]).shape == (2, 10)
    assert_unchanged(model, before)
