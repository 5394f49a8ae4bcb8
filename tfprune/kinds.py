"""Which weights of a layer are prunable, and what kind of weight each is.

Kinds (the ``kind`` attribute of a target):

==================  =======================================================================
``dense``           kernel of ``Dense`` / ``EinsumDense``
``conv``            kernel of ``Conv1D/2D/3D``
``conv_transpose``  kernel of ``Conv1D/2D/3DTranspose``
``depthwise``       kernel of ``DepthwiseConv1D/2D``; depthwise kernel of ``SeparableConv1D/2D``
``pointwise``       pointwise kernel of ``SeparableConv1D/2D``
``embedding``       embedding matrix of ``Embedding``
``rnn``             input kernel of ``SimpleRNN``/``LSTM``/``GRU`` cells
``rnn_recurrent``   recurrent kernel of those cells
``attention``       query/key/value/output kernels inside ``MultiHeadAttention``
``bias``            biases of the layers above (only with ``include_bias=True``)
``norm``            γ and β of Batch/Layer/Group normalisation (only with ``include_norm=True``)
==================  =======================================================================

Biases and normalisation parameters are not prunable by default (as in the SynFlow and GraSP
reference code; the official SNIP code prunes biases: ``include_bias=True``).
"""

from __future__ import annotations

import keras

from tfprune import walk

__all__ = ["KINDS", "candidate_weights"]

L = keras.layers
_KERNELS = [
    ((L.Dense, L.EinsumDense), {"kernel": "dense"}),
    ((L.Conv1D, L.Conv2D, L.Conv3D), {"kernel": "conv"}),
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), {"kernel": "conv_transpose"}),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), {"kernel": "depthwise"}),
    ((L.SeparableConv1D, L.SeparableConv2D), {"depthwise_kernel": "depthwise", "pointwise_kernel": "pointwise"}),
    ((L.Embedding,), {"embeddings": "embedding"}),
    ((L.SimpleRNNCell, L.LSTMCell, L.GRUCell), {"kernel": "rnn", "recurrent_kernel": "rnn_recurrent"}),
]
_NORMS = (L.BatchNormalization, L.LayerNormalization, L.GroupNormalization)
KINDS = ("dense", "conv", "conv_transpose", "depthwise", "pointwise", "embedding", "rnn",
         "rnn_recurrent", "attention", "bias", "norm")


def _kernel_kinds(leaf):
    for classes, kinds in _KERNELS:
        if isinstance(leaf, classes):
            return kinds
    return None


def _kind(unit, leaf, variable, include_bias, include_norm):
    kinds = _kernel_kinds(leaf)
    if kinds is not None:
        kind = kinds.get(variable.name)
        if kind == "dense" and isinstance(unit, L.MultiHeadAttention):
            return "attention"
        if kind is None and include_bias and variable.name == "bias":
            return "bias"
        return kind
    if include_norm and isinstance(leaf, _NORMS) and variable.name in ("gamma", "beta"):
        return "norm"
    return None


def candidate_weights(unit, include_bias=False, include_norm=False):
    """Prunable weights of a unit (a layer and the layers inside it).

    Args:
        unit: A Keras 3 layer.
        include_bias: Also return biases.
        include_norm: Also return γ and β of normalisation layers.

    Returns:
        A list of ``(leaf, variable, kind)``: the layer that owns the variable, the variable and
        its kind, in the order of the unit's layers and their variables.
    """
    found = []
    for leaf in walk.leaves(unit):
        for variable in walk.own_variables(leaf):
            kind = _kind(unit, leaf, variable, include_bias, include_norm)
            if kind is not None:
                found.append((leaf, variable, kind))
    return found
