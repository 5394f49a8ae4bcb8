"""Errors that used to leak from TensorFlow, Keras or struct, or were misattributed, now name the
argument, the file or the problem: string-typed data, an unknown loss name, GraSP's temperature,
export's check data, a file that is not TFLite, short classes for GraSP, the command's usage
errors (exit 1) and I/O errors (the file named). Models given are left bit-identical."""

import errno
import os
import re

import keras
import numpy as np
import pytest
from helpers import mlp64

import tfprune
from tfprune import ArgumentError
from tfprune.base.files import replacing
from tfprune.experiments import cli
from tfprune.export import tflite_export

X = np.random.default_rng(0).normal(size=(40, 64)).astype("float32")
Y = np.arange(40) % 10


def bits(model):
    return [np.asarray(v.numpy()).tobytes() for v in model.variables]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(criterion="snip", data=(X.astype(str), Y)), ValueError,
     "data: x holds <U32 values, not numbers: give numeric arrays (e.g. float32 pixels or features, int token ids)"),
    (dict(criterion="snip", data=(X, Y), loss="nope"), ArgumentError,
     "loss 'nope' is not the name of a Keras loss: give a name such as 'categorical_crossentropy', a "
     "keras.losses.Loss or a function (y_true, y_pred) -> loss"),
    (dict(criterion="grasp", data=(X, Y), temperature=0), ArgumentError,
     "temperature must be None or a finite number > 0, got 0"),
    (dict(criterion="grasp", data=(X, Y), samples_per_class=0), ArgumentError,
     "samples_per_class must be None or an int >= 1, got 0"),
])
def test_scoring_errors_name_the_argument_and_change_nothing(kwargs, error, message):
    model = mlp64()
    before = bits(model)
    with pytest.raises(error) as info:
        tfprune.prune_at_init(model, sparsity=0.5, verbose=0, **kwargs)
    assert str(info.value) == message
    assert bits(model) == before and not tfprune.is_wrapped(model)


def test_grasp_warns_when_a_class_has_fewer_examples_than_samples_per_class():
    x, y = X[:23], Y[:23]  # classes 0, 1, 2 have 3 examples, the others 2
    with pytest.warns(UserWarning, match=r"^samples_per_class=3, but 7 class\(es\) of data have fewer examples "
                                         r"\(class 3: 2, class 4: 2, .*class 9: 2\): the score uses all they have, "
                                         r"23 examples in all$"):
        pruned = tfprune.prune_at_init(mlp64(), "grasp", sparsity=0.5, data=(x, y), samples_per_class=3, verbose=0)
    assert tfprune.masks.density(tfprune.get_masks(pruned)) == pytest.approx(0.5, abs=1e-3)


@pytest.fixture
def no_conversion(monkeypatch):
    """Makes the TFLite conversion fail loudly: a test using it proves the error came before it."""
    def fail(*args, **kwargs):
        raise AssertionError("converted before the arguments were checked")

    monkeypatch.setattr(tflite_export, "_convert", fail)


@pytest.mark.parametrize("check_data, message", [
    (np.zeros((4, 32), "float32"), "check_data: x has examples of shape (32,), but model 'mlp' takes inputs of shape "
                                   "(64,) (without the batch axis)"),
    (np.zeros(64, "float32"), "check_data: x of shape (64,) is a single example, but model 'mlp' takes batches of "
                              "inputs of shape (batch, 64): batch it"),
    (np.full((4, 64), "a"), "check_data: x holds <U1 values, not numbers"),
])
def test_export_refuses_check_data_that_does_not_fit_the_model(check_data, message, tmp_path, no_conversion):
    model = mlp64()
    before = bits(model)
    with pytest.raises(ValueError) as info:
        tfprune.export.tflite(model, tmp_path / "m.tflite", check_data=check_data)
    assert str(info.value).startswith(message)
    assert bits(model) == before and os.listdir(tmp_path) == []


def test_describe_checks_the_file_identifier_first(tmp_path):
    keras_file = tmp_path / "model.keras"
    mlp64().save(keras_file)
    with pytest.raises(ValueError) as info:
        tfprune.export.describe(keras_file)
    assert str(info.value).startswith(f"{str(keras_file)!r} is not a TFLite file: its bytes 4-8 are ")
    assert str(info.value).endswith(f", a TFLite flatbuffer's are b'TFL3' ({keras_file.stat().st_size} bytes read)")
    with pytest.raises(ValueError, match=r"^the bytes given is not a TFLite file: its bytes 4-8 are b'', "):
        tfprune.export.describe(b"TFL3")
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        tfprune.export.describe(tmp_path / "missing.tflite")


def error_line(argv, capsys):
    """The exit code and the one line on stderr of a failed command."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return code, err[0]


@pytest.mark.parametrize("argv, line", [
    (["prune", "--nope"], r"tfprune prune: error: the following arguments are required: --out \(see tfprune prune "
                          r"--help\)"),
    (["profile"], r"tfprune profile: error: the following arguments are required: MODEL.keras \(see tfprune profile "
                  r"--help\)"),
    (["prune", "--sparsity", "half", "--out", "x.keras"], r"tfprune prune: error: argument --sparsity: invalid float "
                                                           r"value: 'half' \(see tfprune prune --help\)"),
    (["frobnicate"], r"tfprune: error: argument COMMAND: invalid choice: 'frobnicate' \(choose from .*prune.*demo.*\) "
                     r"\(see tfprune --help\)"),  # Python 3.12 quotes the choices
    ([], r"tfprune: error: give a command: prune, sweep, collapse, profile, export, demo \(see tfprune --help\)"),
])
def test_usage_errors_exit_1_with_one_line(argv, line, capsys):
    code, got = error_line(argv, capsys)
    assert code == 1 and re.fullmatch(line, got), got


def test_the_readme_promises_exit_1_for_every_error():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    assert "exits with 1 on every error, usage errors included" in readme


def test_a_full_disk_names_the_file(tmp_path):
    out = tmp_path / "model.keras"
    with pytest.raises(OSError) as info:
        with replacing(out):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(info.value) == f"[Errno 28] No space left on device: {str(out)!r}"
    assert info.value.filename == str(out) and os.listdir(tmp_path) == []


def test_the_command_names_the_file_a_full_disk_stopped(tmp_path, capsys, monkeypatch):
    def full(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)  # as h5py and zipfile report it

    monkeypatch.setattr(keras.Model, "save", full)
    out = tmp_path / "pruned.keras"
    code, line = error_line(["prune", "--model", "lenet_300_100", "--input-shape", "8,8,1", "--criterion", "magnitude",
                             "--sparsity", "0.5", "--quiet", "--out", str(out)], capsys)
    assert (code, line) == (1, f"tfprune prune: error: [Errno 28] No space left on device: {str(out)!r}")
    assert os.listdir(tmp_path) == []
