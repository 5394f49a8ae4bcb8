"""prune: post-training pruning of a trained model's Dense and EinsumDense layers, block by block."""

from __future__ import annotations

import functools
import warnings

import keras

from tfprune.analysis import datachecks
from tfprune.base import arguments, views, walk
from tfprune.layers import policies
from tfprune.layers.targets import prunable_weights
from tfprune.posttraining import magnitude, sparsegpt, wanda
from tfprune.posttraining.calibration import Calibration, calibration_batches
from tfprune.posttraining.linear import Linear, is_linear
from tfprune.sparsity import masks, patterns

__all__ = ["prune", "CRITERIA"]

CRITERIA = {"magnitude": magnitude.prune_matrix, "wanda": wanda.prune_matrix, "sparsegpt": sparsegpt.prune_matrix}
"""The criteria by name: each a function ``(W, statistics, density, pattern) -> (Ŵ, mask)``."""


def prune(model, criterion="wanda", *, data=None, sparsity=None, pattern=None, samples=128, batch_size=8,
          policy=None, damping=0.01, block_size=128, verbose=1):
    """Prunes a trained model's ``Dense`` and ``EinsumDense`` layers in place, without retraining.

    The layers are pruned block by block (:mod:`tfprune.posttraining.calibration`: a KerasHub
    causal LM's transformer blocks, else the model's layers in the order it calls them): the
    calibration data runs through the blocks already pruned, each layer of the block records its
    inputs, and the layer's weights are replaced by the criterion's:

    * ``"wanda"`` (Sun et al. 2023): keep the largest ``|W_ij| · ‖X_j‖₂`` of each output row;
      the kept weights are unchanged;
    * ``"sparsegpt"`` (Frantar and Alistarh 2023): optimal-brain-surgeon reconstruction with
      ``H = 2XXᵀ``, masks chosen per block of ``block_size`` columns, the kept weights updated;
    * ``"magnitude"``: keep the largest ``|W_ij|`` of each layer (reads no data).

    Every layer gets the same sparsity (exact: ``kept_count`` per layer, per row for Wanda), or
    the N:M pattern. In a wrapped model (:func:`tfprune.wrap`) the chosen masks are also written
    to its masks, so that fine-tuning keeps them and :func:`tfprune.strip` gives the plain model.

    Args:
        model: A built Keras 3 model (a KerasHub ``CausalLM`` or backbone, any Keras model).
        criterion: ``"wanda"``, ``"sparsegpt"`` or ``"magnitude"``.
        data: Calibration data as ``fit`` takes it: inputs ``x`` (token ids, the dict of inputs,
            or strings for a model with a ``preprocessor``), ``(x, y)``, or a ``tf.data.Dataset``
            of batches; labels are not read. Unpadded sequences, as in both papers (128 segments
            of 2048 tokens). Not needed for ``"magnitude"``.
        sparsity: The fraction of each layer's weights removed, in [0, 1); may be left out with an
            N:M pattern (then it must be ``1 - n/m``).
        pattern: ``None``/``"unstructured"``, or ``"2:4"``, ``"4:8"`` (a
            :class:`tfprune.patterns.NByM`): every ``m`` consecutive inputs of an output keep ``n``.
        samples: The number of calibration sequences read from ``data`` (the papers' 128).
        batch_size: Sequences per forward pass, for array data.
        policy: Which of the Dense/EinsumDense layers to prune (see :mod:`tfprune.policies`).
        damping: SparseGPT's λ: ``λ · mean(diag H)`` is added to the diagonal of ``H``; 0 for none.
        block_size: SparseGPT's columns per block (a multiple of ``m`` for N:M).
        verbose: 1 shows a progress bar over the blocks, 0 is silent.

    Returns:
        ``model``, its layers pruned in place. If anything fails, every weight is restored first.

    Raises:
        ValueError: for an unknown criterion, a bad sparsity, pattern (other than unstructured or
            N:M), damping or block size, no Dense/EinsumDense layer to prune, a pattern the
            input width of a layer cannot hold (not a multiple of ``m``), missing data, or data
            that does not fit the model — each before any weight changes.
        SingularHessianError: (SparseGPT) a layer's ``2XXᵀ`` is singular with ``damping=0``; the
            weights pruned before it are restored.

    Example:
        >>> lm = keras_hub.models.GPT2CausalLM.from_preset("gpt2_base_en")
        >>> tfprune.posttraining.prune(lm, "sparsegpt", data=texts, sparsity=0.5)
        >>> lm.generate("The pruned model")
    """
    arguments.keras_model(model)
    walk.check_built(model)
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}: post-training pruning knows {sorted(CRITERIA)}")
    chosen = patterns.get(pattern)
    density = _density(chosen, sparsity)
    if not (isinstance(damping, (int, float)) and damping >= 0):
        raise ValueError(f"damping must be a number >= 0, got {damping!r}")
    if not (isinstance(block_size, int) and block_size >= 1):
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    linears = _linears(model, policy)
    _check_pattern(linears, chosen, criterion, block_size)
    if criterion != "magnitude" and data is None:
        raise ValueError(f"criterion {criterion!r} needs calibration data: pass data= (token ids or inputs)")
    batches = calibration_batches(model, data, samples, batch_size) if criterion != "magnitude" else None
    datachecks.check_weights(model)
    prune_matrix = CRITERIA[criterion]
    if criterion == "sparsegpt":
        prune_matrix = functools.partial(prune_matrix, damping=damping, block_size=block_size)

    variables = list(model.weights)
    before = views.snapshot(variables)  # copy-on-write views: free, and exact if a step fails
    try:
        if batches is None:
            for linear in linears:
                linear.write(*prune_matrix(linear.matrix(), None, density, chosen))
        else:
            _prune_blocks(model, linears, batches, prune_matrix, criterion, density, chosen, verbose)
    except BaseException:
        views.restore(variables, before)
        raise
    return model


