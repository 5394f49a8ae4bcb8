"""Data as ``fit`` takes it, and the model's own loss (issue 27): SNIP on a two-input dict model and on a
U-Net with per-pixel labels and sample weights equals a plain ``tf.GradientTape`` oracle of
``|θ ⊙ ∂L/∂θ|``; the same data as a dict, a list, ``(x, y, sample_weight)``, a ``tf.data.Dataset`` and a
``PyDataset`` give the same masks; a compiled model's ``loss_weights``, sample weights and regularisers
count as in ``fit``; bad data is named before any work."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_unchanged, snapshot

import tfprune
from tfprune.autodiff.batches import scoring_batches
from tfprune.autodiff.gradients import effective_gradients

L = keras.layers
RNG = np.random.default_rng(7)
N = 32


def two_inputs():
    keras.utils.set_random_seed(1)
    image, meta = keras.Input((6,), name="image"), keras.Input((3,), name="meta")
    hidden = L.Dense(8, activation="relu", name="hidden")(L.Concatenate()([image, meta]))
    return keras.Model({"image": image, "meta": meta}, L.Dense(4, name="logits")(hidden), name="two_inputs")


X = {"image": RNG.normal(size=(N, 6)).astype("float32"), "meta": RNG.normal(size=(N, 3)).astype("float32")}
Y = RNG.integers(0, 4, N)
SW = RNG.uniform(0.1, 2.0, N).astype("float32")


def oracle_snip(model, loss_of_outputs, x):
    """``|θ ⊙ ∂L/∂θ|`` over the kernels, normalised to sum 1, by a plain GradientTape."""
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    with tf.GradientTape() as tape:
        loss = loss_of_outputs(model(x, training=False))
    grads = tape.gradient(loss, kernels)
    scores = [np.abs(k.numpy() * g.numpy()) for k, g in zip(kernels, grads)]
    total = sum(s.sum() for s in scores)
    return [s / total for s in scores]


def top_half(scores):
    flat = np.concatenate([s.ravel() for s in scores])
    threshold = np.sort(flat)[len(flat) // 2]
    return [s >= threshold for s in scores]


def test_snip_on_a_two_input_dict_model_equals_the_tape_oracle():
    model = two_inputs()
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = oracle_snip(model, lambda out: sce(Y, out, sample_weight=SW), X)
    scores = tfprune.scores.snip(model, tfprune.prunable_weights(model), (X, Y, SW), samples=N)
    for got, want in zip(scores, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9)


class Batches(keras.utils.PyDataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        part = slice(16 * i, 16 * i + 16)
        return {k: v[part] for k, v in X.items()}, Y[part], SW[part]


FORMS = {
    "dict": lambda: (X, Y, SW),
    "list in model.inputs order": lambda: ([X["image"], X["meta"]], Y, SW),
    "tf.data of dicts": lambda: tf.data.Dataset.from_tensor_slices((X, Y, SW)).batch(16),
    "PyDataset": Batches,
    "generator": lambda: (({k: v[i:i + 8] for k, v in X.items()}, Y[i:i + 8], SW[i:i + 8]) for i in range(0, N, 8)),
}


@pytest.fixture(scope="module")
def dict_masks():
    model = two_inputs()
    return tfprune.get_masks(tfprune.prune_at_init(model, "snip", sparsity=0.5, data=(X, Y, SW), samples=N, verbose=0))


@pytest.mark.parametrize("form", list(FORMS))
def test_every_form_of_the_data_gives_the_same_masks(form, dict_masks):
    model = two_inputs()
    pruned = tfprune.prune_at_init(model, "snip", sparsity=0.5, data=FORMS[form](), samples=N, verbose=0)
    for got, want in zip(tfprune.get_masks(pruned), dict_masks):
        np.testing.assert_array_equal(got, want)


def multi_output(compiled=True):
    keras.utils.set_random_seed(2)
    x = keras.Input((5,), name="features")
    hidden = L.Dense(6, activation="tanh", name="hidden", kernel_regularizer=keras.regularizers.L2(0.01))(x)
    model = keras.Model(x, {"cls": L.Dense(3, name="cls")(hidden), "reg": L.Dense(2, name="reg")(hidden)},
                        name="multi")
    if compiled:
        model.compile("sgd", loss={"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"},
                      loss_weights={"cls": 0.3, "reg": 2.0})
    return model


XM = RNG.normal(size=(N, 5)).astype("float32")
YM = {"cls": RNG.integers(0, 3, N), "reg": RNG.normal(size=(N, 2)).astype("float32")}


def test_a_compiled_models_loss_weights_sample_weights_and_regulariser_count_as_in_fit():
    """The gradient equals the one of 0.3·mean(w·CE) + 2·mean(w·MSE) + 0.01·‖W_hidden‖², by hand."""
    model = multi_output()
    targets = tfprune.prunable_weights(model)
    batches = scoring_batches(model, (XM, YM, SW), samples=N)
    got = effective_gradients(model, targets, batches)
    kernels = [t.variable for t in targets]
    with tf.GradientTape() as tape:
        out = model(XM, training=False)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(YM["cls"], out["cls"])
        mse = tf.reduce_mean(tf.square(out["reg"] - YM["reg"]), axis=-1)
        loss = 0.3 * tf.reduce_mean(SW * ce) + 2.0 * tf.reduce_mean(SW * mse) + 0.01 * tf.reduce_sum(
            tf.square(model.get_layer("hidden").kernel))
    want = tape.gradient(loss, kernels)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


def test_prune_at_init_scores_a_compiled_model_with_its_own_loss():
    """The wrapped copy is not compiled: the original's loss still scores it."""
    model = multi_output()
    expected = top_half(oracle_snip(model, lambda out: model.compute_loss(XM, YM, out, SW, training=False), XM))
    pruned = tfprune.prune_at_init(model, "snip", sparsity=0.5, data=(XM, YM, SW), samples=N, verbose=0,
                                   on_collapse="ignore")
    for got, want in zip(tfprune.get_masks(pruned), expected):
        np.testing.assert_array_equal(got, want)


