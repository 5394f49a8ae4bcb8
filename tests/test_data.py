"""Tests of tfprune.data: real MNIST / CIFAR-10 from ../shared/data, embedded digits, errors."""

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from tfprune.experiments import data

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
CIFAR_TEST_SHA256 = "5a6aa8185204d80b65d3dfb540696dadd5f10d185ded226a96665d3e0fc6259f"


def _shared(file):
    path = SHARED / file
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)


def _write_mnist_like(path, n_train=5, n_test=3, size=28):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    np.savez(path, **arrays)
    return arrays


def test_mnist_test_equals_file_over_255():
    raw = np.load(_shared("mnist.npz"))
    x, y = data.load("mnist", "test", SHARED)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x[..., 0], (raw["x_test"] / 255).astype(np.float32))
    np.testing.assert_array_equal(y, raw["y_test"])


def test_mnist_train_counts():
    _shared("mnist.npz")
    x, y = data.load("mnist", "train", SHARED)
    assert x.shape == (60000, 28, 28, 1) and y.shape == (60000,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))


@pytest.fixture(scope="module")
def cifar_test_sorted():
    """The decoded CIFAR-10 test split in file order (sorted by class): (uint8 images, labels)."""
    with np.load(_shared("cifar10_jpeg_full.npz")) as f:
        return data._decode_jpegs(f["jpeg_test"], f["off_test"]), f["y_test"]


def test_cifar_decode_matches_readme_sha256(cifar_test_sorted):
    decoded, _ = cifar_test_sorted
    assert decoded.shape == (10000, 32, 32, 3) and decoded.dtype == np.uint8
    assert hashlib.sha256(decoded.tobytes()).hexdigest() == CIFAR_TEST_SHA256


def test_cifar_test_is_fixed_permutation_of_decoded(cifar_test_sorted):
    decoded, y_sorted = cifar_test_sorted
    x, y = data.load("cifar10", "test", SHARED)
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    np.testing.assert_array_equal(np.sort(y), np.sort(y_sorted))
    assert np.any(np.diff(y) < 0)  # no longer sorted by class
    order = np.random.default_rng(0).permutation(10000)
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), decoded[order])
    np.testing.assert_array_equal(y, y_sorted[order])
    hits = data._load_npz.cache_info().hits
    x2, y2 = data.load("cifar10", "test", SHARED)
    assert data._load_npz.cache_info().hits == hits + 1
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def test_cifar_train_counts():
    _shared("cifar10_jpeg_full.npz")  # decodes 50,000 JPEGs (about 4 s)
    x, y = data.load("cifar10", "train", SHARED)
    assert x.shape == (50000, 32, 32, 3) and y.shape == (50000,)
    np.testing.assert_array_equal(np.bincount(y), [5000] * 10)


def test_digits_splits():
    x_train, y_train = data.load("digits", "train")
    x_test, y_test = data.load("digits", "test")
    assert x_train.shape == (1437, 8, 8, 1) and y_train.shape == (1437,)
    assert x_test.shape == (360, 8, 8, 1) and y_test.shape == (360,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        np.testing.assert_array_equal(x * 16, np.rint(x * 16))
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    x_again, _ = data.load("digits", "train")
    np.testing.assert_array_equal(x_again, x_train)


def test_digits_match_sklearn():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x_train, y_train = data.load("digits", "train")
    x_test, y_test = data.load("digits", "test")
    order = np.random.default_rng(0).permutation(1797)
    x = np.concatenate([x_train, x_test])[..., 0] * 16
    np.testing.assert_array_equal(x, digits.images[order])
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), digits.target[order])


def test_env_var_folder_is_used(tmp_path, monkeypatch):
    arrays = _write_mnist_like(tmp_path / "fashion_mnist.npz")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    x, y = data.load("fashion_mnist", "test", download=False)
    assert x.shape == (3, 28, 28, 1) and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], (arrays["x_test"] / 255).astype(np.float32))
    np.testing.assert_array_equal(y, arrays["y_test"])


