"""Scoring under ``tf.distribute``: per-batch work in ``strategy.run``, summed across replicas.

A mask computed on each worker from its own data silently diverges the model: nothing errors,
and the replicas train different networks. Gradient-based scores are therefore computed inside
``strategy.run`` on each replica's shard of the batch and all-reduced, so every replica and every
worker gets the scores of the *global* batch; the masks are then selected once and assigned in
cross-replica context, which writes the same values to every copy. Data-free criteria (SynFlow,
magnitude, random) read the same weights everywhere and give the same masks by construction.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from tfprune.base import backends

__all__ = ["strategy_of", "creation_scope", "replica_sum"]


def _variables_strategy(model):
    for variable in model.weights:
        return getattr(variable.value, "distribute_strategy", None)
    return None


def creation_scope(model):
    """The scope to create variables in next to ``model``'s: its strategy's, or a no-op.

    Masks made outside the scope of a model built under a strategy would be ordinary, single-copy
    variables; made inside it they are mirrored like the model's weights.
    """
    strategy = _variables_strategy(model)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def strategy_of(model, strategy=None):
    """The strategy whose replicas hold ``model``'s variables, or ``None`` for a single device.

    Args:
        model: A Keras 3 model.
        strategy: A strategy given explicitly; returned as it is.

    Returns:
        A ``tf.distribute.Strategy`` with more than one replica, or ``None``.

    Raises:
        BackendError: for a strategy given on another backend than TensorFlow.
    """
    if strategy is not None:
        backends.require_tensorflow("strategy=", "leave strategy out (scores on JAX and PyTorch run on one device)")
    else:
        strategy = _variables_strategy(model)
    if strategy is None or strategy.num_replicas_in_sync < 2:
        return None
    return strategy


def _shard(strategy, structure):
    """Splits a global batch (any structure of tensors) into contiguous per-replica shards (by
    global replica id)."""
    n = int(tf.nest.flatten(structure)[0].shape[0])

    def shard(context):
        i, replicas = context.replica_id_in_sync_group, context.num_replicas_in_sync
        return tf.nest.map_structure(lambda t: t[i * n // replicas:(i + 1) * n // replicas], structure)

    return strategy.experimental_distribute_values_from_function(shard)


def replica_sum(strategy, step, batch, *args):
    """``Σ_replicas step(*batch_shard, *args)`` with every part of ``batch`` split across replicas.

    Args:
        strategy: The strategy.
        step: A function of ``(*batch, *args)`` returning a list of tensors.
        batch: One global batch, a tuple such as ``(x, y, sample_weight)`` of tensors or
            structures of them (``None`` parts stay ``None``); every worker may pass its own, each
            replica takes its shard.
        *args: Passed unchanged to every replica.

    Returns:
        The list of tensors summed over all replicas (of all workers), the same on every worker.

    Raises:
        ValueError: if the batch has fewer examples than there are replicas.
    """
    n = int(tf.nest.flatten(batch[0])[0].shape[0])
    if n < strategy.num_replicas_in_sync:
        raise ValueError(
            f"a scoring batch of {n} examples cannot be split over "
            f"{strategy.num_replicas_in_sync} replicas: use batches of at least that many"
        )
    shards = [None if part is None else _shard(strategy, part) for part in batch]
    per_replica = strategy.run(step, args=(*shards, *args))
    return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica]