def unet():
    keras.utils.set_random_seed(3)
    x = keras.Input((8, 8, 1), name="image")
    down = L.Conv2D(4, 3, padding="same", activation="relu", name="down")(x)
    mid = L.Conv2D(8, 3, padding="same", activation="relu", name="mid")(L.MaxPooling2D()(down))
    up = L.Concatenate()([down, L.UpSampling2D()(mid)])
    return keras.Model(x, L.Conv2D(3, 1, name="pixels")(up), name="unet")


XU = RNG.normal(size=(8, 8, 8, 1)).astype("float32")
YU = RNG.integers(0, 3, (8, 8, 8))
MASK = (RNG.random((8, 8, 8)) < 0.7).astype("float32")  # per-pixel sample weights: a padding mask


def test_snip_on_a_unet_with_per_pixel_labels_and_sample_weights():
    model = unet()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = oracle_snip(model, lambda out: sce(YU, out, sample_weight=MASK), XU)
    scores = tfprune.scores.snip(model, tfprune.prunable_weights(model), (XU, YU, MASK), samples=8)
    for got, want in zip(scores, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9)
    grasp = tfprune.scores.grasp(model, tfprune.prunable_weights(model), (XU, YU, MASK), samples=8, reinit_dense=False)
    assert all(np.isfinite(g).all() for g in grasp)  # temperature 1: per-pixel labels are not class ids
    with pytest.raises(ValueError, match=r"GraSP's temperature divides a classifier's logits for class-id labels.*"
                                         r"got y of shape \(8, 8, 8\).*leave temperature out"):
        tfprune.scores.grasp(model, tfprune.prunable_weights(model), (XU, YU), samples=8, temperature=200)


def test_an_uncompiled_model_with_labels_other_than_class_ids_is_told_to_compile_or_pass_a_loss():
    for model, data in [(unet(), (XU, YU)), (multi_output(compiled=False), (XM, YM))]:
        before = snapshot(model)
        with pytest.raises(ValueError, match=r"compile the model with the loss it trains with \(model\.compile\("
                                             r"loss=\.\.\.\)\), or pass loss="):
            tfprune.prune_at_init(model, "snip", sparsity=0.5, data=data, samples=8, verbose=0)
        assert_unchanged(model, before)
        assert not tfprune.is_wrapped(model)


BAD = [
    ("missing input", lambda: ({"image": X["image"]}, Y),
     r"data: x has no input 'meta': model 'two_inputs' takes 2 inputs \('image', 'meta'\)"),
    ("extra input", lambda: ({**X, "extra": X["meta"]}, Y), r"data: x has input\(s\) 'extra' the model does not take"),
    ("one array for two inputs", lambda: (X["image"], Y),
     r"data: x is one array but model 'two_inputs' takes 2 inputs"),
    ("three arrays", lambda: ([X["image"], X["meta"], X["meta"]], Y), r"data: x holds 3 arrays but model"),
    ("list of inputs taken for (x, y)", lambda: [X["image"], X["meta"]],
     r"data: x is one array but model 'two_inputs' takes 2 inputs"),
    ("nesting", lambda: ({"image": [X["image"]], "meta": X["meta"]}, Y), r"data: input 'image' must be one array"),
    ("shape", lambda: ({"image": X["image"][:, :5], "meta": X["meta"]}, Y),
     r"data: input 'image' has examples of shape \(5,\), but model 'two_inputs' takes inputs of shape \(6,\)"),
    ("lengths", lambda: ({"image": X["image"], "meta": X["meta"][:30]}, Y),
     r"data: input 'image' has 32 examples but input 'meta' has 30"),
    ("sample weights too short", lambda: (X, Y, SW[:20]),
     r"data: x has 32 examples but sample_weight has shape \(20,\)"),
    ("sample weights of the wrong shape", lambda: (X, Y, np.ones((N, 4))),
     r"data: sample_weight of shape \(32, 4\) does not fit labels of shape \(32,\)"),
    ("dataset with a missing input", lambda: tf.data.Dataset.from_tensor_slices(({"image": X["image"]}, Y)).batch(8),
     r"data yields x that has no input 'meta'"),
]


@pytest.mark.parametrize("make, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_data_is_named_before_any_work(make, message):
    model = two_inputs()
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        tfprune.prune_at_init(model, "snip", sparsity=0.5, data=make(), samples=N, verbose=0)
    assert_unchanged(model, before)


def test_labels_that_do_not_fit_a_compiled_loss_are_named():
    model = multi_output()
    with pytest.raises(ValueError, match=r"data: the labels do not fit the compiled loss of model 'multi'"):
        three_columns = YM["reg"][:, :1] * [[1, 1, 1]]  # the output has 2
        tfprune.prune_at_init(model, "snip", sparsity=0.5, data=(XM, {"cls": YM["cls"], "reg": three_columns}),
                              samples=N, verbose=0)
