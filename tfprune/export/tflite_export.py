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
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfprune.analysis import datachecks
from tfprune.base import arguments
from tfprune.base.files import check_output_path, replacing
from tfprune.base.deprecation import renamed
from tfprune.layers.targets import is_wrapped
from tfprune.sparsity import patterns

__all__ = ["ExportMismatchError", "SparseTensor", "TFLiteReport", "available_runtimes", "describe",
           "make_interpreter", "tflite"]

QUANTIZE = (None, "dynamic")
RUNTIMES = ("ai_edge_litert", "tf.lite")
FLOAT_TOLERANCE = 1e-5  # × max(1, largest |Keras output|)
DYNAMIC_TOLERANCE = 5e-2  # × largest |Keras output|
_MIN_SPARSITY = 0.3  # the converter keeps weights with fewer zeros dense (dense_to_sparse.cc)
_CHECK_EXAMPLES = 8
_CHECK_BATCH = 256
_PASS_THROUGH = ("DENSIFY", "DEQUANTIZE")
_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier of TFLite models, at bytes 4-8
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 3: np.uint8, 9: np.int8}  # TFLite TensorType → dtype


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
        quantize: ``None`` or ``"dynamic"``.
        block: The block asked for, or ``None``.
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
        lines.append(f"  check: max |TFLite - Keras| = {self.max_abs_diff:.3g} <= {self.tolerance:.3g} on "
                     f"{self.examples} examples ({self.interpreter}, {xnnpack})")
        return "\n".join(lines)


def _short(name):
    """A tensor name without the fused ops after ``;``."""
    return name.split(";")[0]


def _block_text(block):
    return "×".join(str(b) for b in block)


@renamed(block="pattern")
def tflite(model, path, *, sparse=True, pattern=None, quantize=None, check_data=None, tolerance=None,
           use_xnnpack=True, runtime=None):
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
        quantize: ``None`` (float32) or ``"dynamic"`` (dynamic-range int8 weights,
            ``tf.lite.Optimize.DEFAULT``).
        check_data: Inputs to compare on: an array, or a tuple/list of arrays for several inputs.
            Default: 8 seeded standard-normal examples of the model's input shape.
        tolerance: The largest max |TFLite − Keras| allowed. Default, with ``s`` the largest
            |Keras output|: ``1e-5 × max(1, s)`` for float (float32 rounding grows with the
            outputs); ``5e-2 × s`` for ``quantize="dynamic"`` (correct int8 layers differ by
            about 1 % of their output scale, broken sparse int8 kernels by 17 % and more).
        use_xnnpack: Run the check with TFLite's default XNNPACK delegate (what most apps get);
            ``False`` uses the builtin kernels only (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``).
            XNNPACK computes dynamic-range int8 sparse Dense layers wrongly: such an export fails
            its check with the delegate on.
        runtime: ``"ai_edge_litert"``, ``"tf.lite"``, or ``None``: ai_edge_litert when it is
            installed, else ``tf.lite.Interpreter``.

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
    block = None if pattern is None else _check_block_arg(pattern, sparse, quantize)
    runtime = _runtime(runtime)[0]
    inputs = _check_inputs(model, check_data)
    specs = [tf.TensorSpec((None, *x.shape[1:]), x.dtype, name=f"input_{i}") for i, x in enumerate(inputs)]

    with tempfile.TemporaryDirectory() as folder:
        new_converter = _converter_factory(model, kind, specs, folder)
        content = _convert(new_converter, sparse, quantize)
        dense_bytes = len(content) if not sparse else len(_convert(new_converter, False, quantize))
    parsed = _parse(content)
    ops, sparse_tensors = _ops(parsed), _sparse_tensors(parsed)
    if block is not None:
        _check_blocks(parsed, block)

    with replacing(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(content)
        expected = _keras_outputs(model, inputs)
        actual = _tflite_outputs(temporary, inputs, runtime, use_xnnpack, sparse_tensors, quantize)
        diff = _max_abs_diff(actual, expected)
        if tolerance is None:
            scale = max(float(np.max(np.abs(e), initial=0.0)) for e in expected)
            tolerance = FLOAT_TOLERANCE * max(1.0, scale) if quantize is None else DYNAMIC_TOLERANCE * scale
        if not diff <= tolerance:  # also catches NaN
            raise ExportMismatchError(
                f"the TFLite model's outputs differ from the Keras model's: max |TFLite - Keras| = {diff:.3g} > "
                f"tolerance {tolerance:.3g} on {len(inputs[0])} examples ({runtime}, XNNPACK "
                f"{'on' if use_xnnpack else 'off'}); nothing written to {path}"
                + _hints(sparse_tensors, quantize, use_xnnpack),
                diff, tolerance)
    return TFLiteReport(path, len(content), dense_bytes, sparse_tensors, ops, "DENSIFY" in ops,
                        diff, tolerance, len(inputs[0]), runtime, use_xnnpack, quantize, block)


def _check_model(model):
    """``"keras"`` or ``"tf_keras"``; a clear error for wrapped or other models."""
    if isinstance(model, keras.Model):
        if is_wrapped(model):
            raise ValueError(f"model {model.name!r} still holds tfprune MaskedLayers: call tfprune.strip(model) "
                             "first and export the plain model it returns")
        return "keras"
    if any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__):
        wrapped = [layer.name for layer in model.submodules if type(layer).__name__ == "PruneLowMagnitude"]
        if wrapped:
            raise ValueError(f"model {model.name!r} still holds TF-MOT PruneLowMagnitude wrappers ({wrapped}): call "
                             "tfmot.sparsity.keras.strip_pruning(model) first")
        return "tf_keras"
    arguments.keras_model(model)  # raises, naming what was given


