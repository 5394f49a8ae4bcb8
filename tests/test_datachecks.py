"""Data checked at the door (issue 16, item 2): scorers, structured criteria, structured.prune and
training.fit name the problem with the data and its numbers, and change nothing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_unchanged, mlp64, snapshot

import tfprune
from tfprune.analysis import datachecks
from tfprune import structured, training


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    return rng.random((64, 64)).astype("float32"), np.arange(64) % 10


def _nan_at(x, row):
    x = x.copy()
    x[row, 5] = np.nan
    return x


BAD = [
    ("labels too large", lambda x, y: (x, y + 5),
     r"data: labels must be class ids in \[0, 10\) — model '\w+' has 10 outputs — but 30 of 64 are outside it "
     r"\(min 5, max 14; first at example 5: 10\)"),
    ("negative labels", lambda x, y: (x, y - 1),
     r"but 7 of 64 are outside it \(min -1, max 8; first at example 0: -1\)"),
    ("lengths", lambda x, y: (x, y[:30]), r"data: x has 64 examples but y has 30 labels \(shape \(30,\)\)"),
    ("one-hot", lambda x, y: (x, np.eye(10)[y]),
     r"y of shape \(64, 10\) holds one-hot rows of the 10 classes.*pass y\.argmax\(-1\), or, to a criterion, "
     r"loss='categorical_crossentropy'"),
    ("features", lambda x, y: (x[:, :60], y),
     r"data: x has examples of shape \(60,\), but model '\w+' takes inputs of shape \(64,\)"),
    ("empty", lambda x, y: (x[:0], y[:0]), r"data holds no examples \(x has shape \(0, 64\)\)"),
    ("empty dataset", lambda x, y: tf.data.Dataset.from_tensor_slices((x[:0], y[:0])).batch(8),
     r"data holds no batches"),
    ("x only", lambda x, y: x, r"data is a single array of shape \(64, 64\): x without labels"),
    ("fractional labels", lambda x, y: (x, y + 0.5), r"labels must be integer class ids, got 64 fractional"),
    ("unbatched dataset", lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)),
     r"data yields single examples \(x of shape \(64,\)\).*batch the dataset, e\.g\. data\.batch\(32\)"),
    ("dataset of x", lambda x, y: tf.data.Dataset.from_tensor_slices(x).batch(8),
     r"data is a dataset of single tensors .*x without labels"),
    ("bad labels in batch 1",
     lambda x, y: tf.data.Dataset.from_tensor_slices((x, np.where(np.arange(64) == 9, 10, y))).batch(8),
     r"batch 1 of data: labels must be class ids in \[0, 10\).*1 of 8 are outside it \(min 0, max 10; first at "
     r"example 1: 10\)"),
    ("NaN in x", lambda x, y: (_nan_at(x, 3), y),
     r"data: x holds 1 NaN and 0 infinite values \(of 4096; first at example 3\): the data, not the model"),
]


@pytest.mark.parametrize("make, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_snip_names_the_problem_and_changes_nothing(xy, make, message):
    model = mlp64()
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        tfprune.prune_at_init(model, "snip", sparsity=0.5, data=make(*xy), samples=64, verbose=0)
    assert not tfprune.is_wrapped(model)
    assert_unchanged(model, before)


def test_structured_prune_and_criteria_check_their_data(xy):
    x, y = xy
    model = mlp64()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"data: x has 64 examples but y has 63 labels"):
        structured.prune(model, "l1", data=(x, y[:63]), kept_params=0.5, verbose=0)
    with pytest.raises(ValueError, match=r"validation: labels must be class ids in \[0, 10\).*max 19"):
        structured.prune(model, "l1", data=(x, y), validation=(x, y + 10), kept_params=0.5, verbose=0)
    with pytest.raises(ValueError, match=r"data must be \(x, y\) or \(x, y, sample_weight\) arrays here"):
        structured.prune(model, "l1", data=tf.data.Dataset.from_tensor_slices((x, y)).batch(8), kept_params=0.5,
                         verbose=0)
    with pytest.raises(ValueError, match=r"data: x has examples of shape \(32,\)"):
        structured.criteria.get("taylor")(model, data=(x[:, :32], y))
    assert_unchanged(model, before)


def test_training_checks_train_and_validation(xy):
    x, y = xy
    model = mlp64()
    before = snapshot(model)
    recipe = training.Recipe(epochs=1, batch_size=16)
    with pytest.raises(ValueError, match=r"train: x has 64 examples but y has 32 labels"):
        training.fit(model, (x, y[:32]), recipe)
    with pytest.raises(ValueError, match=r"validation: y of shape \(64, 10\) holds one-hot rows"):
        training.fit(model, (x, y), recipe, validation=(x, np.eye(10)[y]))
    assert_unchanged(model, before)


def test_accepted_label_forms_give_the_same_snip_scores(xy):
    """(N,) int, (N, 1) int and whole-float labels are class ids; one-hot labels with
    CategoricalCrossentropy(from_logits=True) are not checked as ids — all four give the same SNIP scores
    (the same cross-entropy)."""
    x, y = xy
    model = mlp64()
    reference = tfprune.scores.snip(model, tfprune.prunable_weights(model), (x, y))
    one_hot = keras.losses.CategoricalCrossentropy(from_logits=True)
    for data, options in [((x, y[:, None]), {}), ((x, y.astype("float32")), {}),
                          ((x, np.eye(10, dtype="float32")[y]), {"loss": one_hot})]:
        twin = mlp64()  # a model per label form: a scorer's compiled step is traced for one label rank
        twin.set_weights(model.get_weights())
        for got, want in zip(tfprune.scores.snip(twin, tfprune.prunable_weights(twin), data, **options), reference):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_check_data_directly(xy):
    """The door itself: quiet on good data and on a batched dataset; a custom loss skips label checks."""
    x, y = xy
    model = mlp64()
    assert datachecks.check_data(model, (x, y)) is None
    assert datachecks.check_data(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(8)) is None
    assert datachecks.check_data(model, (x, np.eye(10)[y]), class_ids=False) is None
    with pytest.raises(ValueError, match=r"validation: labels must be class ids in \[0, 10\).*\(min 0, max 12"):
        datachecks.check_data(model, (x, np.where(y == 9, 12, y)), name="validation")
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 10\).*1 of 5 are outside"):
        datachecks.check_data(model, (x, np.r_[10, y[1:]]), examples=5)
    assert datachecks.check_data(model, (x, np.r_[y[:5], [10] * 59]), examples=5) is None  # only 5 are read
    with pytest.raises(TypeError, match="got int"):
        datachecks.check_data(model, 3)
