"""KerasHub models from tiny configs (no presets, nothing downloads), pruned with their dict inputs (issue 27):
SNIP on a BertTextClassifier equals a GradientTape oracle of its compiled loss; GraSP scores its embeddings;
SynFlow ranks every tensor of the backbone at a given input_shape per input; the stripped model exports to TFLite
with dict check_data."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.sparsity.masks import kept_count

keras_hub = pytest.importorskip("keras_hub")

N, LENGTH = 16, 12


def bert_classifier():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=LENGTH)
    return keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=3, preprocessor=None)


def tokens():
    rng = np.random.default_rng(0)
    mask = (np.arange(LENGTH) < rng.integers(6, LENGTH + 1, (N, 1))).astype("int32")  # padded sequences
    x = {"token_ids": rng.integers(1, 30, (N, LENGTH)).astype("int32") * mask,
         "segment_ids": np.zeros((N, LENGTH), "int32"), "padding_mask": mask}
    return x, rng.integers(0, 3, N)


def test_snip_on_a_bert_classifier_with_dict_inputs_equals_the_tape_oracle():
    model = bert_classifier()
    assert model.compiled  # KerasHub tasks compile with their own loss: it is what scores
    x, y = tokens()
    targets = tfprune.prunable_weights(model)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=False), training=False)
    grads = tape.gradient(loss, [t.variable for t in targets])
    expected = [np.abs(t.variable.numpy() * tf.convert_to_tensor(g).numpy()) for t, g in zip(targets, grads)]
    total = sum(e.sum() for e in expected)
    scores = tfprune.scores.snip(model, targets, (x, y), samples=N)
    for got, want in zip(scores, expected):
        np.testing.assert_allclose(got, want / total, rtol=1e-4, atol=1e-9)

    pruned = tfprune.prune_at_init(model, "snip", sparsity=0.5, scope="local", data=(x, y), samples=N, verbose=0)
    for mask, want in zip(tfprune.get_masks(pruned), expected):
        assert mask.sum() == kept_count(0.5, mask.size)
        threshold = np.sort(want.ravel())[::-1][kept_count(0.5, mask.size) - 1]
        assert np.all(want[mask] >= threshold) and np.all(want[~mask] <= threshold)


def test_grasp_and_synflow_rank_every_tensor_of_bert():
    model = bert_classifier()
    x, y = tokens()
    targets = tfprune.prunable_weights(model)
    grasp = tfprune.scores.grasp(model, targets, (x, y), samples=N)
    assert all(np.isfinite(s).all() and s.max() > s.min() for s in grasp)
    backbone = model.backbone
    shapes = {name: (LENGTH,) for name in ("token_ids", "segment_ids", "padding_mask")}
    synflow = tfprune.scores.synflow(backbone, tfprune.prunable_weights(backbone), input_shape=shapes)
    assert all(s.max() > s.min() for s in synflow)


def test_a_pruned_bert_exports_to_tflite_with_dict_check_data(tmp_path):
    model = bert_classifier()
    x, y = tokens()
    pruned = tfprune.prune_at_init(model, "snip", sparsity=0.5, scope="local", data=(x, y), samples=N, verbose=0)
    report = tfprune.export.tflite(tfprune.strip(pruned), tmp_path / "bert.tflite", check_data=x)
    assert report.examples == N and report.max_abs_diff <= report.tolerance


def test_a_stripped_gpt2_causal_lm_is_a_gpt2_causal_lm_that_generates():
    """Per-token labels (the next token) and a padding mask as sample weights; strip writes the zeros into the
    GPT2CausalLM itself, which keeps its class and generate()."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=LENGTH)
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    x, _ = tokens()
    x = {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]}
    y = np.roll(x["token_ids"], -1, axis=1)
    pruned = tfprune.prune_at_init(lm, "snip", sparsity=0.5, scope="local", data=(x, y, x["padding_mask"]),
                                   samples=N, verbose=0)
    wrapped_logits = np.asarray(pruned(x))
    masks = tfprune.get_masks(pruned)
    stripped = tfprune.strip(pruned)
    assert type(stripped) is keras_hub.models.GPT2CausalLM and stripped is lm
    np.testing.assert_array_equal(np.asarray(stripped(x)), wrapped_logits)
    for t, mask in zip(tfprune.prunable_weights(pruned), masks):
        assert np.count_nonzero(t.variable.numpy()[~mask]) == 0 and mask.sum() == kept_count(0.5, mask.size)
    prompt = {"token_ids": np.pad(x["token_ids"][:2, :4], ((0, 0), (0, LENGTH - 4))),
              "padding_mask": np.pad(np.ones((2, 4), "int32"), ((0, 0), (0, LENGTH - 4)))}
    generated = stripped.generate(prompt, max_length=8, stop_token_ids=None)
    np.testing.assert_array_equal(generated["token_ids"][:, :4], prompt["token_ids"][:, :4])
    assert generated["padding_mask"][:, :8].all()
