"""Image classification data sets as NumPy arrays or ``tf.data`` pipelines.

``load(name, split)`` returns ``(x, y)``: ``x`` float32 in [0, 1] with shape (N, H, W, C),
``y`` int64 class ids. Known names:

* ``"digits"`` (the default for quick runs): the 1797 8x8 handwritten digits that scikit-learn
  ships, embedded in this package (``tfprune/experiments/datasets/digits.npz``), so nothing is downloaded
  and scikit-learn is not needed. Pixel counts 0..16 are divided by 16. Split deterministically:
  permutation ``numpy.random.default_rng(0).permutation(1797)``, the first 1437 (80 %) are
  ``"train"``, the other 360 ``"test"``.
* ``"mnist"``, ``"fashion_mnist"`` (28x28x1, 60000 train / 10000 test) and ``"cifar10"``
  (32x32x3, 50000 / 10000); pixels 0..255 are divided by 255.

For MNIST, Fashion-MNIST and CIFAR-10, sources are tried in this order:

1. A folder of ``.npz`` files: the ``data_dir`` argument, else the environment variable
   ``TFPRUNE_DATA_DIR``; a folder that does not exist is an error (nothing is created). It may
   hold ``mnist.npz`` / ``fashion_mnist.npz`` (keys ``x_train``,
   ``y_train``, ``x_test``, ``y_test``; uint8 images (N, 28, 28)) and, for CIFAR-10, either
   ``cifar10_jpeg_full.npz`` (JPEG streams ``jpeg_<split>`` with offsets ``off_<split>`` and
   labels ``y_<split>``; tried first) or ``cifar10.npz`` (``x_train`` (N, 32, 32, 3) etc.).
   The JPEG file is sorted by class, so after decoding each split is put in the fixed order
   ``numpy.random.default_rng(0).permutation(N)``; the other files keep their own order.
   Files read are cached in memory per (path, split) for the life of the process.
2. ``tensorflow_datasets`` (the ``[datasets]`` extra), with the same folder (or its default one)
   as its ``data_dir``; it downloads the data when ``download=True``.
3. Otherwise :class:`DataUnavailableError` says what was tried and how to provide the data.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import numpy as np

from tfprune._optional import require
from tfprune.base import arguments

__all__ = [
    "DataFileError",
    "DataUnavailableError",
    "ENV_VAR",
    "NAMES",
    "SPLITS",
    "input_shape",
    "load",
    "num_classes",
]

ENV_VAR = "TFPRUNE_DATA_DIR"
SPLITS = ("train", "test")

# name -> (input shape, number of classes, maximum pixel value)
_SPECS = {
    "digits": ((8, 8, 1), 10, 16),
    "mnist": ((28, 28, 1), 10, 255),
    "fashion_mnist": ((28, 28, 1), 10, 255),
    "cifar10": ((32, 32, 3), 10, 255),
}
NAMES = tuple(_SPECS)

# .npz files looked for in the data folder, in order.
_NPZ_FILES = {
    "mnist": ("mnist.npz",),
    "fashion_mnist": ("fashion_mnist.npz",),
    "cifar10": ("cifar10_jpeg_full.npz", "cifar10.npz"),
}

_DIGITS_FILE = Path(__file__).resolve().parent / "datasets" / "digits.npz"
_DIGITS_TRAIN_FRACTION = 0.8
_ORDER_SEED = 0


class DataUnavailableError(RuntimeError):
    """No source (data folder, ``tensorflow_datasets``) could provide the data set."""


class DataFileError(ValueError):
    """The data read is not what was expected (an unreadable or malformed ``.npz`` file, images of
    the wrong shape, fewer labels than images); the message names the file or source."""


def num_classes(name: str) -> int:
    """Number of classes of a data set.

    Args:
        name: one of ``NAMES``.

    Returns:
        The number of classes (10 for every known data set).

    Example:
        >>> num_classes("cifar10")
        10
    """
    arguments.choice("name", name, NAMES)
    return _SPECS[name][1]


def input_shape(name: str) -> tuple[int, int, int]:
    """Shape of one image of a data set, as returned by :func:`load`.

    Args:
        name: one of ``NAMES``.

    Returns:
        ``(height, width, channels)``.

    Example:
        >>> input_shape("mnist")
        (28, 28, 1)
    """
    arguments.choice("name", name, NAMES)
    return _SPECS[name][0]


def load(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    as_dataset: bool = False,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int = 0,
    download: bool = True,
):
    """Load one split of an image classification data set.

    Args:
        name: one of ``NAMES``: ``"digits"`` (embedded), ``"mnist"``, ``"fashion_mnist"``,
            ``"cifar10"``.
        split: ``"train"`` or ``"test"``.
        data_dir: an existing folder of ``.npz`` files (see the module docstring); defaults to
            the environment variable ``TFPRUNE_DATA_DIR``. Also passed to ``tensorflow_datasets``
            as its ``data_dir``. Ignored for ``"digits"``.
        as_dataset: return a ``tf.data.Dataset`` of ``(x, y)`` batches instead of arrays.
        batch_size: batch size of the dataset (``as_dataset=True`` only).
        shuffle: shuffle the dataset each epoch (``as_dataset=True`` only); defaults to
            ``split == "train"``.
        seed: shuffle seed (``as_dataset=True`` only).
        download: let ``tensorflow_datasets`` download the data if it is not there yet.

    Returns:
        ``(x, y)``: ``x`` float32 in [0, 1] of shape (N, H, W, C), ``y`` int64 of shape (N,);
        or, with ``as_dataset=True``, a prefetching ``tf.data.Dataset`` of such batches.

    Raises:
        ArgumentError: unknown name or split, or an argument of the wrong type or out of range
            (``batch_size=0``, ``shuffle="yes"``, ...).
        FileNotFoundError: ``data_dir`` (or ``TFPRUNE_DATA_DIR``) is not an existing folder.
        DataFileError: a data file is unreadable or lacks the expected keys.
        DataUnavailableError: no source had the data.

    Example:
        >>> x, y = load("digits", "train")
        >>> x.shape, x.dtype, y.dtype
        ((1437, 8, 8, 1), dtype('float32'), dtype('int64'))
        >>> ds = load("mnist", "test", "~/data", as_dataset=True, batch_size=256)
    """
    arguments.choice("name", name, NAMES)
    arguments.choice("split", split, SPLITS)
    if data_dir is not None:
        arguments.path("data_dir", data_dir)
    as_dataset, download = arguments.flag("as_dataset", as_dataset), arguments.flag("download", download)
    batch_size, seed = arguments.count("batch_size", batch_size), arguments.seed(seed)
    if shuffle is not None:
        shuffle = arguments.flag("shuffle", shuffle)
    shape, _, max_value = _SPECS[name]
    if name == "digits":
        (images, labels), source = _digits(split), _DIGITS_FILE
    else:
        images, labels, source = _load_external(name, split, data_dir, download)
    if images.ndim == 3 and shape[-1] == 1:
        images = images[..., None]
    if images.shape[1:] != shape:
        raise DataFileError(f"{name} images from {source} have shape {images.shape[1:]}, expected {shape}.")
    if len(images) != len(labels.reshape(-1)):
        raise DataFileError(f"{name} ({split!r}) from {source} has {len(images)} images but "
                            f"{len(labels.reshape(-1))} labels; expected one label per image.")
    x = images.astype(np.float32) / np.float32(max_value)
    y = labels.reshape(-1).astype(np.int64)
    if not as_dataset:
        return x, y
    if shuffle is None:
        shuffle = split == "train"
    return _to_dataset(x, y, batch_size, shuffle, seed)


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits, split by a fixed permutation: first 80 % train, rest test."""
    with np.load(_DIGITS_FILE) as f:
        images, labels = f["images"], f["target"]
    order = np.random.default_rng(_ORDER_SEED).permutation(len(labels))
    n_train = int(_DIGITS_TRAIN_FRACTION * len(labels))
    index = order[:n_train] if split == "train" else order[n_train:]
    return images[index], labels[index]


