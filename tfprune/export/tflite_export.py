"""TFLite export with sparse weights, checked against the Keras model before the file is written.

``converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]`` stores every weight with at
least 30 % zeros in a compressed format. Only Dense (FULLY_CONNECTED) weights whose zeros come in
whole blocks along the input axis — 1×4 for float, 1×16 for int8 — run on sparse kernels; any
other sparse weight gets a ``DENSIFY`` op that rebuilds the dense tensor at load time (smaller
file, no speed-up). :func:`tflite` says which happened, and runs the file in the TFLite
interpreter on check data, because the sparse kernels can compute wrong outputs (see
``docs/tflite.md``).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import math
import os
import re
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfprune import _compat, _optional
from tfprune.analysis import datachecks
from tfprune.base import arguments, backends
from tfprune.base.files import check_output_path, replacing
from tfprune.base.deprecation import renamed
from tfprune.layers.targets import is_wrapped
from tfprune.sparsity import patterns

__all__ = ["ConversionError", "ExportMismatchError", "SparseTensor", "TFLiteReport", "available_runtimes", "describe",
           "make_interpreter", "tflite"]

QUANTIZE = (None, "dynamic", "int8")
RUNTIMES = ("ai_edge_litert", "tf.lite")
FLOAT_TOLERANCE = 1e-5  # × max(1, largest |Keras output|)
DYNAMIC_TOLERANCE = 5e-2  # × largest |Keras output|
INT8_TOLERANCE = 1e-1  # × largest |Keras output|, for full-integer int8 (activations quantized too)
_MIN_SPARSITY = 0.3  # the converter keeps weights with fewer zeros dense (dense_to_sparse.cc)
_CHECK_EXAMPLES = 8
_CHECK_BATCH = 256
_PASS_THROUGH = ("DENSIFY", "DEQUANTIZE")
_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier of TFLite models, at bytes 4-8
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8}  # TFLite TensorType → dtype
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


class ConversionError(ValueError):
    """The TFLite converter cannot convert the model; the message names the layers and ops."""


class ExportMismatchError(ValueError):
    """The TFLite model's outputs differ from the Keras model's by more than the tolerance."""

    def __init__(self, message, max_abs_diff, tolerance):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance


@dataclasses.dataclass(frozen=True)
class SparseTensor:
    """One tensor stored sparse in a TFLite file.

    Attributes:
        name: The tensor's name in the file.
        shape: Its dense shape, in TFLite's layout (``[out, in]`` for a FULLY_CONNECTED weight).
        block: The block shape, one entry per dimension; all ones for unstructured sparsity.
        dtype: ``"float32"``, ``"int8"``, …
        stored: Number of values stored (padding zeros inside blocks included).
        consumer: The op that reads the tensor, e.g. ``"FULLY_CONNECTED"`` or
            ``"DENSIFY -> FULLY_CONNECTED"``.
        densified: A ``DENSIFY`` op rebuilds the dense tensor at load time: no sparse kernel runs.
    """

    name: str
    shape: tuple
    block: tuple
    dtype: str
    stored: int
    consumer: str
    densified: bool

    @property
    def density(self):
        """Fraction of the dense tensor's entries that are stored."""
        return self.stored / math.prod(self.shape)


