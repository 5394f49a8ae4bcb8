"""Bridges to other libraries; :mod:`tfmot` (tf_keras and TF-MOT) is imported on use."""
