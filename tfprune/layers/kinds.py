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
``custom``          a weight a layer lists in its ``prunable_weights()`` that its spec does not name
==================  =======================================================================

Biases and normalisation parameters are not prunable by default (as in the SynFlow and GraSP
reference code; the official SNIP code prunes biases: ``include_bias=True``). Which weights each
layer type has, and their kinds, is in :mod:`tfprune.layer_specs`; a custom layer type is added
with :func:`tfprune.register_layer` or a ``prunable_weights()`` method.
"""

from __future__ import annotations

from tfprune.layers import specs as layer_specs
from tfprune.base import walk

__all__ = ["KINDS", "candidate_weights"]

KINDS = layer_specs.KINDS
_ASKED = {"bias": "include_bias", "norm": "include_norm"}  # kinds pruned only when asked


def candidate_weights(unit, include_bias=False, include_norm=False):
    """Prunable weights of a unit (a layer and the layers inside it).

    Args:
        unit: A Keras 3 layer.
        include_bias: Also return biases.
        include_norm: Also return γ and β of normalisation layers.

    Returns:
        A list of ``(leaf, variable, kind)``: the layer that owns the variable, the variable and
        its kind, in the order of the unit's layers and their variables.

    Raises:
        ValueError, TypeError: if a layer's registered spec or ``prunable_weights()`` does not fit
            it (see :func:`tfprune.layers.specs.prunable`).
    """
    asked = {"include_bias": include_bias, "include_norm": include_norm}
    spec = layer_specs.spec_of(unit)
    kind_inside = spec.kind_inside if spec is not None else None
    found = []
    for leaf in walk.leaves(unit):
        for variable, kind in layer_specs.prunable(leaf):
            if kind in _ASKED and not asked[_ASKED[kind]]:
                continue
            if kind == "dense" and kind_inside is not None and leaf is not unit:
                kind = kind_inside
            found.append((leaf, variable, kind))
    return found