@dataclasses.dataclass
class TFLiteReport:
    """What :func:`tflite` wrote and checked.

    Attributes:
        path: The file written.
        file_bytes: Its size.
        dense_bytes: The size of the same model converted without ``EXPERIMENTAL_SPARSITY``.
        sparse_tensors: The :class:`SparseTensor` records of the file.
        ops: Op type names, in graph order.
        densify: A ``DENSIFY`` op is present: some sparse tensors are made dense at load time.
        max_abs_diff: Largest |TFLite output − Keras output| over the check data.
        tolerance: The bound ``max_abs_diff`` was checked against.
        examples: Number of examples checked.
        interpreter: ``"ai_edge_litert"`` or ``"tf.lite"``.
        use_xnnpack: Whether the XNNPACK delegate was on during the check.
        quantize: ``None``, ``"dynamic"`` or ``"int8"``.
        block: The block asked for, or ``None``.
        weight_zeros: ``[(tensor name, shape, zeros)]`` for every weight of a FULLY_CONNECTED or
            convolution op as stored in the file (entries left out of sparse storage count as zeros).
        top1_agreement: ``quantize="int8"``: the fraction of examples whose largest output (first
            output, last axis) is the same in the file and the Keras model; else ``None``.
        max_error_steps: ``quantize="int8"``: max |TFLite − Keras| in units of the int8 output
            scale (the largest over the outputs); else ``None``.
    """

    path: str
    file_bytes: int
    dense_bytes: int
    sparse_tensors: list
    ops: list
    densify: bool
    max_abs_diff: float
    tolerance: float
    examples: int
    interpreter: str
    use_xnnpack: bool
    quantize: str | None
    block: tuple | None
    weight_zeros: list = dataclasses.field(default_factory=list)
    top1_agreement: float | None = None
    max_error_steps: float | None = None

    @property
    def size_ratio(self):
        """``file_bytes / dense_bytes``."""
        return self.file_bytes / self.dense_bytes

    def __str__(self):
        counts = collections.Counter(self.ops)
        ops = ", ".join(f"{op}×{n}" if n > 1 else op for op, n in counts.items())
        lines = [
            f"TFLite file {self.path}: {self.file_bytes:,} bytes, {self.size_ratio:.3f}× the dense "
            f"conversion ({self.dense_bytes:,} bytes)" + (f", quantize={self.quantize!r}" if self.quantize else ""),
            f"  ops: {ops}",
            f"  {len(self.sparse_tensors)} sparse tensors"
            + (" (DENSIFY present: some run dense)" if self.densify else " (none densified)")
            + (f", block {_block_text(self.block)} asked" if self.block else ""),
        ]
        if self.sparse_tensors:
            width = max(len(_short(t.name)) for t in self.sparse_tensors)
            lines.append(f"    {'tensor':<{width}}  {'shape':<12} {'block':<6} {'stored':>7}  op")
            for t in self.sparse_tensors:
                lines.append(f"    {_short(t.name):<{width}}  {str(list(t.shape)):<12} {_block_text(t.block):<6} "
                             f"{t.density:>7.1%}  {t.consumer}")
        xnnpack = "XNNPACK on" if self.use_xnnpack else "XNNPACK off"
        if self.quantize == "int8":
            lines.append("  int8 weights: " + ", ".join(f"{_short(name)} {list(shape)} {zeros:,} zeros"
                                                      for name, shape, zeros in self.weight_zeros))
        lines.append(f"  check: max |TFLite - Keras| = {self.max_abs_diff:.3g} <= {self.tolerance:.3g} on "
                     f"{self.examples} examples ({self.interpreter}, {xnnpack})")
        if self.top1_agreement is not None:
            lines.append(f"  int8: top-1 agreement {self.top1_agreement:.2%}, max error {self.max_error_steps:.1f} "
                         "output steps")
        return "\n".join(lines)


def _short(name):
    """A tensor name without the fused ops after ``;``."""
    return name.split(";")[0]


def _block_text(block):
    return "×".join(str(b) for b in block)