def _check_block_arg(pattern, sparse, quantize):
    """The block of a block ``pattern`` as a tuple, if TFLite can run Dense weights sparse in blocks that tile it."""
    chosen = patterns.get(pattern)
    if not isinstance(chosen, patterns.Block):
        raise ValueError(f"export checks block patterns such as '1x4' in the file, got pattern {chosen}")
    block = (chosen.outputs, chosen.inputs)
    if not sparse:
        raise ValueError("a block pattern is checked on sparse weights: it needs sparse=True")
    supported = (1, 16) if quantize == "dynamic" else (1, 4)
    if block[0] != 1 or block[1] % supported[1]:
        kind = "int8 (quantize='dynamic')" if quantize else "float"
        raise ValueError(f"TFLite runs {kind} Dense weights sparse only in {_block_text(supported)} blocks along "
                         f"the input axis; masks with block {block} cannot be stored that way")
    return block


def _check_inputs(model, check_data):
    """The check inputs as a list of arrays, one per model input, all with the same batch size."""
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
    inputs = [np.asarray(x) for x in (check_data if isinstance(check_data, (tuple, list)) else [check_data])]
    if known and len(inputs) != len(known):
        raise ValueError(f"check_data has {len(inputs)} arrays for the {len(known)} inputs of model {model.name!r}")
    for i, (x, t) in enumerate(zip(inputs, known or ())):
        expected = tuple(t.shape[1:])
        if not (x.ndim == len(expected) + 1 and datachecks.shape_fits(x.shape[1:], expected)):
            raise ValueError(f"check_data array {i} has examples of shape {x.shape[1:]} (array shape {x.shape}), but "
                             f"input {i} of model {model.name!r} takes examples of shape {expected}: give arrays of "
                             f"shape (examples, {', '.join(map(str, expected))})")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ValueError(f"check_data array {i} holds {x.dtype} values, not numbers")
        inputs[i] = x.astype(_numpy_dtype(t), copy=False)
    if len({len(x) for x in inputs}) != 1 or len(inputs[0]) == 0:
        raise ValueError("check_data arrays need the same, non-zero number of examples, got "
                         f"{[len(x) for x in inputs]}")
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


def _serving_fn(model):
    """A function of the inputs ``input_i`` returning ``{"output_j": ...}`` in flattened output order."""
    def serve(*inputs):
        outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
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


def _convert(new_converter, sparse, quantize):
    converter = new_converter()
    converter.optimizations = ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []) + (
        [tf.lite.Optimize.DEFAULT] if quantize == "dynamic" else [])
    return converter.convert()


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


def _fc_weights(parsed):
    """Every FULLY_CONNECTED weight as ``(tensor, graph, went through DENSIFY)``, looking back
    through DENSIFY/DEQUANTIZE to the stored constant."""
    found = []
    for graph in parsed.subgraphs:
        producers = {int(out): op for op in graph.operators for out in op.outputs}
        for op in graph.operators:
            if _op_name(parsed, op) != "FULLY_CONNECTED":
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
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError as error:
        raise ImportError("runtime='ai_edge_litert' needs the ai-edge-litert package: "
                          "pip install ai-edge-litert") from error
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
    parts = [[np.asarray(y) for y in tf.nest.flatten(model(xs[0] if len(xs) == 1 else xs, training=False))]
             for xs in _batches(inputs)]
    return [np.concatenate(column) for column in zip(*parts)]


def _tflite_outputs(path, inputs, runtime, use_xnnpack, sparse_tensors, quantize):
    """The file's outputs on ``inputs``, batch by batch (the signature runner resizes the inputs)."""
    interpreter = make_interpreter(path, runtime=runtime, use_xnnpack=use_xnnpack)
    run = interpreter.get_signature_runner("serving_default")
    parts = []
    for xs in _batches(inputs):
        try:
            out = run(**{f"input_{i}": x for i, x in enumerate(xs)})
        except RuntimeError as error:
            raise RuntimeError(f"{runtime} could not run the exported model: {error}"
                               + _hints(sparse_tensors, quantize, use_xnnpack)) from error
        parts.append([out[f"output_{j}"] for j in range(len(out))])
    return [np.concatenate(column) for column in zip(*parts)]


def _max_abs_diff(actual, expected):
    """max |actual - expected| over all outputs; NaN if any is NaN; a mismatch error on a shape mismatch."""
    for j, (a, e) in enumerate(zip(actual, expected)):
        if a.shape != e.shape:
            raise ExportMismatchError(f"output {j} of the TFLite model has shape {a.shape}, the Keras model's "
                                      f"{e.shape}; nothing written", math.inf, None)
    return float(np.max([np.max(np.abs(a.astype(np.float64) - e)) for a, e in zip(actual, expected)]))


def _hints(sparse_tensors, quantize, use_xnnpack):
    """Known TFLite faults that fit this file (docs/tflite.md)."""
    hints = []
    ragged = [f"{_short(t.name)} {list(t.shape)}" for t in sparse_tensors
              if not t.densified and t.shape[-1] % t.block[-1]]
    if ragged:
        hints.append(f"TFLite's block-sparse kernels compute wrong outputs when the input size is not a multiple of "
                     f"the block, as for {ragged}: resize those layers")
    if quantize == "dynamic" and use_xnnpack and sparse_tensors:
        hints.append("XNNPACK computes dynamic-range int8 sparse layers wrongly: try use_xnnpack=False and ship "
                     "the model with the delegate off")
    return "".join(f"\n  hint: {h}" for h in hints)
