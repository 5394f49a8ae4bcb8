"""report and profile: parameters, kept weights, and MACs per weight and per layer."""

import json

import keras
import numpy as np
import pytest
from helpers import L, SubclassedMLP, random_masks, residual_cnn, subclassed_mlp

import tfprune
from tfprune.analysis.profile import UnknownShapeError


def test_report_counts_masks_of_a_wrapped_model(capsys):
    model = residual_cnn()
    wrapped = tfprune.wrap(model)
    masks = random_masks(wrapped, 0.4)
    tfprune.apply_masks(wrapped, masks)
    r = tfprune.report(wrapped)
    shapes = [(3, 3, 3, 8), (3, 3, 8, 1), (3, 3, 8, 1), (1, 1, 8, 8), (8, 16), (16, 3)]
    assert [row.params for row in r.rows] == [int(np.prod(s)) for s in shapes]
    assert [row.kept for row in r.rows] == [int(m.sum()) for m in masks]
    assert r.total.params == 216 + 72 + 72 + 64 + 128 + 48
    assert r.total.kept == sum(int(m.sum()) for m in masks)
    assert abs(r.total.density - r.total.kept / r.total.params) < 1e-15
    assert r.other_params == model.count_params() - r.total.params  # biases and BN, not masks
    out = capsys.readouterr().out
    assert "conv/kernel" in out and "TOTAL" in out and f"{r.total.kept:,}" in out
    assert "MACs" in out and "effective MACs" in out


def test_report_counts_nonzeros_of_a_stripped_model():
    wrapped = tfprune.prune_at_init(residual_cnn(), "magnitude", sparsity=0.75, verbose=0)
    r = tfprune.report(tfprune.strip(wrapped), verbose=0)
    assert r.total.kept == int(np.floor(0.25 * r.total.params + 0.5))
    assert str(r).splitlines()[0].split() == [
        "weight", "kind", "shape", "params", "kept", "density", "MACs", "effective", "MACs"
    ]


def test_report_macs_per_weight():
    """Each weight's MACs on the 8x8 maps of the residual CNN, and MACs x density."""
    wrapped = tfprune.wrap(residual_cnn())
    masks = random_masks(wrapped, 0.4)
    tfprune.apply_masks(wrapped, masks)
    r = tfprune.report(wrapped, verbose=0)
    positions = 8 * 8
    expected = [216 * positions, 72 * positions, 72 * positions, 64 * positions, 8 * 16, 16 * 3]
    assert [row.macs for row in r.rows] == expected
    for row, mask in zip(r.rows, masks):
        assert row.effective_macs == pytest.approx(row.macs * mask.mean())
    assert r.total.macs == sum(expected)
    assert r.total.effective_macs == pytest.approx(sum(row.effective_macs for row in r.rows))


def test_report_without_a_known_input_shape_has_no_macs():
    inputs = keras.Input((None, 5))
    model = keras.Model(inputs, L.Dense(4)(inputs))
    r = tfprune.report(model, verbose=0)
    assert r.total.macs is None and "MACs" not in str(r)
    assert tfprune.report(model, verbose=0, input_shape=(7, 5)).total.macs == 7 * 5 * 4


def macs(model, **kwargs):
    """Dense MACs per layer name."""
    return {row.name: row.macs for row in tfprune.profile(model, verbose=0, **kwargs).layers}


def sequential(input_shape, *layers):
    return keras.Sequential([keras.Input(input_shape), *layers])


def test_mlp():
    model = sequential((784,), L.Dense(300, name="a"), L.Dense(100, name="b"), L.Dense(10, name="c"))
    p = tfprune.profile(model, verbose=0)
    assert [(r.name, r.type, r.macs) for r in p.layers] == [
        ("a", "Dense", 784 * 300), ("b", "Dense", 300 * 100), ("c", "Dense", 100 * 10)
    ]
    assert p.total.macs == 266_200
    assert p.total.params == model.count_params()
    assert p.total.effective_macs == p.total.macs


