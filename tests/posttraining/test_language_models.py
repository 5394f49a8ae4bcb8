"""Post-training pruning of tiny KerasHub causal LMs built from configs (nothing downloads): GPT-2
(with a tokenizer built here, calibrated on strings) and Llama (token ids); exact sparsity in
every linear layer, N:M groups along each kernel's reduction axis, generate() after pruning and,
for a wrapped model, after strip; the blocks of Keras' quantization hook give what the layers in
order give; one pass per block."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import _compat

keras_hub = pytest.importorskip("keras_hub")

LETTERS = "abcdefgh"
SEQUENCE = 16


def gpt2_tokenizer():
    vocabulary = {"<|endoftext|>": 0}
    for letter in LETTERS:
        vocabulary[letter] = len(vocabulary)
        vocabulary["Ġ" + letter] = len(vocabulary)
    vocabulary["Ġ"] = len(vocabulary)
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=[f"Ġ {c}" for c in LETTERS])


def gpt2(preprocessor=True):
    tokenizer = gpt2_tokenizer()
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
                                             hidden_dim=32, intermediate_dim=64, max_sequence_length=32)
    pre = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer=tokenizer, sequence_length=SEQUENCE) if preprocessor \
        else None
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=pre)


def llama():
    backbone = keras_hub.models.LlamaBackbone(vocabulary_size=40, num_layers=2, num_query_heads=4,
                                              num_key_value_heads=2, hidden_dim=32, intermediate_dim=64)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def texts(n=24, seed=0):
    """Strings longer than the sequence length, so that no calibration sequence is padded."""
    rng = np.random.default_rng(seed)
    return [" ".join("".join(rng.choice(list(LETTERS), 2)) for _ in range(12)) for _ in range(n)]


def token_ids(n=16, vocabulary=40, seed=0):
    ids = np.random.default_rng(seed).integers(1, vocabulary, (n, SEQUENCE)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def linear_kernels(model):
    return [t for t in tfprune.prunable_weights(model) if tfprune.posttraining.linear.is_linear(t)]


def check_pruned(model, pattern, count):
    kernels = linear_kernels(model)
    assert len(kernels) == count
    for t in kernels:
        kernel = t.variable.numpy()
        assert np.mean(kernel == 0) == 0.5, t.name
        if pattern:  # 2 zeros in every 4 consecutive entries along the reduction axis
            groups = np.moveaxis(kernel, t.reduction_axis, -1).reshape(-1, 4)
            assert np.all((groups == 0).sum(axis=1) == 2), t.name


@pytest.mark.parametrize("criterion,pattern", [("wanda", None), ("sparsegpt", "2:4")])
def test_gpt2_prunes_exactly_and_generates(criterion, pattern):
    lm = gpt2()
    tfprune.posttraining.prune(lm, criterion, data=texts(), sparsity=None if pattern else 0.5, pattern=pattern,
                               samples=24, verbose=0)
    check_pruned(lm, pattern, 12)  # 2 blocks × (query, key, value, attention output, two feed-forward)
    assert isinstance(lm.generate("ab cd", max_length=12), str)


@pytest.mark.parametrize("criterion,pattern", [("sparsegpt", None), ("wanda", "2:4")])
def test_llama_prunes_exactly_and_generates(criterion, pattern):
    lm = llama()
    tfprune.posttraining.prune(lm, criterion, data=token_ids(), sparsity=None if pattern else 0.5, pattern=pattern,
                               verbose=0)
    check_pruned(lm, pattern, 14)  # 2 blocks × (query, key, value, attention output, gate, up, down)
    prompt = {"token_ids": token_ids(2)["token_ids"], "padding_mask": np.arange(SEQUENCE)[None, :].repeat(2, 0) < 4}
    out = lm.generate(prompt, max_length=SEQUENCE, stop_token_ids=None)
    np.testing.assert_array_equal(out["token_ids"][:, :4], prompt["token_ids"][:, :4])


def test_quantization_hook_blocks_equal_layers_in_order():
    """The causal LM is pruned through its `get_quantization_layer_structure` blocks (embedding, then
    each transformer block on the pruned one's outputs); its backbone alone, with the same weights,
    through the layers in order (the whole model run per block): both give the same weights."""
    lm = gpt2(preprocessor=False)
    backbone = keras_hub.models.GPT2Backbone.from_config(lm.backbone.get_config())
    backbone.set_weights(lm.backbone.get_weights())
    data = token_ids(vocabulary=17)
    for model in (lm, backbone):
        tfprune.posttraining.prune(model, "sparsegpt", data=data, sparsity=0.5, verbose=0)
    for a, b in zip(lm.backbone.get_weights(), backbone.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_one_pass_per_block():
    """Each block runs twice per batch (recording, then its pruned outputs for the next block), the
    last once: earlier blocks are never run again and only one block's inputs are held."""
    lm = gpt2(preprocessor=False)
    blocks = lm.backbone.transformer_layers
    calls = {block.name: 0 for block in blocks}

    def count(layer, _):
        calls[layer.name] += 1

    with _compat.observed_inputs(blocks, count):
        tfprune.posttraining.prune(lm, "wanda", data=token_ids(vocabulary=17), sparsity=0.5, batch_size=4, verbose=0)
    assert list(calls.values()) == [8, 4]


def test_wrapped_backbone_prunes_masks_and_strips():
    backbone = gpt2(preprocessor=False).backbone
    wrapped = tfprune.wrap(backbone)
    data = token_ids(vocabulary=17)
    tfprune.posttraining.prune(wrapped, "sparsegpt", data=data, pattern="2:4", verbose=0)
    masks = {t.name: m for t, m in zip(tfprune.prunable_weights(wrapped), tfprune.get_masks(wrapped))}
    assert [name for name, m in masks.items() if m.mean() == 1.0] == ["token_embedding/embeddings"]
    assert len(masks) == 13 and all(m.mean() == 0.5 for name, m in masks.items() if "embedding" not in name)
    stripped = tfprune.strip(wrapped)
    np.testing.assert_allclose(stripped(data), wrapped(data), rtol=1e-5, atol=1e-5)


def test_token_ids_outside_the_vocabulary_do_not_fit():
    lm = llama()
    before = [w.copy() for w in lm.get_weights()]
    with pytest.raises(ValueError, match="data does not fit model"):
        tfprune.posttraining.prune(lm, "wanda", data=token_ids(vocabulary=400), sparsity=0.5, verbose=0)
    for a, b in zip(lm.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:Layer .* does not have a `quantize` method")
def test_pruned_then_int8_keeps_the_zeros_and_generates():
    """Keras' own int8 quantization after pruning: every pruned weight is still 0 in the int8 kernels."""
    lm = gpt2(preprocessor=False)
    tfprune.posttraining.prune(lm, "wanda", data=token_ids(vocabulary=17), sparsity=0.5, verbose=0)
    pruned = [(t.layer, t.variable.numpy() == 0) for t in linear_kernels(lm)]
    lm.quantize("int8")  # changes the layers in place
    for layer, zero in pruned:
        quantized = keras.ops.convert_to_numpy(layer.kernel)
        assert quantized.dtype == np.int8 and np.all(quantized[zero] == 0), layer.path
    prompt = token_ids(2, vocabulary=17)
    assert lm.generate(prompt, max_length=SEQUENCE, stop_token_ids=None)["token_ids"].shape == (2, SEQUENCE)


def test_wrapped_causal_lm_pruned_then_stripped_is_the_causal_lm_and_generates():
    """Pruned through its masks, then stripped: the same GPT2CausalLM, zeros written in, generate() runs."""
    lm = gpt2()
    wrapped = tfprune.wrap(lm)
    tfprune.posttraining.prune(wrapped, "wanda", data=token_ids(vocabulary=17), sparsity=0.5, verbose=0)
    stripped = tfprune.strip(wrapped)
    assert isinstance(stripped, keras_hub.models.GPT2CausalLM)
    check_pruned(stripped, None, 12)
    assert isinstance(stripped.generate("ab cd", max_length=12), str)
