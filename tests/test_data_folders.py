"""Data folders: a missing folder fails at once and creates nothing; a malformed .npz is named."""

import time
import zipfile

import numpy as np
import pytest

from tfprune.experiments import data


@pytest.fixture
def no_tfds(monkeypatch):
    """Fails the test if tensorflow_datasets is reached (it would create folders and download)."""
    calls = []
    monkeypatch.setattr(data, "_load_tfds", lambda *args: calls.append(args) or pytest.fail("tfds reached"))
    return calls


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_missing_data_dir_raises_at_once_and_creates_nothing(tmp_path, monkeypatch, no_tfds, how):
    missing = tmp_path / "not" / "there"
    if how == "environment":
        monkeypatch.setenv(data.ENV_VAR, str(missing))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        data.load("mnist", "train", data_dir=str(missing) if how == "argument" else None)
    assert time.perf_counter() - start < 5  # the bound; offline tfds retried for 205 s
    name = "data_dir" if how == "argument" else data.ENV_VAR
    assert str(error.value).startswith(f"{name} '{missing}' is not an existing folder")
    assert "mnist.npz" in str(error.value)
    assert list(tmp_path.iterdir()) == [] and no_tfds == []


def test_a_file_given_as_data_dir_is_refused(tmp_path, no_tfds):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is not an existing folder"):
        data.load("mnist", "test", data_dir=path)


def _mnist_arrays(n, rng):
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def test_a_valid_folder_loads_exactly(tmp_path, no_tfds):
    rng = np.random.default_rng(1)
    (x_train, y_train), (x_test, y_test) = _mnist_arrays(5, rng), _mnist_arrays(3, rng)
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    x, y = data.load("mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(x, (x_test.astype(np.float64) / 255).astype(np.float32)[..., None])
    np.testing.assert_array_equal(y, y_test)


def _truncated(path):
    np.savez(path, x_train=np.zeros((50, 28, 28), np.uint8), y_train=np.zeros(50, np.int64))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


MALFORMED = {
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(1000)),
                     "is not an .npz (zip) archive: it is cut short or in another format; "
                     "expected an .npz archive with keys x_train, y_train for the 'train' split."),
    "truncated": (_truncated, "is not an .npz (zip) archive: it is cut short"),
    "a .npy array": (lambda p: p.write_bytes(_npy_bytes(np.zeros(3))), "is not an .npz (zip) archive"),
    "missing labels": (lambda p: np.savez(p, x_train=np.zeros((2, 28, 28), np.uint8), x_test=np.zeros(1)),
                       "lacks y_train (it has x_train, x_test); "
                       "expected an .npz archive with keys x_train, y_train for the 'train' split."),
    "wrong image shape": (lambda p: np.savez(p, x_train=np.zeros((2, 28, 27), np.uint8), y_train=np.zeros(2)),
                          "have shape (28, 27, 1), expected (28, 28, 1)."),
    "more labels than images": (lambda p: np.savez(p, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(3)),
                                "has 2 images but 3 labels; expected one label per image."),
    "a bad member": (lambda p: _bad_member(p, b"not an array"),
                     "y_train is not a NumPy array; expected an .npz archive"),
    "a corrupt array": (lambda p: _bad_member(p, b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}"), "could not be read ("),
}


def _npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _bad_member(path, content):
    """An .npz whose y_train member holds ``content`` instead of a .npy array."""
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("y_train.npy", content)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_npz_names_the_file_and_the_keys(tmp_path, no_tfds, case):
    write, message = MALFORMED[case]
    path = tmp_path / "mnist.npz"
    write(path)
    with pytest.raises(data.DataFileError) as error:
        data.load("mnist", "train", data_dir=tmp_path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_jpeg_file_names_its_own_keys(tmp_path, no_tfds):
    path = tmp_path / "cifar10_jpeg_full.npz"
    np.savez(path, jpeg_test=np.zeros(4, np.uint8), y_test=np.zeros(1))
    with pytest.raises(data.DataFileError) as error:
        data.load("cifar10", "test", data_dir=tmp_path)
    assert str(error.value) == (f"{path} lacks off_test (it has jpeg_test, y_test); expected an .npz archive "
                                "with keys jpeg_test, off_test, y_test for the 'test' split.")