def test_convolutions_with_stride_padding_and_groups():
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", name="same")(inputs)  # 32 / 2 -> 16
    x = L.Conv2D(8, 5, strides=2, padding="valid", name="valid")(x)  # (16 - 5) // 2 + 1 -> 6
    x = L.Conv2D(8, 3, groups=2, name="grouped")(x)  # 6 - 3 + 1 -> 4, 4 of 8 inputs per group
    model = keras.Model(inputs, x)
    assert macs(model) == {
        "same": 3 * 3 * 3 * 16 * 16 * 16,
        "valid": 5 * 5 * 16 * 8 * 6 * 6,
        "grouped": 3 * 3 * (8 // 2) * 8 * 4 * 4,
    }
    conv1d = sequential((20, 4), L.Conv1D(6, 3, strides=2, name="c"))  # (20 - 3) // 2 + 1 -> 9
    assert macs(conv1d) == {"c": 3 * 4 * 6 * 9}
    conv3d = sequential((6, 6, 6, 2), L.Conv3D(4, 3, name="c"))  # 4x4x4 outputs
    assert macs(conv3d) == {"c": 27 * 2 * 4 * 4**3}
    channels_first = sequential((3, 10, 10), L.Conv2D(5, 3, data_format="channels_first", name="c"))
    assert macs(channels_first) == {"c": 9 * 3 * 5 * 8 * 8}
    per_frame = sequential((7, 6, 6, 2), L.TimeDistributed(L.Conv2D(4, 3, name="c")))  # 7 frames of 4x4
    assert macs(per_frame) == {"c": 7 * 9 * 2 * 4 * 4 * 4}


def test_depthwise_separable_and_transposed_convolutions():
    model = sequential(
        (16, 16, 8),
        L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", name="dw"),  # 8x8x16
        L.SeparableConv2D(12, 3, depth_multiplier=3, name="sep"),  # 6x6, 48 channels in between
        L.Conv2DTranspose(4, 3, strides=2, name="up"),  # on a 6x6 input
    )
    assert macs(model) == {
        "dw": 3 * 3 * 8 * 2 * 8 * 8,
        "sep": 3 * 3 * 16 * 3 * 6 * 6 + 16 * 3 * 12 * 6 * 6,
        "up": 3 * 3 * 12 * 4 * 6 * 6,
    }


def test_dense_and_einsum_dense_on_a_sequence():
    model = sequential(
        (7, 5),
        L.Dense(4, name="dense"),  # 7 positions
        L.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), name="heads"),
        L.Reshape((7, 6)),
        L.EinsumDense("...b,bc->...c", output_shape=5, name="ellipsis"),
        L.EinsumDense("abc,cd->ad", output_shape=3, name="sum_over_time"),  # also sums over b
    )
    assert macs(model) == {
        "dense": 7 * 5 * 4,
        "heads": 7 * 4 * 2 * 3,
        "ellipsis": 7 * 6 * 5,
        "sum_over_time": 7 * 5 * 3,
    }


def test_recurrent_layers():
    t, d = 9, 6
    model = sequential(
        (t, d),
        L.LSTM(5, return_sequences=True, name="lstm"),
        L.GRU(4, return_sequences=True, name="gru"),
        L.Bidirectional(L.SimpleRNN(3, name="rnn")),
    )
    p = tfprune.profile(model, verbose=0)
    assert {r.name: r.macs for r in p.layers} == {
        "lstm": t * (d + 5) * 5 * 4,
        "gru": t * (5 + 4) * 4 * 3,
        "forward_rnn": t * (4 + 3) * 3,
        "backward_rnn": t * (4 + 3) * 3,
    }
    assert p.total.params == model.count_params()  # the cells' weights, biases included