@renamed(block="pattern")
def tflite(model, path, *, sparse=True, pattern=None, quantize=None, representative_data=None, check_data=None,
           tolerance=None, use_xnnpack=True, runtime=None, select_tf_ops=False):
    """Converts a stripped model to TFLite with sparse weights, checks it, then writes it.

    The model is converted twice (with and without ``EXPERIMENTAL_SPARSITY``, for the size
    comparison). The sparse file is read back to list its sparse tensors and ops, then run in the
    TFLite interpreter on ``check_data`` and compared with the Keras model. Only when every check
    passes is the file moved to ``path`` (with the mode of the file it replaces, or that of a new
    file under the umask); on any error nothing is left there.

    Args:
        model: A plain Keras 3 model (e.g. from :func:`tfprune.strip`) or a tf_keras model (e.g.
            from ``tfmot.sparsity.keras.strip_pruning``).
        path: Where to write the ``.tflite`` file.
        sparse: Store weights with ≥ 30 % zeros sparse (``EXPERIMENTAL_SPARSITY``).
        pattern: The block pattern the masks were made with (:mod:`tfprune.patterns`: ``"1x4"``,
            ``Block(1, 4)`` or ``(1, 4)``, TFLite's ``[out, in]`` layout): 1×4 for float Dense
            weights, 1×16 with ``quantize="dynamic"``. Then every Dense
            weight with ≥ 30 % zeros must be stored sparse in blocks that tile ``block`` and read
            directly by FULLY_CONNECTED (no DENSIFY), or a ValueError names the weights that are not.
        quantize: ``None`` (float32), ``"dynamic"`` (dynamic-range int8 weights,
            ``tf.lite.Optimize.DEFAULT``) or ``"int8"`` (full-integer: int8 weights, per channel
            and symmetric so zeros stay zeros, int8 activations, int8 inputs and outputs, calibrated
            on ``representative_data``; the check quantizes the inputs and dequantizes the outputs
            with the file's scales).
        representative_data: With ``quantize="int8"`` (and only then): the calibration inputs, in
            any form ``check_data`` takes; a few hundred typical examples.
        check_data: Inputs to compare on, as ``model.predict`` takes them: an array, a list of
            arrays (one per input, in ``model.inputs`` order) or a dict of arrays by input name
            (a KerasHub model's ``{"token_ids": ..., "padding_mask": ...}``). Default:
            ``representative_data`` with ``quantize="int8"``, else 8 seeded standard-normal
            examples of the model's input shape (float inputs of known shape only).
        tolerance: The largest max |TFLite − Keras| allowed. Default, with ``s`` the largest
            |Keras output|: ``1e-5 × max(1, s)`` for float (float32 rounding grows with the
            outputs); ``5e-2 × s`` for ``quantize="dynamic"`` (correct int8 layers differ by
            about 1 % of their output scale, broken sparse int8 kernels by 17 % and more);
            ``1e-1 × s`` for ``quantize="int8"`` (int8 activations add rounding at every layer).
        use_xnnpack: Run the check with TFLite's default XNNPACK delegate (what most apps get);
            ``False`` uses the builtin kernels only (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``).
            XNNPACK refuses or miscomputes sparse dynamic-range int8 weights, and ai_edge_litert's
            XNNPACK refuses sparse full-integer ones: with the delegate on, such a file is a
            ValueError before anything is written, naming the options that run.
        runtime: ``"ai_edge_litert"``, ``"tf.lite"``, or ``None``: ai_edge_litert when it is
            installed, else ``tf.lite.Interpreter``.
        select_tf_ops: Let ops TFLite has no kernel for run as TensorFlow kernels
            (``SELECT_TF_OPS``, tensor lists kept for recurrent layers): ``MaxPooling3D``, an
            ``LSTM``'s loop. The app then needs TFLite's Flex delegate.

    Returns:
        A :class:`TFLiteReport`.

    Raises:
        FileNotFoundError: if the folder of ``path`` does not exist (checked before converting).
        IsADirectoryError: if ``path`` is a folder.
        ArgumentError: if ``model`` is neither a Keras 3 nor a tf_keras model, or ``sparse``,
            ``quantize``, ``tolerance`` (a number >= 0), ``use_xnnpack`` or ``runtime`` is of the
            wrong type or out of range.
        ValueError: for a model still holding MaskedLayer or PruneLowMagnitude wrappers, a model
            with a NaN or infinite weight (named), a bad ``block`` or ``check_data`` (examples of
            the wrong shape, values that are not numbers, NaN or infinite values), or Dense
            weights not stored in ``block``.
        TypeError: if ``model`` is neither a Keras 3 nor a tf_keras model.
        ConversionError: if TFLite cannot convert the model: "TFLite cannot convert layer X (op Y)",
            with ``select_tf_ops=True`` suggested where it helps.
        ExportMismatchError: if the outputs differ by more than ``tolerance``.
        RuntimeError: if the interpreter cannot run the file.

    Example:
        >>> report = tfprune.export.tflite(tfprune.strip(wrapped), "model.tflite", pattern="1x4",
        ...                                check_data=x_test[:256])
        >>> print(report)
    """
    path = check_output_path(path)
    kind = _check_model(model)
    sparse, use_xnnpack = arguments.flag("sparse", sparse), arguments.flag("use_xnnpack", use_xnnpack)
    arguments.choice("quantize", quantize, QUANTIZE)
    tolerance = arguments.number("tolerance", tolerance, 0, optional=True)
    datachecks.check_weights(model)  # a NaN weight named, not reported as "max diff = nan"
    representative = _check_representative(model, kind, quantize, representative_data)
    block = None if pattern is None else _check_block_arg(pattern, sparse, quantize)
    runtime = _runtime(runtime)[0]
    inputs = _check_inputs(model, kind, representative_data if check_data is None and representative else check_data)
    specs = [tf.TensorSpec((None, *x.shape[1:]), x.dtype, name=f"input_{i}") for i, x in enumerate(inputs)]

    with tempfile.TemporaryDirectory() as folder:
        new_converter = _converter_factory(model, kind, specs, folder)
        content = _convert(model, new_converter, sparse, quantize, representative, select_tf_ops)
        dense_bytes = len(content) if not sparse else len(_convert(model, new_converter, False, quantize,
                                                                   representative, select_tf_ops))
    parsed = _parse(content)
    ops, sparse_tensors = _ops(parsed), _sparse_tensors(parsed)
    if block is not None:
        _check_blocks(parsed, block)
    if use_xnnpack:
        _check_xnnpack(sparse_tensors, quantize, runtime)

    with replacing(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(content)
        expected = _keras_outputs(model, inputs)
        actual = _tflite_outputs(temporary, inputs, runtime, use_xnnpack, sparse_tensors)
        diff = _max_abs_diff(actual, expected)
        if tolerance is None:
            scale = max(float(np.max(np.abs(e), initial=0.0)) for e in expected)
            tolerance = FLOAT_TOLERANCE * max(1.0, scale) if quantize is None else (
                DYNAMIC_TOLERANCE if quantize == "dynamic" else INT8_TOLERANCE) * scale
        if not diff <= tolerance:  # also catches NaN
            raise ExportMismatchError(
                f"the TFLite model's outputs differ from the Keras model's: max |TFLite - Keras| = {diff:.3g} > "
                f"tolerance {tolerance:.3g} on {len(inputs[0])} examples ({runtime}, XNNPACK "
                f"{'on' if use_xnnpack else 'off'}); nothing written to {path}"
                + _hints(sparse_tensors),
                diff, tolerance)
        agreement = _int8_agreement(actual, expected, _output_scales(temporary, runtime)) if quantize == "int8" \
            else (None, None)
    return TFLiteReport(path, len(content), dense_bytes, sparse_tensors, ops, "DENSIFY" in ops,
                        diff, tolerance, len(inputs[0]), runtime, use_xnnpack, quantize, block,
                        _weight_zeros(parsed), *agreement)


def _check_model(model):
    """``"keras"`` or ``"tf_keras"``; a clear error for wrapped or other models."""
    if isinstance(model, keras.Model):
        if is_wrapped(model):
            raise ValueError(f"model {model.name!r} still holds tfprune MaskedLayers: call tfprune.strip(model) "
                             "first and export the plain model it returns")
        backends.require_tensorflow("TFLite export", "save the stripped model with model.save('model.keras'), then "
                                    "load it and export it in a process started with KERAS_BACKEND=tensorflow")
        return "keras"
    if any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__):
        wrapped = [layer.name for layer in model.submodules if type(layer).__name__ == "PruneLowMagnitude"]
        if wrapped:
            raise ValueError(f"model {model.name!r} still holds TF-MOT PruneLowMagnitude wrappers ({wrapped}): call "
                             "tfmot.sparsity.keras.strip_pruning(model) first")
        return "tf_keras"
    arguments.keras_model(model)  # raises, naming what was given


