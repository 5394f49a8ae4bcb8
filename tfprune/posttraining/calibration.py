"""Calibration: the inputs of each layer to prune, recorded block by block through the pruned model.

Both papers prune a model one block at a time: the calibration data is run through the blocks
before, *already pruned*, the inputs of the block's linear layers are recorded, the layers are
pruned, and the block's outputs (through its pruned layers) become the next block's inputs. Only
one block's activations are held at a time, and of each layer only what the criteria read
(:class:`Statistics`), never its inputs themselves.

The blocks come from the model:

* a model with Keras' ``get_quantization_layer_structure`` hook (KerasHub's causal LMs, which
  ``model.quantize("gptq")`` walks the same way): its ``pre_block_layers`` turn token ids into the
  first block's inputs, and each of its ``sequential_blocks`` is a block;
* any other model: each unit (see :mod:`tfprune.base.walk`: a layer of a Sequential or functional
  model, a sub-layer of a subclassed one) holding layers to prune is a block, in the order the
  model first calls them, and the whole model runs on the data to record each block (one forward
  pass per block, nothing held between them).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tfprune import _compat
from tfprune.autodiff import engines

__all__ = ["Statistics", "Calibration", "calibration_batches"]


class Statistics:
    """What the criteria read from a layer's input features ``X`` (tokens × width), summed over tokens.

    Args:
        width: The number of input features.
        gram: Also accumulate ``XᵀX`` (SparseGPT's Hessian; width² numbers).

    Example:
        >>> s = Statistics(2, gram=True); s.update(np.array([[1., 2.], [3., 4.]]))
        >>> s.norms, s.hessian
        (array([3.1623, 4.4721]), array([[10., 14.], [14., 20.]]))
    """

    def __init__(self, width, gram):
        self.tokens = 0
        self.squares = np.zeros(width)
        self.gram = np.zeros((width, width)) if gram else None

    def update(self, x):
        """Adds the rows of ``x`` (tokens × width, float64)."""
        self.tokens += len(x)
        self.squares += np.einsum("ij,ij->j", x, x)
        if self.gram is not None:
            self.gram += x.T @ x

    @property
    def norms(self):
        """``‖X_j‖₂`` of each input feature ``j``: Wanda's activation norms."""
        return np.sqrt(self.squares)

    @property
    def hessian(self):
        """SparseGPT's ``H = 2XᵀX``, divided by the number of tokens (a scale that changes neither
        the masks nor the update, and keeps the numbers of long calibration sets moderate)."""
        return 2.0 * self.gram / self.tokens


def calibration_batches(model, data, samples, batch_size):
    """The model inputs of the first ``samples`` examples of ``data``, as the model takes them.

    Args:
        model: The model (its ``preprocessor``, where it has one, turns strings into inputs).
        data: Inputs ``x`` (an array, a tensor, a dict of them, or strings), ``(x, y)`` or ``(x, y,
            sample_weight)`` as ``fit`` takes them, or a ``tf.data.Dataset`` / iterable of such batches.
        samples: The number of examples (calibration sequences) to use.
        batch_size: Examples per forward pass, for arrays (a dataset's batches are used as they come).

    Returns:
        A list of input batches holding ``samples`` examples in all (fewer if the data has fewer).

    Raises:
        ValueError: for ``samples`` or ``batch_size`` below 1, data without examples, or strings
            for a model without a preprocessor.
    """
    for name, value in (("samples", samples), ("batch_size", batch_size)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if _is_inputs(data) or _is_pair(data):
        x = _rows(data[0] if _is_pair(data) else data, 0, samples)
        batches = [_rows(x, i, i + batch_size) for i in range(0, _count(x), batch_size)]
    elif hasattr(data, "__iter__"):
        batches, count = [], 0
        for batch in data:
            x = _rows(batch[0] if _is_pair(batch) else batch, 0, samples - count)
            batches.append(x)
            count += _count(x)
            if count >= samples:
                break
    else:
        raise ValueError(f"data must be inputs x, (x, y) as fit takes them, or a dataset of batches; got "
                         f"{type(data).__name__}")
    if not batches or not _count(batches[0]):
        raise ValueError("data holds no examples: give at least one calibration sequence")
    return [_preprocessed(model, x) for x in batches]


def _is_inputs(data):
    return hasattr(data, "shape") or isinstance(data, dict) or _is_strings(data)


def _is_pair(data):
    return isinstance(data, tuple) and len(data) in (2, 3) and _is_inputs(data[0])


def _is_strings(x):
    if isinstance(x, (list, tuple)):
        return bool(x) and all(isinstance(s, (str, bytes)) for s in x)
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "SUO"
    return getattr(getattr(x, "dtype", None), "name", None) == "string"  # a tf.string tensor


def _rows(x, start, stop):
    """Examples ``start:stop`` of inputs ``x`` (a list of strings is one input, not a structure)."""
    if isinstance(x, (list, tuple)) and _is_strings(x):
        return list(x[start:stop])
    return keras.tree.map_structure(lambda a: a[start:stop], x)


def _count(x):
    return len(x) if isinstance(x, list) and _is_strings(x) else len(keras.tree.flatten(x)[0])


def _preprocessed(model, x):
    """``x``, or the model's inputs made from strings by its ``preprocessor``."""
    if not _is_strings(x):
        return x
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise ValueError(f"data holds strings, but model {model.name!r} has no preprocessor to turn them into "
                         "inputs: give token ids (or the dict of inputs the model takes)")
    out = preprocessor(x)
    return out[0] if isinstance(out, tuple) else out


class Calibration:
    """The blocks of a model to prune, in order, and the statistics of their layers' inputs.

    Args:
        model: The model; its weights may change between blocks (the caller prunes them).
        linears: The :class:`~tfprune.posttraining.linear.Linear` layers to prune.
        batches: Model inputs (:func:`calibration_batches`).

    Attributes:
        blocks: Lists of linears, one per block, in the order they are pruned.
        outside: Linears no block holds (left dense): outside the model's sequential blocks, or
            never called on the data.

    Raises:
        ValueError: if the model cannot run on the data (checked before any weight changes).
    """

    def __init__(self, model, linears, batches):
        self.model, self.batches = model, batches
        structure = model.get_quantization_layer_structure("gptq") if isinstance(model, keras.Model) else None
        if structure and structure.get("sequential_blocks"):
            self._pre = list(structure.get("pre_block_layers", []))
            self._block_layers = list(structure["sequential_blocks"])
            members = [[lin for lin in linears if any(lin.layer is leaf for leaf in _compat.nested_layers(unit))]
                       for unit in self._block_layers]
        else:
            self._pre = None
            called = self._call_order(linears)
            self._block_layers = list({id(lin.target.unit): lin.target.unit for lin in called}.values())
            members = [[lin for lin in called if lin.target.unit is unit] for unit in self._block_layers]
        self.blocks = [m for m in members if m]
        self._block_layers = [u for u, m in zip(self._block_layers, members) if m]
        held = {id(lin) for block in self.blocks for lin in block}
        self.outside = [lin for lin in linears if id(lin) not in held]

    def statistics(self, gram):
        """Yields, block by block, ``[(linear, Statistics), ...]`` of the block's inputs through the
        model as it is then: prune the block's layers before asking for the next block.

        Args:
            gram: Accumulate ``XᵀX`` too (SparseGPT).
        """
        hidden = self._hidden_inputs() if self._pre is not None else None
        for i, (unit, block) in enumerate(zip(self._block_layers, self.blocks)):
            stats = {id(lin.layer): (lin, Statistics(lin.width, gram)) for lin in block}

            def observe(layer, inputs):
                linear, statistics = stats[id(layer)]
                statistics.update(linear.features(inputs))

            with _compat.observed_inputs([lin.layer for lin in block], observe), engines.inference():
                for x in hidden if hidden is not None else self.batches:
                    (unit if hidden is not None else self.model)(x)
            yield list(stats.values())
            if hidden is not None and i + 1 < len(self._block_layers):
                with engines.inference():
                    hidden = [_first(unit(h)) for h in hidden]

    def _hidden_inputs(self):
        """The first block's inputs: the pre-block layers on the token ids of each batch."""
        hidden = []
        for x in self.batches:
            h = _token_ids(x)
            try:
                with engines.inference():
                    for layer in self._pre:
                        h = layer(h)
            except Exception as error:
                raise _misfit(self.model, x, error) from error
            hidden.append(h)
        return hidden

    def _call_order(self, linears):
        """``linears`` in the order the model first calls them on the first batch (one forward pass)."""
        order = {}
        with _compat.observed_inputs([lin.layer for lin in linears], lambda layer, _: order.setdefault(id(layer))):
            try:
                self.model(self.batches[0])
            except Exception as error:
                raise _misfit(self.model, self.batches[0], error) from error
        rank = {key: i for i, key in enumerate(order)}
        return sorted((lin for lin in linears if id(lin.layer) in rank), key=lambda lin: rank[id(lin.layer)])


def _token_ids(x):
    """The token ids of a batch of causal-LM inputs (whole sequences: a padding mask is not used)."""
    if not isinstance(x, dict):
        return x
    if "token_ids" not in x:
        raise ValueError(f"data: the model's blocks start from token ids, but the inputs are a dict with keys "
                         f"{sorted(x)}: give {{'token_ids': ...}} or the token ids alone")
    mask = x.get("padding_mask")
    if mask is not None and not np.all(np.asarray(mask)):
        warnings.warn("the calibration sequences are padded, but blocks run on whole sequences (as in both "
                      "papers): padded positions count as tokens; give unpadded sequences", UserWarning,
                      stacklevel=4)
    return x["token_ids"]


def _first(output):
    """A block's output hidden states (the first item where a block also returns a cache)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _misfit(model, x, error):
    shapes = keras.tree.map_structure(lambda a: tuple(np.shape(a)), x)
    return ValueError(f"data does not fit model {model.name!r}: running it on the first batch (inputs of shape "
                      f"{shapes}) failed with {type(error).__name__}: {error}")
