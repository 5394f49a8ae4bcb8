"""``import tfprune.tfmot``: the TF-MOT bridge (its code is :mod:`tfprune.interop.tfmot`).

Imported on use only, because importing TF-MOT points TensorFlow's Keras alias at tf_keras.
"""
import sys

from tfprune.interop import tfmot as _bridge

sys.modules[__name__] = _bridge