def _check_xnnpack(sparse_tensors, quantize, runtime):
    """Sparse int8 weights the default XNNPACK delegate cannot run (docs/tflite.md): dynamic-range
    ones in both runtimes (refused or computed wrongly), full-integer ones in ai_edge_litert 2.3
    ("failed to delegate", while tf.lite's XNNPACK runs them)."""
    int8 = [_short(t.name) for t in sparse_tensors if t.dtype == "int8"]
    if not int8 or (quantize == "int8" and runtime != "ai_edge_litert"):
        return
    fault = ("TFLite's default XNNPACK delegate refuses to prepare or computes wrongly" if quantize == "dynamic"
             else "ai_edge_litert's default XNNPACK delegate fails to prepare (tf.lite's runs them)")
    others = ("quantize='int8' with representative_data (full-integer, runs under tf.lite's XNNPACK)"
              if quantize == "dynamic" else "runtime='tf.lite'")
    raise ValueError(
        f"quantize={quantize!r} stores {int8} as sparse int8 weights, which {fault} (docs/tflite.md). Either "
        "pass use_xnnpack=False and run the file without the default delegate (Interpreter(..., "
        f"experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)), or {others}, or "
        "sparse=False; nothing written")


def _check_block_arg(pattern, sparse, quantize):
    """The block of a block ``pattern`` as a tuple, if TFLite can run Dense weights sparse in blocks that tile it."""
    chosen = patterns.get(pattern)
    if not isinstance(chosen, patterns.Block):
        raise ValueError(f"export checks block patterns such as '1x4' in the file, got pattern {chosen}")
    block = (chosen.outputs, chosen.inputs)
    if not sparse:
        raise ValueError("a block pattern is checked on sparse weights: it needs sparse=True")
    supported = (1, 16) if quantize else (1, 4)
    if block[0] != 1 or block[1] % supported[1]:
        kind = f"int8 (quantize={quantize!r})" if quantize else "float"
        raise ValueError(f"TFLite runs {kind} Dense weights sparse only in {_block_text(supported)} blocks along "
                         f"the input axis; masks with block {block} cannot be stored that way")
    return block


def _check_inputs(model, kind, check_data):
    """The check inputs as a list of arrays, one per model input (in ``model.inputs`` order), all
    with the same batch size; a Keras 3 model's matched as ``model.predict`` matches them
    (:func:`tfprune.analysis.datachecks.check_inputs`: a dict by input name)."""
    known = getattr(model, "inputs", None) if _has_inputs(model) else None
    if check_data is None:
        if not known:
            raise ValueError(f"model {model.name!r} has no input shapes (subclassed?): pass check_data")
        rng = np.random.default_rng(0)
        shapes, dtypes = [tuple(t.shape[1:]) for t in known], [_numpy_dtype(t) for t in known]
        if any(d is None for shape in shapes for d in shape) or not all(np.issubdtype(d, np.floating) for d in dtypes):
            raise ValueError(f"model {model.name!r} has inputs of unknown size or non-float type {shapes}, "
                             f"{[d.name for d in dtypes]}: pass check_data")
        return [rng.standard_normal((_CHECK_EXAMPLES, *s)).astype(d) for s, d in zip(shapes, dtypes)]
    if kind == "keras":
        inputs = [np.asarray(a) for _, a, _ in datachecks.check_inputs(model, check_data, "check_data")[1]]
    else:
        inputs = [np.asarray(x) for x in (check_data if isinstance(check_data, (tuple, list)) else [check_data])]
        if known and len(inputs) != len(known):
            raise ValueError(f"check_data has {len(inputs)} arrays for the {len(known)} inputs of model {model.name!r}")
        if len({len(x) for x in inputs}) != 1 or len(inputs[0]) == 0:
            raise ValueError("check_data arrays need the same, non-zero number of examples, got "
                             f"{[len(x) for x in inputs]}")
    if known:
        inputs = [x.astype(_numpy_dtype(t), copy=False) for x, t in zip(inputs, known)]
    bad = [i for i, x in enumerate(inputs) if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all()]
    if bad:
        raise ValueError(f"check_data array(s) {bad} hold NaN or infinite values: the outputs cannot be compared on "
                         "them; pass finite inputs")
    return inputs


