"""`import tfprune` does not import TF-MOT and leaves `tf.keras` meaning Keras 3."""

import pytest
from subprocess_util import run_python

CHECK = """
import os, sys
import tensorflow as tf
{extra}
import keras
print("tfmot" if "tensorflow_model_optimization" in sys.modules else "no-tfmot")
print("legacy" if os.environ.get("TF_USE_LEGACY_KERAS") else "no-legacy")
print("keras3" if tf.keras.Model is keras.Model else "other")
"""


def test_import_tfprune_leaves_tf_keras_alone():
    out = run_python(CHECK.format(extra="import tfprune"), timeout=120).split()
    assert out == ["no-tfmot", "no-legacy", "keras3"]


def test_the_check_detects_tfmot_changing_tf_keras():
    """Control: importing TF-MOT does set TF_USE_LEGACY_KERAS, so the test above can fail."""
    pytest.importorskip("tensorflow_model_optimization")
    out = run_python(CHECK.format(extra="import tensorflow_model_optimization"), timeout=120).split()
    assert out[:2] == ["tfmot", "legacy"]
