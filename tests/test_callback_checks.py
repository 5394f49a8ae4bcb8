"""Callbacks refuse what would fail during ``fit`` at construction or when ``fit`` starts, before the
first step: RigL data that the compiled loss cannot take, and TensorBoard folders that cannot be
written. Every refusal leaves the model's variables bit-identical and the optimizer at step 0."""

import os

import keras
import numpy as np
import pytest

import tfprune
from tfprune import ArgumentError
from tfprune.callbacks import DynamicSparse, PruningSummaries

N = 48


def mlp():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden), name="mlp")


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, 8)).astype("float32"), rng.integers(0, 3, N)


def wrapped(loss="sparse_categorical_crossentropy"):
    model = tfprune.wrap(mlp())
    model.compile("adam", loss)
    return model


def state(model):
    """Every variable of the model, bit for bit, and the optimizer's step."""
    return [np.asarray(v.numpy()).tobytes() for v in model.variables], int(model.optimizer.iterations.numpy())


def refused_before_the_first_step(model, callback, error):
    """Fits ``model`` with ``callback``, expecting ``error`` before any step; returns its message."""
    x, y = data()
    before = state(model)
    with pytest.raises(error) as info:
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    assert state(model) == before and before[1] == 0
    return str(info.value)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy",
                                  keras.losses.SparseCategoricalCrossentropy(from_logits=True)], ids=["name", "object"])
def test_rigl_with_one_hot_labels_is_refused_before_the_first_step(loss):
    """RigL reads its data through the data path prune_at_init uses: one-hot rows against a compiled
    sparse cross-entropy are named with the loss before the first step, not as Keras' rank error mid-fit."""
    x, y = data()
    one_hot = np.eye(3, dtype="float32")[y]
    rigl = DynamicSparse("rigl", 0.5, end_step=10, data=(x, one_hot))
    message = refused_before_the_first_step(wrapped(loss), rigl, ValueError)
    assert message.startswith("data: the labels do not fit the compiled loss of model")
    assert "Received: target.shape=(2, 3)" in message
    assert rigl.updates == []


def test_rigl_with_labels_the_compiled_loss_cannot_take_is_refused():
    x, y = data()  # class ids, but a loss that takes one-hot rows
    rigl = DynamicSparse("rigl", 0.5, end_step=10, data=(x, y))
    message = refused_before_the_first_step(wrapped("categorical_crossentropy"), rigl, ValueError)
    assert message.startswith("data: the labels do not fit the compiled loss of model")


def test_rigl_with_fitting_data_still_trains():
    x, y = data()
    model = wrapped()
    rigl = DynamicSparse("rigl", 0.5, update_frequency=2, end_step=3, data=(x, y), seed=0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[rigl])
    assert [u.step for u in rigl.updates] == [2]


def test_pruning_summaries_refuses_a_log_dir_that_is_not_a_path():
    with pytest.raises(ArgumentError) as info:
        PruningSummaries(None)
    assert str(info.value) == "log_dir must be a path (a non-empty str or os.PathLike), got None"


def test_pruning_summaries_refuses_a_file_and_a_folder_under_a_file(tmp_path):
    log_file = tmp_path / "events"
    log_file.write_text("not a folder")
    with pytest.raises(NotADirectoryError) as info:
        PruningSummaries(log_file)
    assert str(info.value) == f"log_dir {str(log_file)!r} is a file: give a folder"
    with pytest.raises(NotADirectoryError) as info:
        PruningSummaries(log_file / "run1" / "logs")
    assert str(info.value) == (f"log_dir {str(log_file / 'run1' / 'logs')!r} lies under the file {str(log_file)!r}: "
                               "give a folder")
    assert sorted(os.listdir(tmp_path)) == ["events"]


def test_pruning_summaries_refuses_a_read_only_folder(tmp_path, monkeypatch):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and os.fspath(path) != str(read_only))
    for log_dir in (read_only, read_only / "new" / "run"):
        with pytest.raises(PermissionError) as info:
            PruningSummaries(log_dir)
        assert str(info.value) == f"cannot write log_dir {str(log_dir)!r}: the folder {str(read_only)!r} is not writable"
    assert os.listdir(read_only) == []


def test_a_log_dir_spoiled_after_construction_is_refused_when_fit_starts(tmp_path):
    log_dir = tmp_path / "logs"
    summaries = PruningSummaries(log_dir)
    log_dir.write_text("now a file")
    message = refused_before_the_first_step(wrapped(), summaries, NotADirectoryError)
    assert message == f"log_dir {str(log_dir)!r} is a file: give a folder"