def _load_external(name: str, split: str, data_dir, download: bool):
    """Try the data folder, then ``tensorflow_datasets``; return ``(images, labels, source)``.

    Raises FileNotFoundError for a data folder that does not exist (before anything else, so
    ``tensorflow_datasets`` never creates it), DataUnavailableError when no source has the data.
    """
    given = "data_dir" if data_dir is not None else ENV_VAR
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or None
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(
            f"{given} {str(data_dir)!r} is not an existing folder; create it and put {_NPZ_FILES[name][0]} "
            f"in it, or leave {given} unset to use tensorflow_datasets' default folder."
        )
    tried = []
    if folder is None:
        tried.append(f"no data folder (data_dir not given, {ENV_VAR} not set)")
    else:
        paths = [folder / file for file in _NPZ_FILES[name]]
        for path in paths:
            if path.is_file():
                return (*_load_npz(str(path.resolve()), split), path)
        tried.append(f"data folder {folder}: none of {', '.join(map(str, paths))} exists")
    try:
        return (*_load_tfds(name, split, folder, download), "tensorflow_datasets")
    except Exception as error:  # any failure here means "tfds cannot provide it"
        reason = (str(error).strip().splitlines() or [""])[0]
        tried.append(
            f"tensorflow_datasets (download={download}, data_dir={folder}): "
            f"{type(error).__name__}: {reason}"
        )
    raise DataUnavailableError(
        f"Could not load {name!r} ({split!r}). Tried:\n"
        + "".join(f"  - {line}\n" for line in tried)
        + f"To provide it, set {ENV_VAR} or pass data_dir= to a folder holding {name}.npz "
        "(keys x_train, y_train, x_test, y_test; uint8 images)"
        + (" or cifar10_jpeg_full.npz" if name == "cifar10" else "")
        + ", or let tensorflow_datasets download it (download=True, needs internet and "
        'pip install "tfprune[datasets]").'
    )