def _prune_blocks(model, linears, batches, prune_matrix, criterion, density, pattern, verbose):
    calibration = Calibration(model, linears, batches)
    if calibration.outside:
        warnings.warn(f"{len(calibration.outside)} layer(s) are left dense: they are outside the model's sequential "
                      f"blocks or not called on the data: {[lin.name for lin in calibration.outside]}", UserWarning,
                      stacklevel=3)
    progress = keras.utils.Progbar(len(calibration.blocks), unit_name="block") if verbose else None
    for i, block in enumerate(calibration.statistics(gram=criterion == "sparsegpt")):
        for linear, statistics in block:
            options = {"name": f"layer {linear.name!r}"} if criterion == "sparsegpt" else {}
            linear.write(*prune_matrix(linear.matrix(), statistics, density, pattern, **options))
        if progress is not None:
            progress.update(i + 1)


def _density(pattern, sparsity):
    """The kept fraction that ``sparsity`` and ``pattern`` ask for (checked)."""
    if isinstance(pattern, patterns.NByM):
        if sparsity is not None:
            pattern.check_sparsity(sparsity)
        return pattern.density
    if not isinstance(pattern, patterns.Unstructured):
        raise ValueError(f"post-training pruning takes pattern 'unstructured' or N:M ('2:4', '4:8'), got {pattern}")
    if sparsity is None:
        raise ValueError("give the fraction of each layer to prune as sparsity=... (in [0, 1)), or an N:M pattern")
    return masks.resolve_density(sparsity=sparsity)


def _linears(model, policy):
    """The Dense/EinsumDense kernels to prune, as :class:`Linear` (in model order)."""
    targets = [t for t in prunable_weights(model) if is_linear(t)] if _has_dense(model) else []
    if not targets:
        kinds = sorted({type(leaf).__name__ for unit, _ in walk.units(model) for leaf in walk.leaves(unit)})
        raise ValueError(f"model {model.name!r} has no Dense or EinsumDense layer to prune (its layers are of types "
                         f"{kinds}); post-training pruning prunes the linear layers of language models")
    layers = policies.get(policy)([t.layer for t in targets], model)
    chosen = {id(layer) for layer in layers}
    return [Linear(t) for t in targets if id(t.layer) in chosen]


def _has_dense(model):
    return any(isinstance(leaf, (keras.layers.Dense, keras.layers.EinsumDense))
               for unit, _ in walk.units(model) for leaf in walk.leaves(unit))


def _check_pattern(linears, pattern, criterion, block_size):
    """Raises unless every layer's input width holds whole N:M groups (and SparseGPT's blocks do)."""
    if not isinstance(pattern, patterns.NByM):
        return
    for linear in linears:
        if linear.group_width % pattern.m:
            raise ValueError(f"pattern {pattern} groups {pattern.m} consecutive inputs, but layer {linear.name!r} "
                             f"reads {linear.group_width} along its input axis, not a multiple of {pattern.m}: leave "
                             "it out with policy=tfprune.policies.ExcludeLayers(names=[...]) or choose another m")
    if criterion == "sparsegpt" and block_size % pattern.m:
        raise ValueError(f"block_size {block_size} must be a multiple of the pattern's m = {pattern.m}, so that no "
                         "N:M group spans two blocks")