def test_data_dir_argument_wins_over_env_var(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    arrays = _write_mnist_like(tmp_path / "full" / "mnist.npz")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
    _, y = data.load("mnist", "train", tmp_path / "full", download=False)
    np.testing.assert_array_equal(y, arrays["y_train"])


def test_plain_cifar10_npz(tmp_path):
    rng = np.random.default_rng(2)
    x_test = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    y_test = np.array([[3], [1], [4], [1]], dtype=np.uint8)  # keras-style (N, 1) labels
    splits = dict(x_train=x_test, y_train=y_test, x_test=x_test, y_test=y_test)
    np.savez(tmp_path / "cifar10.npz", **splits)
    x, y = data.load("cifar10", "test", tmp_path, download=False)
    assert x.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(x, (x_test / 255).astype(np.float32))
    np.testing.assert_array_equal(y, [3, 1, 4, 1])


def test_empty_folder_without_download_says_what_was_tried(tmp_path):
    with pytest.raises(data.DataUnavailableError) as info:
        data.load("mnist", "test", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "mnist.npz") in message
    assert "tensorflow_datasets" in message and "download=False" in message
    assert data.ENV_VAR in message and "data_dir" in message
    assert isinstance(info.value, RuntimeError)


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="name must be one of 'digits', 'mnist', 'fashion_mnist', 'cifar10', got "
                                         "'imagenet'"):
        data.load("imagenet", "train")
    with pytest.raises(ValueError, match="split must be one of 'train', 'test', got 'validation'"):
        data.load("digits", "validation")
    with pytest.raises(ValueError, match="imagenet"):
        data.num_classes("imagenet")
    with pytest.raises(ValueError, match="imagenet"):
        data.input_shape("imagenet")


def test_shapes_and_classes():
    assert data.input_shape("digits") == (8, 8, 1)
    assert data.input_shape("mnist") == data.input_shape("fashion_mnist") == (28, 28, 1)
    assert data.input_shape("cifar10") == (32, 32, 3)
    assert all(data.num_classes(name) == 10 for name in data.NAMES)


def test_as_dataset_batches():
    dataset = data.load("digits", "test", as_dataset=True, batch_size=100)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [len(y) for _, y in batches] == [100, 100, 100, 60]
    assert all(x.shape[1:] == (8, 8, 1) and x.dtype == np.float32 for x, _ in batches)
    assert all(y.dtype == np.int64 for _, y in batches)
    _, y_expected = data.load("digits", "test")
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), y_expected)


def test_as_dataset_train_is_shuffled_by_default():
    x_expected, y_expected = data.load("digits", "train")
    dataset = data.load("digits", "train", as_dataset=True, batch_size=128, seed=3)
    ys = np.concatenate([y.numpy() for _, y in dataset])
    assert len(ys) == 1437
    assert not np.array_equal(ys, y_expected)
    np.testing.assert_array_equal(np.sort(ys), np.sort(y_expected))


def test_tfds_is_used_when_no_file(tmp_path, monkeypatch):
    calls = []
    images = np.full((2, 28, 28, 1), 255, dtype=np.uint8)

    class FakeTfds:
        @staticmethod
        def load(name, **kwargs):
            calls.append((name, kwargs))
            return images, np.array([7, 2], dtype=np.int64)

        @staticmethod
        def as_numpy(tree):
            return tree

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", FakeTfds)
    x, y = data.load("fashion_mnist", "train", tmp_path, download=False)
    assert calls == [
        (
            "fashion_mnist",
            dict(split="train", as_supervised=True, batch_size=-1, download=False,
                 data_dir=str(tmp_path)),
        )
    ]
    np.testing.assert_array_equal(x, np.ones((2, 28, 28, 1), np.float32))
    np.testing.assert_array_equal(y, [7, 2])