def _numpy_dtype(tensor):
    """The NumPy dtype of a Keras 3 (string dtype) or tf_keras (``tf.DType``) symbolic input."""
    return np.dtype(getattr(tensor.dtype, "as_numpy_dtype", tensor.dtype))


def _has_inputs(model):
    """Whether ``model.inputs`` is defined (subclassed Keras 3 models raise on access)."""
    try:
        return model.inputs is not None
    except (AttributeError, ValueError):
        return False


def _called(model, inputs):
    """``model`` called on ``inputs`` (a list in ``model.inputs`` order): a Keras 3 model with its
    own input structure (a dict of inputs for a model built on one), a tf_keras model with the list."""
    structure = _compat.input_structure(model) if isinstance(model, keras.Model) else None
    if structure is not None:
        return model(keras.tree.pack_sequence_as(structure, list(inputs)), training=False)
    return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)


def _serving_fn(model):
    """A function of the inputs ``input_i`` (in ``model.inputs`` order) returning ``{"output_j": ...}``
    in flattened output order."""
    def serve(*inputs):
        outputs = _called(model, inputs)
        return {f"output_{j}": y for j, y in enumerate(tf.nest.flatten(outputs))}

    return serve


def _converter_factory(model, kind, specs, folder):
    """A function returning a fresh ``TFLiteConverter`` for the model's serving function.

    Keras 3 models go through a SavedModel written by ``keras.export.ExportArchive`` in ``folder``
    (a plain ``tf.function`` over a Keras 3 model converts with wrong weights); tf_keras models
    convert from their concrete function directly.
    """
    if kind == "keras":
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", _serving_fn(model), input_signature=specs)
        archive.write_out(folder, verbose=False)
        return lambda: tf.lite.TFLiteConverter.from_saved_model(folder)
    function = tf.function(_serving_fn(model), input_signature=specs).get_concrete_function()
    return lambda: tf.lite.TFLiteConverter.from_concrete_functions([function], model)


def _convert(model, new_converter, sparse, quantize, representative, select_tf_ops):
    """The converted file's bytes; a :class:`ConversionError` that names the cause if TFLite fails."""
    try:
        return _run_converter(new_converter(), sparse, quantize, representative, select_tf_ops)
    except Exception as error:  # the converter raises its ConverterError, which TensorFlow does not export
        if sparse and _converts(new_converter(), quantize, representative, select_tf_ops):
            raise ConversionError(
                f"TFLite's sparsity pass (EXPERIMENTAL_SPARSITY) cannot store the weights of model {model.name!r} "
                f"sparse{_first_reason(str(error), ' (the converter logged where, above)')}; the model converts "
                "with sparse=False (weights stored dense). A known cause: a weight read by two ops, as a tied "
                "embedding that also computes the logits (nothing written)") from error
        raise _conversion_error(model, str(error), select_tf_ops) from error


def _converts(converter, quantize, representative, select_tf_ops):
    """Whether the model converts without ``EXPERIMENTAL_SPARSITY``."""
    try:
        _run_converter(converter, False, quantize, representative, select_tf_ops)
    except Exception:  # any converter failure: the sparsity pass is then not the only cause
        return False
    return True


def _run_converter(converter, sparse, quantize, representative, select_tf_ops):
    converter.optimizations = ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []) + (
        [tf.lite.Optimize.DEFAULT] if quantize else [])
    if quantize == "int8":
        converter.representative_dataset = lambda: ([x[i:i + 1] for x in representative]
                                                    for i in range(len(representative[0])))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    if select_tf_ops:
        converter.target_spec.supported_ops = [*converter.target_spec.supported_ops, tf.lite.OpsSet.TFLITE_BUILTINS,
                                               tf.lite.OpsSet.SELECT_TF_OPS]
        _compat.keep_tensor_list_ops(converter)
    return converter.convert()


_NEEDS_SELECT_TF_OPS = ("ERROR_NEEDS_FLEX_OPS", "TF Select ops", "Select TF ops")
_CALLS = ("StatefulPartitionedCall", "PartitionedCall")


def _conversion_error(model, message, select_tf_ops):
    """A :class:`ConversionError` naming the layers and ops the converter's MLIR message blames."""
    blamed = dict.fromkeys((_layer_of(model, path), op) for op, path in re.findall(r'fused\["(\w+):", "([^"@]+)@',
                                                                                    message) if op not in _CALLS)
    where = ", ".join(f"layer {layer!r} (op {op})" for layer, op in blamed) or "the model"
    hint = ("; pass select_tf_ops=True to run the ops TFLite lacks as TensorFlow kernels (the app then needs "
            "TFLite's Flex delegate)") if not select_tf_ops and any(k in message for k in _NEEDS_SELECT_TF_OPS) else ""
    return ConversionError(f"TFLite cannot convert {where} of model {model.name!r}"
                           f"{_first_reason(message, ' (the converter logged why, above)')}{hint} (nothing written)")


