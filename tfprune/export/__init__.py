"""Export a pruned model: a TFLite file with sparse tensors, checked against the Keras model.

>>> report = tfprune.export.tflite(tfprune.strip(pruned), "model.tflite", check_data=x[:256])
"""
from tfprune.export.tflite_export import (ConversionError, ExportMismatchError, SparseTensor, TFLiteReport,
                                          available_runtimes, describe, make_interpreter, tflite)

__all__ = ["ConversionError", "ExportMismatchError", "SparseTensor", "TFLiteReport", "available_runtimes", "describe",
           "make_interpreter", "tflite"]
