"""Keras' own model.quantize on a stripped pruned model: profile/report count it as the float model,
and tfprune.quantize checks that no zero is lost."""

import warnings

import keras
import numpy as np
import pytest

import tfprune

L = keras.layers


def _pruned_plain(density=0.2):
    """A stripped model with a pruned Embedding, EinsumDense and two Dense layers (random masks)."""
    tokens = keras.Input((5,), dtype="int32")
    x = L.Embedding(50, 16)(tokens)
    x = L.EinsumDense("btd,de->bte", output_shape=(5, 32), bias_axes="e")(x)
    x = L.Dense(64, activation="relu")(L.Flatten()(x))
    wrapped = tfprune.wrap(keras.Model(tokens, L.Dense(10)(x)))
    masks = [np.random.default_rng(i).random(t.shape) < density for i, t in enumerate(tfprune.prunable_weights(wrapped))]
    tfprune.apply_masks(wrapped, masks)
    return tfprune.strip(wrapped)


def _quantized_copy(model, mode):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Layer .* does not have a `quantize` method")
        lost = tfprune.quantize(copy, mode)
    return copy, lost


def test_profile_of_int8_model_counts_float_macs_and_dequantized_nonzeros():
    plain = _pruned_plain()
    floats = {layer.name: layer.get_weights() for layer in plain.layers}
    expected = tfprune.profile(plain, verbose=0)
    quantized, lost = _quantized_copy(plain, "int8")
    got = tfprune.profile(quantized, verbose=0)
    assert lost == 0
    rounded = 0  # weights non-zero in float whose int8 code is 0, counted from the int8 kernels
    for layer in quantized.layers:
        for name in ("kernel", "embeddings"):
            if hasattr(layer, name) and layer.quantization_mode == "int8":
                codes = keras.ops.convert_to_numpy(getattr(layer, name))
                assert codes.dtype == np.int8
                weight = floats[layer.name][[v.name for v in plain.get_layer(layer.name).weights].index(name)]
                assert not np.any((weight == 0) & (codes != 0))
                rounded += int(np.sum((weight != 0) & (codes == 0)))
    assert rounded > 0  # the test model has small weights that int8 rounds away
    assert [r.macs for r in got.layers] == [r.macs for r in expected.layers] == [0, 2560, 10240, 640]
    assert [r.params for r in got.layers] == [r.params for r in expected.layers]
    assert got.total.nonzero == expected.total.nonzero - rounded
    r_float, r_int8 = tfprune.report(plain, verbose=0), tfprune.report(quantized, verbose=0)
    assert r_int8.total.params == r_float.total.params and r_int8.other_params == r_float.other_params
    assert r_int8.total.macs == r_float.total.macs
    assert r_int8.total.kept == r_float.total.kept - rounded


@pytest.mark.parametrize("mode", ["int4", "float8"])
def test_int4_and_float8_keep_every_zero(mode):
    plain = _pruned_plain()
    zeros = {(layer.name, v.name): v.numpy() == 0 for layer in plain.layers for v in layer.weights
             if v.name in ("kernel", "embeddings")}
    quantized, lost = _quantized_copy(plain, mode)
    assert lost == 0
    for layer in quantized.layers:
        for v in layer.weights:
            if (layer.name, v.name) in zeros and layer.quantization_mode is not None:
                dequantized_zero = tfprune.layers.quantized.dequantized_zero(layer, v)
                assert dequantized_zero[zeros[layer.name, v.name]].all()
    got = tfprune.profile(quantized, verbose=0)
    assert got.total.macs == tfprune.profile(plain, verbose=0).total.macs
    assert got.total.params == tfprune.profile(plain, verbose=0).total.params


def test_int4_zero_points_read_per_group():
    """A NumPy re-derivation of the int4 zeros: code == zero point of the code's group."""
    plain = _pruned_plain()
    quantized, _ = _quantized_copy(plain, "int4")
    dense = quantized.layers[-2]  # Dense(64): kernel (160, 64), groups along the input axis
    codes = keras.ops.convert_to_numpy(dense.kernel).astype(int)
    zero, groups = keras.ops.convert_to_numpy(dense.kernel_zero), keras.ops.convert_to_numpy(dense.g_idx).astype(int)
    expected = np.array([[codes[i, j] == zero[groups[i], j] for j in range(64)] for i in range(160)])
    np.testing.assert_array_equal(tfprune.layers.quantized.dequantized_zero(dense, dense.weights[1]), expected)