def _first_reason(message, otherwise):
    """``": <reason>"`` for the first error line of a converter message, or ``otherwise`` if it has none."""
    reasons = [line.split("error:", 1)[1].strip() for line in message.splitlines() if "error:" in line]
    reasons = [r.rsplit("): ", 1)[-1] if r.startswith("loc(") else r for r in reasons] or [message.strip()]
    return f": {reasons[0].splitlines()[0]}" if reasons[0] else otherwise


def _layer_of(model, path):
    """The layer of ``model`` a converter node path (``functional_1/max_pooling3d_1/MaxPool3D``) runs
    in: the innermost path part that names a layer, with the ``_1`` TensorFlow adds to a scope."""
    names = {layer.name for layer in _compat.nested_layers(model)} if isinstance(model, keras.Model) else set()
    parts = path.split("/")[1:-1]
    for part in reversed(parts):
        for name in (part, re.sub(r"_\d+$", "", part)):
            if name in names:
                return name
    return parts[-1] if parts else path


def _check_representative(model, kind, quantize, data):
    """The calibration inputs as arrays, one per model input, of the model's input shapes; ``None``
    unless ``quantize="int8"``."""
    if quantize != "int8":
        if data is not None:
            raise ValueError(f"representative_data calibrates quantize='int8'; with quantize={quantize!r} it "
                             "would not be used")
        return None
    if data is None:
        raise ValueError("quantize='int8' needs representative_data: typical inputs (an array, or a tuple/list "
                         "of arrays for several inputs) to calibrate the activation scales; nothing written")
    try:
        inputs = _check_inputs(model, kind, data)
    except ValueError as error:
        raise ValueError(str(error).replace("check_data", "representative_data")) from error
    if kind == "keras":  # the data path checked a Keras 3 model's inputs against its input shapes
        return inputs
    known = getattr(model, "inputs", None) if _has_inputs(model) else None
    for i, (x, t) in enumerate(zip(inputs, known or [])):
        want = tuple(t.shape[1:])
        if not (x.ndim == len(want) + 1 and datachecks.shape_fits(x.shape[1:], want)):
            raise ValueError(f"representative_data array {i} has examples of shape {x.shape[1:]}, input {i} of "
                             f"model {model.name!r} takes {want}; nothing written")
    return inputs


def _parse(content):
    """The flatbuffer as a ``ModelT`` object tree."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(content))


def _op_name(parsed, op):
    from tensorflow.lite.tools import flatbuffer_utils

    name = flatbuffer_utils.opcode_to_name(parsed, op.opcodeIndex)
    code = parsed.operatorCodes[op.opcodeIndex].customCode
    return code.decode() if name == "CUSTOM" and code else name


def _ops(parsed):
    return [_op_name(parsed, op) for graph in parsed.subgraphs for op in graph.operators]


def _tensor_name(tensor):
    return tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name


def _readers(parsed, graph, index):
    """The ops of ``graph`` reading tensor ``index``, looking through DENSIFY/DEQUANTIZE: a list of
    ``(op name, went through DENSIFY)``."""
    found = []
    for op in graph.operators:
        if op.inputs is None or index not in list(op.inputs):
            continue
        name = _op_name(parsed, op)
        if name in _PASS_THROUGH:
            found += [(f"{name} -> {reader}", name == "DENSIFY" or densified)
                      for reader, densified in _readers(parsed, graph, int(op.outputs[0]))]
        else:
            found.append((name, False))
    return found


def _block(sparsity, rank):
    """The block shape encoded in a tensor's sparsity parameters (all ones when unstructured)."""
    block = [1] * rank
    for k, dim in enumerate([] if sparsity.blockMap is None else list(sparsity.blockMap)):
        block[int(dim)] = int(sparsity.dimMetadata[rank + k].denseSize)
    return tuple(block)


def _stored(parsed, tensor):
    data = parsed.buffers[tensor.buffer].data
    return 0 if data is None else len(data) // np.dtype(_NUMPY_TYPES.get(tensor.type, np.uint8)).itemsize


def _sparse_tensors(parsed):
    records = []
    for graph in parsed.subgraphs:
        for index, tensor in enumerate(graph.tensors):
            if tensor.sparsity is None:
                continue
            readers = _readers(parsed, graph, index)
            dtype = np.dtype(_NUMPY_TYPES[tensor.type]).name if tensor.type in _NUMPY_TYPES else str(tensor.type)
            records.append(SparseTensor(
                _tensor_name(tensor), tuple(int(d) for d in tensor.shape), _block(tensor.sparsity, len(tensor.shape)),
                dtype, _stored(parsed, tensor), ", ".join(r for r, _ in readers) or "(none)",
                any(d for _, d in readers)))
    return records


