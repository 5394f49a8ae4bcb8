"""KerasHub models × every way tfprune prunes, trains, strips, saves and exports them (issue 27).

BertTextClassifier (dict inputs, class ids), GPT2CausalLM (dict inputs, next-token labels, the padding mask as
sample weights) and ViTImageClassifier (images), from tiny configs built offline. Every cell asserts exact kept
counts per tensor (``kept_count(0.5, size)``, local scope); where TFLite cannot convert a model (GPT-2's tied
embedding), the message tfprune gives is asserted. Predictions of stripped and reloaded models are compared bit for bit: the same
weights (a kept weight times 1, a removed one times 0 is exact) run through the same CPU kernels.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.callbacks import DynamicSparse, GradualPruning
from tfprune.layers.wrapping import WrappedModel
from tfprune.schedules import ConstantSparsity
from tfprune.sparsity.masks import kept_count

keras_hub = pytest.importorskip("keras_hub")

N, LENGTH, SPARSITY = 4, 8, 0.5
MODELS = ("bert", "gpt2", "vit")
pytestmark = pytest.mark.filterwarnings("ignore:The weights of these layers are not pruned",
                                        "ignore:`compile\\(\\)` was not called")


def build(name, seed=0):
    """A freshly initialised tiny KerasHub task, compiled with its own loss."""
    keras.utils.set_random_seed(seed)
    sizes = dict(num_layers=1, num_heads=2, hidden_dim=8)
    if name == "bert":
        backbone = keras_hub.models.BertBackbone(vocabulary_size=30, intermediate_dim=16,
                                                 max_sequence_length=LENGTH, **sizes)
        return keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=3, preprocessor=None)
    if name == "gpt2":
        backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50, intermediate_dim=16,
                                                 max_sequence_length=LENGTH, **sizes)
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    backbone = keras_hub.models.ViTBackbone(image_shape=(8, 8, 3), patch_size=4, mlp_dim=16, **sizes)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3, preprocessor=None)


def data(name):
    """``(x, y)`` or ``(x, y, sample_weight)`` as ``fit`` takes it for the model ``name``."""
    rng = np.random.default_rng(1)
    padding = (np.arange(LENGTH) < rng.integers(5, LENGTH + 1, (N, 1))).astype("int32")
    if name == "bert":
        x = {"token_ids": rng.integers(1, 30, (N, LENGTH)).astype("int32") * padding,
             "segment_ids": np.zeros((N, LENGTH), "int32"), "padding_mask": padding}
        return x, rng.integers(0, 3, N)
    if name == "gpt2":
        x = {"token_ids": rng.integers(1, 50, (N, LENGTH)).astype("int32") * padding, "padding_mask": padding}
        return x, np.roll(x["token_ids"], -1, axis=1), padding
    return rng.normal(size=(N, 8, 8, 3)).astype("float32"), rng.integers(0, 3, N)


def input_shapes(name):
    """SynFlow's ``input_shape``: one per named input of a text model, none for the ViT (its shape is known)."""
    return None if name == "vit" else {i.name: (LENGTH,) for i in build_once(name).inputs}


_BUILT = {}


def build_once(name):
    """One model per kind for the tests that only read its weights: pruning at init sets masks, never weights."""
    if name not in _BUILT:
        _BUILT[name] = build(name)
    return _BUILT[name]


def outputs_of(model, x):
    """The model's outputs on ``x`` in inference mode, called eagerly (no predict function to trace)."""
    return np.asarray(model(x, training=False))


def assert_exact_counts(masks):
    assert masks and [int(m.sum()) for m in masks] == [kept_count(SPARSITY, m.size) for m in masks]


@pytest.mark.parametrize("name", MODELS)
def test_snip_equals_the_tape_oracle_of_the_models_own_loss(name):
    """``|θ ⊙ ∂L/∂θ|`` with ``L = model.compute_loss`` (GPT-2's padding mask as sample weights) by a plain tape."""
    model = build_once(name)
    x, y, *weights = data(name)
    targets = tfprune.prunable_weights(model)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=False), *weights, training=False)
    grads = tape.gradient(loss, [t.variable for t in targets])
    oracle = [np.abs(t.variable.numpy() * tf.convert_to_tensor(g).numpy()) for t, g in zip(targets, grads)]
    pruned = tfprune.prune_at_init(model, "snip", sparsity=SPARSITY, scope="local", data=(x, y, *weights),
                                   samples=N, verbose=0)
    masks = tfprune.get_masks(pruned)
    assert_exact_counts(masks)
    for mask, score in zip(masks, oracle):
        threshold = np.sort(score.ravel())[::-1][kept_count(SPARSITY, mask.size) - 1]
        assert np.all(score[mask] >= threshold) and np.all(score[~mask] <= threshold)