def _load_tfds(name: str, split: str, folder: Path | None, download: bool):
    tfds = require("tensorflow_datasets", f"tfprune.experiments.data.load({name!r}) without a data file")

    data = tfds.load(
        name,
        split=split,
        as_supervised=True,
        batch_size=-1,
        download=download,
        data_dir=None if folder is None else str(folder),
    )
    return tfds.as_numpy(data)


def _npz_keys(path: str, split: str) -> tuple[str, ...]:
    """The keys one split needs in a data file: JPEG streams for ``*_jpeg_full.npz``, else arrays."""
    if path.endswith("_jpeg_full.npz"):
        return f"jpeg_{split}", f"off_{split}", f"y_{split}"
    return f"x_{split}", f"y_{split}"


@functools.lru_cache(maxsize=None)
def _load_npz(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read (uint8 images, labels) of one split of an .npz file, cached per (path, split).

    JPEG files (keys ``jpeg_<split>``, ``off_<split>``) are decoded and put in the order
    ``default_rng(0).permutation(N)``. The returned arrays are read-only. A file that is not an
    ``.npz`` archive, is cut short or lacks a key raises DataFileError naming it and the keys.
    """
    keys = _npz_keys(path, split)
    expected = f"an .npz archive with keys {', '.join(keys)} for the {split!r} split"
    if not zipfile.is_zipfile(path):
        raise DataFileError(f"{path} is not an .npz (zip) archive: it is cut short or in another format; "
                            f"expected {expected}.")
    try:
        with np.load(path) as archive:
            missing = [key for key in keys if key not in archive.files]
            arrays = [] if missing else [archive[key] for key in keys]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise DataFileError(f"{path} could not be read ({type(error).__name__}: {error}); "
                            f"expected {expected}.") from error
    if missing:
        raise DataFileError(f"{path} lacks {', '.join(missing)} (it has {', '.join(archive.files) or 'no keys'}); "
                            f"expected {expected}.")
    not_arrays = [key for key, value in zip(keys, arrays) if not isinstance(value, np.ndarray)]
    if not_arrays:
        raise DataFileError(f"{path}: {', '.join(not_arrays)} is not a NumPy array; expected {expected}.")
    if len(keys) == 3:
        labels = arrays[2]
        order = np.random.default_rng(_ORDER_SEED).permutation(len(labels))
        images, labels = _decode_jpegs(arrays[0], arrays[1])[order], labels[order]
    else:
        images, labels = arrays
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Decode JPEG streams ``blob[offsets[i]:offsets[i + 1]]`` into a uint8 (N, H, W, 3) array."""
    import tensorflow as tf

    return np.stack(
        [
            tf.io.decode_jpeg(
                blob[start:end].tobytes(), channels=3, dct_method="INTEGER_ACCURATE"
            ).numpy()
            for start, end in zip(offsets[:-1], offsets[1:])
        ]
    )


def _to_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