def describe(path):
    """The op types and sparse tensors of a TFLite file.

    Args:
        path: A ``.tflite`` file, or its content as bytes.

    Returns:
        ``(ops, sparse_tensors)``: op type names in graph order, and a list of :class:`SparseTensor`.

    Raises:
        ValueError: if the content is not a TFLite flatbuffer (its file identifier, bytes 4–8, is
            not ``TFL3``).
        OSError: if the file cannot be read (the error names it).

    Example:
        >>> ops, sparse = tfprune.export.describe("model.tflite")
        >>> [(t.shape, t.block, t.consumer) for t in sparse]
    """
    if isinstance(path, (bytes, bytearray)):
        content, source = path, "the bytes given"
    else:
        with open(arguments.path("path", path), "rb") as f:
            content, source = f.read(), repr(os.fspath(path))
    if content[4:8] != _IDENTIFIER:
        raise ValueError(f"{source} is not a TFLite file: its bytes 4-8 are {bytes(content[4:8])!r}, a TFLite "
                         f"flatbuffer's are {_IDENTIFIER!r} ({len(content)} bytes read)")
    parsed = _parse(content)
    return _ops(parsed), _sparse_tensors(parsed)


def _fc_weights(parsed, ops=("FULLY_CONNECTED",)):
    """Every weight of the ``ops`` (FULLY_CONNECTED) as ``(tensor, went through DENSIFY)``, looking
    back through DENSIFY/DEQUANTIZE to the stored constant."""
    found = []
    for graph in parsed.subgraphs:
        producers = {int(out): op for op in graph.operators for out in op.outputs}
        for op in graph.operators:
            if _op_name(parsed, op) not in ops:
                continue
            index, densified = int(op.inputs[1]), False
            while index in producers and _op_name(parsed, producers[index]) in _PASS_THROUGH:
                densified |= _op_name(parsed, producers[index]) == "DENSIFY"
                index = int(producers[index].inputs[0])
            if index not in producers:  # a constant, not an activation
                found.append((graph.tensors[index], densified))
    return found


def _zero_fraction(parsed, tensor):
    data = parsed.buffers[tensor.buffer].data
    if data is None or tensor.type not in _NUMPY_TYPES:
        return 0.0
    values = np.frombuffer(bytes(data), _NUMPY_TYPES[tensor.type])
    return float(np.mean(values == 0)) if values.size else 0.0


def _check_blocks(parsed, block):
    """Every Dense weight with enough zeros to be stored sparse must run sparse in ``block``."""
    problems, sparse_count = [], 0
    for tensor, densified in _fc_weights(parsed):
        name = _short(_tensor_name(tensor))
        if tensor.sparsity is None:
            zeros = _zero_fraction(parsed, tensor)
            if zeros >= _MIN_SPARSITY:
                problems.append(f"{name}: stored dense although {zeros:.0%} of it is zero")
            continue
        sparse_count += 1
        stored = _block(tensor.sparsity, len(tensor.shape))
        if densified:
            problems.append(f"{name}: its zeros do not form {_block_text(block)} blocks, so it is stored "
                            f"unstructured and densified at load time")
        elif any(want % got for want, got in zip(block, stored)):
            problems.append(f"{name}: stored in {_block_text(stored)} blocks, which do not tile {_block_text(block)}")
    if not sparse_count and not problems:
        problems.append("no Dense (FULLY_CONNECTED) weight has enough zeros (30 %) to be stored sparse")
    if problems:
        raise ValueError(f"block={block} was asked, but: " + "; ".join(problems) + " (nothing written)")


def available_runtimes():
    """The TFLite interpreters installed here, the preferred one first: ``"ai_edge_litert"`` (if the
    ai-edge-litert package is installed) and ``"tf.lite"``."""
    return (["ai_edge_litert"] if importlib.util.find_spec("ai_edge_litert") else []) + ["tf.lite"]


def _runtime(name):
    """``(name, Interpreter class, OpResolverType)`` of the interpreter to use."""
    arguments.choice("runtime", name, (None, *RUNTIMES))
    name = name or available_runtimes()[0]
    if name == "tf.lite":
        return name, tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    litert = _optional.require("ai_edge_litert.interpreter", "runtime='ai_edge_litert'")
    return name, litert.Interpreter, litert.OpResolverType