def test_quantize_warns_when_zeros_are_lost():
    plain = _pruned_plain()
    keras_quantize = plain.quantize

    def losing(mode, **kwargs):  # a mode that loses zeros: int8, then one zero code becomes 1
        keras_quantize(mode, **kwargs)
        layer = plain.layers[-1]
        codes = keras.ops.convert_to_numpy(layer.kernel)
        codes[tuple(np.argwhere(codes == 0)[:3].T)] = 1
        next(v for v in layer.weights if v.name == "kernel").assign(codes)

    object.__setattr__(plain, "quantize", losing)
    with warnings.catch_warnings(), pytest.warns(tfprune.LostZerosWarning, match=r"mode .int8. made 3 weights"):
        warnings.filterwarnings("ignore", "Layer .* does not have a `quantize` method")
        assert tfprune.quantize(plain, "int8") == 3


def test_quantize_refuses_before_changing_anything():
    plain = _pruned_plain()
    wrapped = tfprune.wrap(plain)
    with pytest.raises(ValueError, match="call tfprune.strip"):
        tfprune.quantize(wrapped, "int8")
    with pytest.raises(ValueError, match="mode must be one of"):
        tfprune.quantize(plain, "int2")
    assert all(layer.quantization_mode is None for layer in plain.layers if hasattr(layer, "quantization_mode"))


def _pruned_blocks():
    """A stripped model with a Dense block, as Keras' GPTQ and AWQ quantize it (random masks, 80 %)."""
    tokens = keras.Input((8,), dtype="int32")
    block = keras.Sequential([keras.Input((8, 16)), L.Dense(32), L.ReLU(), L.Dense(16)], name="block")
    x = L.Flatten()(block(L.Embedding(100, 16)(tokens)))
    pruned = tfprune.prune_at_init(keras.Model(tokens, L.Dense(4)(x)), "random", sparsity=0.8, scope="local",
                                   include_bias=False, verbose=0, seed=0)
    return tfprune.strip(pruned)


@pytest.mark.parametrize("mode", ["gptq", "awq"])
def test_gptq_and_awq_zeros_counted_from_the_kernels_they_compute_with(mode):
    plain = _pruned_blocks()
    floats = {layer.name: layer.kernel.numpy() for layer in plain.get_layer("block").layers if layer.weights}
    expected = tfprune.profile(plain, verbose=0)
    copy = keras.models.clone_model(plain)
    copy.set_weights(plain.get_weights())
    config_class = {"gptq": keras.quantizers.GPTQConfig, "awq": keras.quantizers.AWQConfig}[mode]
    data = [np.random.default_rng(i).integers(0, 100, 32) for i in range(8)]
    config = config_class(dataset=data, tokenizer=object(),  # token ids: Keras needs a tokenizer only for text
                           num_samples=8, sequence_length=8, group_size=8,
                          quantization_layer_structure={"pre_block_layers": [copy.layers[1]],
                                                        "sequential_blocks": [copy.get_layer("block")]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras: layers without a quantize method
        lost = tfprune.quantize(copy, mode, config=config)
    lost_here, rounded = 0, 0
    for layer in copy.get_layer("block").layers:
        if not layer.weights:
            continue
        assert layer.quantization_mode == mode
        computed = keras.ops.convert_to_numpy(layer(np.eye(floats[layer.name].shape[0], dtype="float32"))) - layer.bias.numpy()
        zero, kernel_zero = floats[layer.name] == 0, computed == 0  # the kernel the layer multiplies by, read back
        kernel = next(v for v in layer.weights if v.name == "kernel")
        np.testing.assert_array_equal(tfprune.layers.quantized.dequantized_zero(layer, kernel), kernel_zero)
        lost_here += int(np.sum(zero & ~kernel_zero))
        rounded += int(np.sum(~zero & kernel_zero))
    assert lost == lost_here
    got = tfprune.profile(copy, verbose=0)
    assert got.total.params == expected.total.params and got.total.macs == expected.total.macs
    assert got.total.nonzero == expected.total.nonzero - rounded + lost_here