@pytest.mark.parametrize("criterion", ["grasp", "synflow"])
@pytest.mark.parametrize("name", MODELS)
def test_grasp_and_synflow_keep_exact_counts(name, criterion):
    options = {"data": data(name), "samples": N} if criterion == "grasp" else {"input_shape": input_shapes(name),
                                                                                "rounds": 5}  # 100 by default
    pruned = tfprune.prune_at_init(build_once(name), criterion, sparsity=SPARSITY, scope="local", verbose=0,
                                   **options)
    assert_exact_counts(tfprune.get_masks(pruned))


def fit_with(name, callback):
    """Wraps a fresh model, trains it one epoch of two steps with its own loss and ``callback``; the wrapped model.
    Eagerly: the callbacks act between steps, the same in graph mode, and two steps cost less than a trace."""
    model = build(name)
    wrapped = tfprune.wrap(model)
    wrapped.compile(optimizer="sgd", loss=model.loss, run_eagerly=True)
    x, y, *weights = data(name)
    wrapped.fit(x, y, sample_weight=weights[0] if weights else None, batch_size=N // 2, epochs=1, verbose=0,
                callbacks=[callback])
    return wrapped


@pytest.mark.parametrize("name", MODELS)
def test_gradual_pruning_in_fit_keeps_exact_counts(name):
    pruning = GradualPruning(ConstantSparsity(SPARSITY, 0, frequency=1))
    wrapped = fit_with(name, pruning)
    assert [u.step for u in pruning.updates] == [0, 1]
    assert_exact_counts(tfprune.get_masks(wrapped))


@pytest.mark.parametrize("name", MODELS)
def test_rigl_in_fit_moves_connections_and_keeps_exact_counts(name):
    rigl = DynamicSparse("rigl", SPARSITY, allocation="uniform", update_frequency=1, end_step=2, data=data(name),
                         seed=0)
    wrapped = fit_with(name, rigl)
    assert [u.step for u in rigl.updates] == [1] and sum(rigl.updates[0].moved.values()) > 0  # step 0 draws
    assert_exact_counts(tfprune.get_masks(wrapped))


_STRIPPED = {}


def stripped(name):
    """``(model, masks, dense weights, wrapped outputs)`` of a fresh model pruned by magnitude and stripped, once
    per kind (saving and exporting read the stripped model, never change it)."""
    if name not in _STRIPPED:
        model = build(name)
        pruned = tfprune.prune_at_init(model, "magnitude", sparsity=SPARSITY, scope="local", verbose=0)
        targets = tfprune.prunable_weights(pruned)
        dense = [t.variable.numpy() for t in targets]
        outputs = outputs_of(pruned, data(name)[0])
        _STRIPPED[name] = tfprune.strip(pruned), tfprune.get_masks(pruned), dense, outputs
    return _STRIPPED[name]


def zeros_where_masks_are_off(model, masks, dense):
    """Each masked weight of ``model`` (in ``prunable_weights`` order) is 0 where its mask is off, else unchanged."""
    values = [t.variable.numpy() for t in tfprune.prunable_weights(model)]
    assert len(values) == len(masks)
    for value, mask, before in zip(values, masks, dense):
        np.testing.assert_array_equal(value, np.where(mask, before, 0))
        assert np.count_nonzero(value) == kept_count(SPARSITY, mask.size)  # initial weights hold no exact zero


@pytest.mark.parametrize("name", MODELS)
def test_magnitude_keeps_the_largest_weights_of_every_tensor(name):
    _, masks, dense, _ = stripped(name)
    assert_exact_counts(masks)
    for mask, weight in zip(masks, dense):
        assert np.abs(weight[mask]).min() >= np.abs(weight[~mask]).max()