def make_interpreter(path, *, runtime=None, use_xnnpack=True, num_threads=None):
    """A TFLite interpreter for a file, from ai_edge_litert or ``tf.lite``.

    Args:
        path: A ``.tflite`` file.
        runtime: ``"ai_edge_litert"``, ``"tf.lite"`` or ``None`` (ai_edge_litert if installed).
        use_xnnpack: ``False`` turns off the default XNNPACK delegate.
        num_threads: Threads for the interpreter; ``None`` is the runtime's default.

    Returns:
        The interpreter (tensors not yet allocated).

    Example:
        >>> run = tfprune.export.make_interpreter("model.tflite", use_xnnpack=False).get_signature_runner()
        >>> run(input_0=x[:1])["output_0"]
    """
    _, interpreter, resolver = _runtime(runtime)
    options = {} if use_xnnpack else {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice; the report names the runtime
        warnings.filterwarnings("ignore", r"\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
        return interpreter(model_path=os.fspath(path), num_threads=num_threads, **options)


def _batches(inputs):
    for start in range(0, len(inputs[0]), _CHECK_BATCH):
        yield [x[start:start + _CHECK_BATCH] for x in inputs]


def _keras_outputs(model, inputs):
    """The model's flattened outputs on ``inputs``, as NumPy arrays, computed batch by batch."""
    parts = [[np.asarray(y) for y in tf.nest.flatten(_called(model, xs))] for xs in _batches(inputs)]
    return [np.concatenate(column) for column in zip(*parts)]


def _tflite_outputs(path, inputs, runtime, use_xnnpack, sparse_tensors):
    """The file's outputs on ``inputs``, batch by batch (the signature runner resizes the inputs):
    integer inputs are quantized and outputs dequantized with the file's ``(scale, zero point)``
    (scale 0: a float tensor)."""
    interpreter = make_interpreter(path, runtime=runtime, use_xnnpack=use_xnnpack)
    run = interpreter.get_signature_runner("serving_default")
    ins, outs = run.get_input_details(), run.get_output_details()
    parts = []
    for xs in _batches(inputs):
        try:
            out = run(**{f"input_{i}": _quantized(x, ins[f"input_{i}"]) for i, x in enumerate(xs)})
        except RuntimeError as error:
            raise RuntimeError(f"{runtime} could not run the exported model: {error}"
                               + _hints(sparse_tensors, str(error))) from error
        parts.append([_dequantized(out[f"output_{j}"], outs[f"output_{j}"]) for j in range(len(out))])
    return [np.concatenate(column) for column in zip(*parts)]


def _output_scales(path, runtime):
    """The quantization scale of each output ``output_j`` of the file."""
    outs = make_interpreter(path, runtime=runtime).get_signature_runner("serving_default").get_output_details()
    return [outs[f"output_{j}"]["quantization"][0] for j in range(len(outs))]


def _quantized(x, details):
    """``x`` in the input's integer type, ``round(x / scale) + zero point`` clipped to its range."""
    scale, zero_point = details["quantization"]
    if not scale or not np.issubdtype(details["dtype"], np.integer):
        return x
    limits = np.iinfo(details["dtype"])
    return np.clip(np.round(x / scale) + zero_point, limits.min, limits.max).astype(details["dtype"])


def _dequantized(y, details):
    scale, zero_point = details["quantization"]
    if not scale or not np.issubdtype(details["dtype"], np.integer):
        return y
    return ((y.astype(np.float64) - zero_point) * scale).astype(np.float32)


def _int8_agreement(actual, expected, scales):
    """``(top-1 agreement on the first output, max |TFLite − Keras| in output steps)``."""
    top1 = float(np.mean(np.argmax(actual[0], axis=-1) == np.argmax(expected[0], axis=-1)))
    steps = max(float(np.max(np.abs(a.astype(np.float64) - e))) / s for a, e, s in zip(actual, expected, scales))
    return top1, steps


def _weight_zeros(parsed):
    """``[(name, shape, zeros)]`` of every weight of a FULLY_CONNECTED or convolution op in the file."""
    return [(_short(_tensor_name(t)), tuple(int(d) for d in t.shape), _zeros_stored(parsed, t))
            for t, _ in _fc_weights(parsed, _WEIGHT_OPS)]


def _zeros_stored(parsed, tensor):
    """Zeros of a constant tensor: its stored zero values, plus the entries sparse storage leaves out."""
    data = parsed.buffers[tensor.buffer].data
    values = np.frombuffer(bytes(data if data is not None else b""), _NUMPY_TYPES.get(tensor.type, np.uint8))
    return math.prod(int(d) for d in tensor.shape) - values.size + int(np.count_nonzero(values == 0))


def _max_abs_diff(actual, expected):
    """max |actual - expected| over all outputs; NaN if any is NaN; a mismatch error on a shape mismatch."""
    for j, (a, e) in enumerate(zip(actual, expected)):
        if a.shape != e.shape:
            raise ExportMismatchError(f"output {j} of the TFLite model has shape {a.shape}, the Keras model's "
                                      f"{e.shape}; nothing written", math.inf, None)
    return float(np.max([np.max(np.abs(a.astype(np.float64) - e)) for a, e in zip(actual, expected)]))


def _hints(sparse_tensors, error=""):
    """Known TFLite faults that fit this file (docs/tflite.md), and a run that failed with ``error``."""
    hints = []
    if "Flex delegate" in error:
        hints.append("the file holds Select TF ops (select_tf_ops=True), which this interpreter cannot run without "
                     "TFLite's Flex delegate: it cannot be checked here")
    ragged = [f"{_short(t.name)} {list(t.shape)}" for t in sparse_tensors
              if not t.densified and t.shape[-1] % t.block[-1]]
    if ragged:
        hints.append(f"TFLite's block-sparse kernels compute wrong outputs when the input size is not a multiple of "
                     f"the block, as for {ragged}: resize those layers")
    return "".join(f"\n  hint: {h}" for h in hints)
