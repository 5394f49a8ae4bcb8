"""Shared test fixtures: quiet TensorFlow, seeded Keras, the shared data folder."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data():
    """The folder of real MNIST / CIFAR-10 copies; skips the test where it is absent."""
    if not (SHARED_DATA / "mnist.npz").exists():
        pytest.skip(f"real data not found in {SHARED_DATA}")
    return SHARED_DATA.resolve()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