def test_rnn_kernels_scale_by_their_own_density():
    t = 9
    wrapped = tfprune.wrap(sequential((t, 6), L.LSTM(5, name="lstm")))
    kernel, recurrent = np.zeros((6, 20), bool), np.zeros((5, 20), bool)
    kernel[:3], recurrent[:1] = True, True  # densities 1/2 and 1/5
    tfprune.apply_masks(wrapped, [kernel, recurrent])
    (row,) = tfprune.profile(wrapped, verbose=0).layers
    assert row.macs == t * (6 + 5) * 20
    assert row.effective_macs == pytest.approx(t * 6 * 20 / 2 + t * 5 * 20 / 5)
    assert row.nonzero == 3 * 20 + 1 * 20 + np.count_nonzero(wrapped.layers[0].layer.cell.bias.numpy())


def test_multi_head_attention():
    query, value = keras.Input((6, 8)), keras.Input((5, 10))
    attention = L.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, name="mha")
    model = keras.Model([query, value], attention(query, value))
    p = tfprune.profile(model, verbose=0)
    assert {r.name: r.macs for r in p.layers} == {
        "mha": 2 * 6 * 5 * 4 + 2 * 6 * 5 * 3,  # QKᵀ and AV
        "query": 6 * 8 * 2 * 4,
        "key": 5 * 10 * 2 * 4,
        "value": 5 * 10 * 2 * 3,
        "attention_output": 6 * 2 * 3 * 8,
    }
    assert p.layers[0].params == 0 and p.total.params == model.count_params()


def test_grouped_query_attention():
    query, value = keras.Input((6, 8)), keras.Input((5, 8))
    attention = L.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2, name="gqa")
    model = keras.Model([query, value], attention(query, value))
    assert macs(model) == {
        "gqa": 2 * 4 * 6 * 5 * 4,
        "query": 6 * 8 * 4 * 4,
        "key": 5 * 8 * 2 * 4,
        "value": 5 * 8 * 2 * 4,
        "attention_output": 6 * 4 * 4 * 8,
    }


def test_lenet5_caffe():
    model = sequential(
        (28, 28, 1),
        L.Conv2D(20, 5), L.MaxPooling2D(2), L.Conv2D(50, 5), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(500, activation="relu"), L.Dense(10),
    )
    p = tfprune.profile(model, verbose=0)
    assert [r.macs for r in p.layers] == [20 * 25 * 24 * 24, 50 * 20 * 25 * 8 * 8, 800 * 500, 500 * 10]
    assert p.total.macs == 2_293_000


def expected_effective_macs(wrapped, masks):
    """Per-layer effective MACs of the residual CNN: each kernel's dense MACs times its density."""
    d = {t.name: m.mean() for t, m in zip(tfprune.prunable_weights(wrapped), masks)}
    return {
        "conv": 216 * 64 * d["conv/kernel"],
        "bn": 0,
        "depthwise": 72 * 64 * d["depthwise/kernel"],
        "separable": 72 * 64 * d["separable/depthwise_kernel"] + 64 * 64 * d["separable/pointwise_kernel"],
        "hidden": 8 * 16 * d["hidden/kernel"],
        "logits": 16 * 3 * d["logits/kernel"],
    }


def test_effective_macs_and_nonzeros_of_wrapped_and_stripped_models():
    model = residual_cnn()
    wrapped = tfprune.wrap(model)
    masks = random_masks(wrapped, 0.3)
    tfprune.apply_masks(wrapped, masks)
    p = tfprune.profile(wrapped, verbose=0)
    assert [r.name for r in p.layers] == ["conv", "bn", "depthwise", "separable", "hidden", "logits"]
    expected = expected_effective_macs(wrapped, masks)
    assert {r.name: r.effective_macs for r in p.layers} == pytest.approx(expected)
    assert p.total.macs == 216 * 64 + 72 * 64 + (72 + 64) * 64 + 128 + 48

    mask_params = sum(int(np.prod(m.shape)) for m in tfprune.get_masks(wrapped))
    assert p.total.params == model.count_params() == wrapped.count_params() - mask_params
    kept = {t.name: int(np.count_nonzero(t.value)) for t in tfprune.prunable_weights(wrapped)}
    others = sum(
        int(np.count_nonzero(v.numpy())) for v in model.weights if v.path not in kept
    )  # biases (zeros at init) and BN statistics
    assert p.total.nonzero == sum(kept.values()) + others

    stripped = tfprune.profile(tfprune.strip(wrapped), verbose=0)
    assert stripped.to_dict() == p.to_dict()


