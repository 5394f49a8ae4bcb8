"""Text models — Embedding(mask_zero=True) → LSTM → Dense, and a functional Transformer block
(Embedding, MultiHeadAttention, residual, LayerNormalization, feed-forward, pooling, Dense) —
pruned with SNIP and SynFlow, trained one step, stripped, saved and loaded.

The reference for predictions is Keras' own clone of the original model with dense ⊙ mask
written in: it handles the padding mask natively, so the wrapped and stripped models must match
it exactly, padded positions included.
"""

import keras
import numpy as np
import pytest
from helpers import L

import tfprune

VOCAB, LENGTH, CLASSES = 50, 12, 3


def lstm_classifier():
    inputs = keras.Input((LENGTH,), dtype="int32")
    x = L.Embedding(VOCAB, 8, mask_zero=True, name="embedding")(inputs)
    x = L.LSTM(8, name="lstm")(x)
    return keras.Model(inputs, L.Dense(CLASSES, name="head")(x), name="lstm_classifier")


def transformer_classifier():
    inputs = keras.Input((LENGTH,), dtype="int32")
    x = L.Embedding(VOCAB, 16, mask_zero=True, name="embedding")(inputs)
    attention = L.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(x, x)
    x = L.LayerNormalization(name="norm_1")(x + attention)
    ffn = L.Dense(16, name="ffn_out")(L.Dense(32, activation="relu", name="ffn_in")(x))
    x = L.LayerNormalization(name="norm_2")(x + ffn)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, L.Dense(CLASSES, name="head")(x), name="transformer")


MODELS = {"lstm": lstm_classifier, "transformer": transformer_classifier}
METHODS = {"snip": {"samples": 8}, "synflow": {"rounds": 3}}


def tokens(n=8, seed=0):
    """Token ids in [1, VOCAB) followed by padding zeros; sequence lengths 1..LENGTH."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, size=(n, LENGTH)).astype("int32")
    lengths = np.linspace(1, LENGTH, n).astype(int)
    x[np.arange(LENGTH) >= lengths[:, None]] = 0
    return x, rng.integers(0, CLASSES, n)


def keras_reference(original, wrapped):
    """Keras' clone of ``original`` with the wrapped model's dense ⊙ mask written in."""
    masked = {id(t.variable): t.variable.numpy() * t.mask.numpy() for t in tfprune.prunable_weights(wrapped)}
    reference = keras.models.clone_model(original)
    reference.set_weights([masked.get(id(v), v.numpy()) for v in original.weights])
    return reference


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_prune_fit_strip_save_load(name, method, tmp_path):
    """Exact kept count; masked weights untouched by fit; wrapped = Keras reference; stripped =
    dense ⊙ mask with the wrapped model's predictions; .keras save/load exact for both."""
    original = MODELS[name]()
    x, y = tokens()
    options = dict(METHODS[method], data=(x, y)) if tfprune.scores.get(method).needs_data else METHODS[method]
    # SynFlow empties the attention query/key kernels (no flow difference on identical tokens):
    # the collapse check has its own tests.
    wrapped = tfprune.prune_at_init(original, method, sparsity=0.5, verbose=0, on_collapse="ignore", **options)
    masks = tfprune.get_masks(wrapped)
    total = sum(m.size for m in masks)
    assert sum(int(m.sum()) for m in masks) == (total + 1) // 2  # ⌊0.5·N + ½⌋ kept
    kinds = {t.kind for t in tfprune.prunable_weights(wrapped)}
    assert kinds == {"embedding", "dense"} | ({"rnn", "rnn_recurrent"} if name == "lstm" else {"attention"})

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    wrapped.compile(keras.optimizers.SGD(0.1), loss, jit_compile=False)
    dense_before = [t.variable.numpy() for t in tfprune.prunable_weights(wrapped)]
    wrapped.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    dense_after = [t.variable.numpy() for t in tfprune.prunable_weights(wrapped)]
    for b, a, m in zip(dense_before, dense_after, masks):
        np.testing.assert_array_equal(a[~m], b[~m])  # masked weights get no gradient

    expected = keras_reference(original, wrapped)(x, training=False).numpy()
    np.testing.assert_array_equal(wrapped(x, training=False).numpy(), expected)
    plain = tfprune.strip(wrapped)
    assert not tfprune.is_wrapped(plain)
    for t, a, m in zip(tfprune.prunable_weights(plain), dense_after, masks):
        np.testing.assert_array_equal(t.variable.numpy(), np.where(m, a, 0.0))
    np.testing.assert_array_equal(plain(x, training=False).numpy(), wrapped(x, training=False).numpy())

    loaded = {}
    for label, model in [("wrapped", wrapped), ("stripped", plain)]:
        model.save(tmp_path / f"{label}.keras")
        loaded[label] = keras.models.load_model(tmp_path / f"{label}.keras")
        np.testing.assert_array_equal(loaded[label](x, training=False).numpy(), model(x, training=False).numpy())
    for a, b in zip(tfprune.get_masks(loaded["wrapped"]), masks):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_synflow_scores_every_embedding_row(name):
    """SynFlow's input for an Embedding is every token at once, so every row gets a score > 0."""
    wrapped = tfprune.wrap(MODELS[name]())
    targets = tfprune.prunable_weights(wrapped)
    scores = tfprune.scores.get("synflow")(wrapped, targets)
    (embedding,) = [np.asarray(s) for s, t in zip(scores, targets) if t.kind == "embedding"]
    assert embedding.shape == (VOCAB, targets[0].shape[1])
    assert np.all(np.abs(embedding).sum(axis=1) > 0)