@pytest.mark.parametrize("name", MODELS)
def test_strip_keeps_the_class_and_zeros_exactly_the_masked_weights(name):
    model, masks, dense, outputs = stripped(name)
    assert type(model) is type(build_once(name))
    zeros_where_masks_are_off(model, masks, dense)
    np.testing.assert_array_equal(outputs_of(model, data(name)[0]), outputs)


@pytest.mark.parametrize("name", MODELS)
def test_a_stripped_model_reloads_with_its_class_zeros_and_predictions(name, tmp_path):
    model, masks, dense, outputs = stripped(name)
    model.save(tmp_path / "stripped.keras")
    reloaded = keras.models.load_model(tmp_path / "stripped.keras")
    assert type(reloaded) is type(model)
    zeros_where_masks_are_off(reloaded, masks, dense)
    np.testing.assert_array_equal(outputs_of(reloaded, data(name)[0]), outputs)


def assert_same_wrapped(reloaded, wrapped, x):
    assert all(np.array_equal(a, b) for a, b in zip(tfprune.get_masks(reloaded), tfprune.get_masks(wrapped)))
    assert len(tfprune.get_masks(reloaded)) == len(tfprune.get_masks(wrapped))
    np.testing.assert_array_equal(outputs_of(reloaded, x), outputs_of(wrapped, x))


@pytest.mark.parametrize("name", MODELS)
def test_a_wrapped_model_reloads_with_its_masks_and_predictions_and_strips_to_its_class(name, tmp_path):
    """A KerasHub task wraps into a WrappedModel, saved as the task's config and its masked weights: GPT-2's tied
    embedding and the ViT's patching layer (whose config its constructor refuses) reload as BERT does."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        wrapped = tfprune.prune_at_init(build(name), "magnitude", sparsity=SPARSITY, scope="local", verbose=0)
    assert type(wrapped) is WrappedModel and not [w for w in warned if "load_model" in str(w.message)]
    wrapped.save(tmp_path / "wrapped.keras")
    reloaded = keras.models.load_model(tmp_path / "wrapped.keras")
    assert type(reloaded) is WrappedModel
    masks = tfprune.get_masks(reloaded)
    assert_exact_counts(masks)
    assert_same_wrapped(reloaded, wrapped, data(name)[0])
    dense = [t.variable.numpy() for t in tfprune.prunable_weights(reloaded)]
    plain = tfprune.strip(reloaded)
    assert type(plain) is type(build_once(name))
    zeros_where_masks_are_off(plain, masks, dense)
    np.testing.assert_array_equal(outputs_of(plain, data(name)[0]), outputs_of(wrapped, data(name)[0]))


@pytest.mark.parametrize("name", ["bert", "vit"])
def test_tflite_export_stores_every_pruned_matrix_with_its_kept_count(name, tmp_path):
    """Dict check_data for BERT, an array for the ViT. TFLite stores the matrices and the ViT's patch convolution
    sparse (4 attention projections, 2 feed-forward, the pooler or patch kernel, the head: 8), not gathered tables."""
    model = stripped(name)[0]
    report = tfprune.export.tflite(model, tmp_path / "model.tflite", check_data=data(name)[0])
    assert report.examples == N and report.max_abs_diff <= report.tolerance
    assert len(report.sparse_tensors) == 8
    assert all(s.stored == kept_count(SPARSITY, int(np.prod(s.shape))) for s in report.sparse_tensors)


def test_tflite_names_the_sparsity_pass_a_tied_embedding_breaks(tmp_path):
    """GPT-2 reads its token embedding in a GATHER and in the logits' MatMul: TFLite's sparsity pass fails on it."""
    model, x = stripped("gpt2")[0], data("gpt2")[0]
    with pytest.raises(tfprune.export.ConversionError,
                       match=r"TFLite's sparsity pass \(EXPERIMENTAL_SPARSITY\) cannot store the weights of model "
                             r"'gpt2_causal_lm.*' sparse.*; the model converts with sparse=False"):
        tfprune.export.tflite(model, tmp_path / "lm.tflite", check_data=x)
    assert not list(tmp_path.iterdir())  # the error comes after a conversion without the pass succeeded