def test_subclassed_model_uses_the_shape_of_its_first_call():
    dense = 10 * 16 + 16 * 16 + 16 * 12 + 12 * 3
    model = subclassed_mlp(features=10)
    assert tfprune.profile(model, verbose=0).total.macs == dense
    wrapped = tfprune.wrap(model)
    masks = random_masks(wrapped, 0.5)
    tfprune.apply_masks(wrapped, masks)
    p = tfprune.profile(wrapped, verbose=0)
    assert p.total.macs == dense
    assert p.total.effective_macs == pytest.approx(sum(int(m.sum()) for m in masks))  # batch 1, rank 2


def test_unbuilt_model_needs_input_shape():
    with pytest.raises(ValueError, match="not built.*input_shape"):
        tfprune.profile(keras.Sequential([L.Dense(4)]))
    with pytest.raises(ValueError, match="not built.*input_shape"):
        tfprune.profile(SubclassedMLP())
    assert tfprune.profile(keras.Sequential([L.Dense(4)]), (10,), verbose=0).total.macs == 40
    model = SubclassedMLP()
    assert tfprune.profile(model, input_shape=(10,), verbose=0).total.macs == 10 * 16 + 16 * 16 + 16 * 12 + 12 * 3
    assert model.built


def test_unknown_sequence_length_needs_input_shape():
    inputs = keras.Input((None, 5))
    model = keras.Model(inputs, L.LSTM(3)(inputs))
    with pytest.raises(UnknownShapeError, match=r"\(None, None, 5\).*pass input_shape"):
        tfprune.profile(model)
    assert tfprune.profile(model, input_shape=(7, 5), verbose=0).total.macs == 7 * (5 + 3) * 3 * 4


def test_shared_layers_and_nested_models_count_every_call():
    dense = L.Dense(4, name="shared")
    block = sequential((4,), L.Dense(4, name="inner"))
    a, b = keras.Input((3,)), keras.Input((3,))
    outputs = L.Add()([block(dense(a)), block(dense(b))])
    model = keras.Model([a, b], outputs)
    assert macs(model) == {"shared": 2 * 3 * 4, "inner": 2 * 4 * 4}


def test_layers_without_macs():
    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((5,), dtype="int32")
    x = L.Embedding(50, 8, name="embedding")(inputs)
    x = L.LayerNormalization(name="norm")(x)
    x = Scale(name="scale")(x)
    model = keras.Model(inputs, L.Dense(2, name="dense")(x))
    with pytest.warns(UserWarning, match=r"not counted \(0\): scale \(Scale\)"):
        p = tfprune.profile(model, verbose=0)
    assert {r.name: (r.params, r.macs) for r in p.layers} == {
        "embedding": (400, 0), "norm": (16, 0), "scale": (8, 0), "dense": (18, 5 * 8 * 2)
    }


def test_printed_table_and_json(capsys):
    p = tfprune.profile(residual_cnn())
    out = capsys.readouterr().out
    assert out.strip() == str(p)
    assert out.splitlines()[0].split() == ["layer", "type", "params", "nonzero", "MACs", "effective", "MACs"]
    assert "FLOP" not in out and f"{p.total.macs:,}" in out
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d["total"]) == {"params", "nonzero", "macs", "effective_macs"}
    assert d["layers"][0] == {
        "name": "conv", "type": "Conv2D", "params": 224, "nonzero": 216, "macs": 216 * 64, "effective_macs": 216.0 * 64
    }
