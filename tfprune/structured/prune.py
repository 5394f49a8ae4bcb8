"""Structured pruning entwined with fine-tuning (the SInGE loop; Yvinec et al., NeurIPS 2022).

Each step scores every removable unit with a criterion, removes a small share of the least
relevant ones (physically, with :func:`tfprune.structured.remove`), and fine-tunes the smaller
model for a few batches; the loop stops at the MAC or parameter target and fine-tunes once more.
Every criterion runs in the same loop with the same budget, so their results compare directly.
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np

from tfprune.analysis import datachecks
from tfprune import training
from tfprune.analysis.profile import profile
from tfprune.autodiff.batches import take
from tfprune.base import arguments
from tfprune.base.arguments import ArgumentError
from tfprune.base.deprecation import renamed
from tfprune.structured import criteria as criteria_lib
from tfprune.structured.graph import dependency_graph
from tfprune.structured.remove import remove

__all__ = ["PruneStep", "PruneResult", "prune", "counts", "minimum_counts"]

_NORMALIZE = ("group_mean", "none")


@dataclasses.dataclass(frozen=True)
class PruneStep:
    """One step of :func:`prune` (step 0 is the model before any removal).

    Attributes:
        step: Step number.
        removed: Units (channel groups' channels) removed in this step.
        units: Removable units left.
        macs: MACs per example of the model after the step.
        params: Its parameters (all weights, ``count_params``).
        val_accuracy: Validation accuracy after the step's fine-tuning (``None`` without validation data).
        seconds: Wall time of the step (scoring, removal, fine-tuning).
    """

    step: int
    removed: int
    units: int
    macs: int
    params: int
    val_accuracy: float | None
    seconds: float


@dataclasses.dataclass
class PruneResult:
    """What :func:`prune` returns.

    Attributes:
        model: The smaller, fine-tuned model.
        steps: The :class:`PruneStep` log, step 0 first.
        final_val_accuracy: Validation accuracy after the final fine-tuning (or ``None``).
    """

    model: keras.Model
    steps: list
    final_val_accuracy: float | None


def counts(model, input_shape=None):
    """``(MACs per example, parameters)`` of a model, as :func:`tfprune.profile` (at ``input_shape``
    where the model's is not fully known) and ``count_params`` give them."""
    return int(profile(model, input_shape, verbose=0).total.macs), int(model.count_params())


def minimum_counts(model, input_shape=None):
    """The smallest ``(MACs, parameters)`` structured removal can reach: every prunable group down
    to one channel (groups that may not be pruned, e.g. the output layer's, stay whole)."""
    graph = dependency_graph(model)
    keep_one = [(g, c) for g, c in graph.units() if c > 0]
    return counts(remove(model, graph.removal(keep_one)) if keep_one else model, input_shape)


def _target(name, value, original, minimum):
    """An absolute target from ``value`` (≤ 1: a fraction of ``original``), checked against ``minimum``."""
    target = value * original if value <= 1 else value
    if target < minimum:
        raise ValueError(
            f"{name}={value!r} ({target:,.0f}) is below the minimum reachable {minimum:,} "
            f"({minimum / original:.1%} of the original {original:,}): every prunable channel group down to one "
            "channel; the groups that reach the output or unsupported layers stay whole"
        )
    return target


def _relevance(graph, scores, normalize):
    """``[(relevance, group, channel)]`` for every removable unit: a group's channel sums its producers' scores."""
    out = []
    for group in graph.groups:
        if not group.prunable:
            continue
        summed = sum(np.asarray(scores[p], dtype=np.float64) for p in group.producers)
        if normalize == "group_mean":
            summed = summed / max(float(np.mean(summed)), np.finfo(np.float64).tiny)
        out += [(float(v), group, c) for c, v in enumerate(summed)]
    return out


def _lowest(relevance, count):
    """The ``count`` least relevant units, never the last channel of a group (ties: model order)."""
    left = {}
    for _, group, _ in relevance:
        left[group.index] = group.size
    chosen = []
    for _, group, channel in sorted(relevance, key=lambda r: r[0]):
        if len(chosen) == count:
            break
        if left[group.index] > 1:
            left[group.index] -= 1
            chosen.append((group, channel))
    return chosen


def _within_target(model, graph, chosen, index, target, input_shape):
    """``(smaller model, units removed, its counts)`` for a prefix of ``chosen``: all of it if the
    model stays at or above ``target`` (in ``counts()[index]``) even then, else the shortest prefix
    that reaches ``target`` (bisection)."""
    def build(n):
        smaller = remove(model, graph.removal(chosen[:n]))
        return smaller, n, counts(smaller, input_shape)

    best = build(len(chosen))
    if best[2][index] >= target or len(chosen) == 1:
        return best
    low, high = 1, len(chosen)
    while low < high:
        candidate = build((low + high) // 2)
        if candidate[2][index] <= target:
            high, best = candidate[1], candidate
        else:
            low = candidate[1] + 1
    return best


def _copy(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


@renamed(target_macs="kept_macs", target_params="kept_params", criterion_options="**criterion_options")
def prune(model, criterion, *, data, kept_macs=None, kept_params=None, step_fraction=0.05, finetune_steps=100,
          final_finetune_epochs=1, recipe=None, validation=None, samples=256, normalize="group_mean",
          seed=None, callback=None, verbose=1, input_shape=None, **criterion_options):
    """Removes the least relevant neurons and filters step by step, fine-tuning between steps.

    Each step: score the units with ``criterion`` (on ``samples`` random training examples),
    sum the scores of the producers of each channel group (channels joined by residual adds
    count once), optionally divide by the group's mean, remove the lowest ``step_fraction`` of
    the units still removable (never a group's last channel), fine-tune ``finetune_steps``
    batches. At the target, the last step removes only as many units as needed (bisection).
    Then fine-tune ``final_finetune_epochs`` epochs.

    Args:
        model: A built functional or Sequential Keras 3 classifier (logits); it is not changed.
        criterion: A name of :func:`tfprune.structured.criteria.available` (``"l1"``, ``"l2"``,
            ``"taylor"``, ``"singe"``) or a :class:`~tfprune.structured.criteria.Criterion`.
        data: Training arrays as ``model.fit`` takes them: ``(x, y)`` or ``(x, y, sample_weight)``,
            ``x`` a list or dict of arrays for several inputs; scoring samples and fine-tuning
            batches. A compiled ``model``'s loss (and ``loss_weights``) scores and fine-tunes;
            an uncompiled one's, sparse categorical cross-entropy on class ids.
        kept_macs: MACs per example to keep: a fraction of the model's (``0.5``) when ≤ 1,
            else an absolute count. Exactly one of ``kept_macs`` and ``kept_params``.
        kept_params: The same for parameters (``count_params``).
        step_fraction: Share of the removable units removed per step.
        finetune_steps: Fine-tuning batches after each step.
        final_finetune_epochs: Epochs of fine-tuning at the end (cosine schedule).
        recipe: The :class:`tfprune.training.Recipe` of all fine-tuning (default SGD, lr 0.01,
            batch 128, weight decay 5e-4); between steps its learning rate is constant.
        validation: Optional ``(x, y)`` of class ids; each step's accuracy on it is logged.
        samples: Examples the criterion sees per step.
        normalize: ``"group_mean"`` (each group's scores divided by their mean, so units are
            ranked relative to their layer) or ``"none"`` (raw scores ranked globally).
        seed: Seed of the scoring samples and fine-tuning batches; ``None`` draws one.
        callback: Called with each :class:`PruneStep` as it finishes.
        verbose: 1 prints a line per step, 0 is silent.
        input_shape: One example's shape (one per input: a dict by input name or a list), for
            counting MACs where the model's input has a dimension of unknown size
            (:mod:`tfprune.analysis.inputs`).
        **criterion_options: Options of the criterion (e.g. ``steps=8`` for SInGE).

    Returns:
        A :class:`PruneResult`.

    Raises:
        ArgumentError: for anything but a Keras 3 model, or an argument of the wrong type or out of
            range (``kept_macs="0.5"``, ``seed="a"``, ``step_fraction=0``, ...).
        ValueError: for a model without a layer graph (subclassed), a target below the minimum
            reachable (the message gives it), ``data`` or ``validation`` that do not fit the model
            (:func:`tfprune.analysis.datachecks.check_arrays`), NaN or infinite scores (naming the layer), or
            bad arguments.

    Example:
        >>> result = tfprune.structured.prune(model, "singe", data=(x, y), kept_macs=0.5,
        ...                                   validation=(x_val, y_val))
        >>> result.model.count_params(), result.steps[-1].macs
    """
    arguments.keras_model(model)
    criterion = criterion if isinstance(criterion, criteria_lib.Criterion) else criteria_lib.get(criterion)
    if (kept_macs is None) == (kept_params is None):
        raise ArgumentError("give exactly one of kept_macs and kept_params")
    index = 0 if kept_macs is not None else 1
    name = ("kept_macs", "kept_params")[index]
    value = arguments.number(name, (kept_macs, kept_params)[index], 0, low_open=True)
    step_fraction = arguments.number("step_fraction", step_fraction, 0, 1, low_open=True)
    arguments.choice("normalize", normalize, _NORMALIZE)
    finetune_steps = arguments.count("finetune_steps", finetune_steps, 0)
    final_finetune_epochs = arguments.count("final_finetune_epochs", final_finetune_epochs, 0)
    samples = arguments.count("samples", samples, optional=True)
    seed, verbose = arguments.seed(seed), arguments.verbosity(verbose)
    if callback is not None and not callable(callback):
        raise ArgumentError(f"callback must be None or a function of a PruneStep, got {callback!r}")
    loss, loss_weights = training.compiled_loss(model)
    arrays = datachecks.check_arrays(model, data, class_ids=loss is None)
    if validation is not None:
        datachecks.check_arrays(model, validation, name="validation")
    recipe = recipe or training.Recipe(epochs=final_finetune_epochs, learning_rate=0.01, batch_size=128)
    recipe = dataclasses.replace(recipe, epochs=final_finetune_epochs)
    between = dataclasses.replace(recipe, lr_schedule="constant")
    options = dict(criterion_options)
    if criterion.needs_data and samples is not None:
        options.setdefault("samples", samples)

    graph = dependency_graph(model)  # refuses subclassed and wrapped models with a clear message
    macs, params = counts(model, input_shape)
    min_macs, min_params = minimum_counts(model, input_shape)
    target = _target(name, value, (macs, params)[index], (min_macs, min_params)[index])

    def evaluate(m):
        return training.evaluate(m, validation)[0] if validation is not None else None

    rng = np.random.default_rng(seed)
    current = _copy(model)
    log = [PruneStep(0, 0, len(graph.units()), macs, params, evaluate(current), 0.0)]
    _report(log[-1], verbose, callback)
    while (macs, params)[index] > target:
        start = time.perf_counter()
        removable = sum(g.max_removable for g in graph.groups)
        if removable == 0:
            break
        producers = sorted({p for g in graph.groups if g.prunable for p in g.producers})
        n = datachecks.num_examples(arrays[0])
        pick = np.sort(rng.choice(n, min(samples or n, n), replace=False))
        scored = [part for part in take(arrays, pick) if part is not None]
        if loss is not None:
            training.compile_model(current, between, 0, loss, loss_weights)  # the criteria score its loss
        scores = criterion(current, producers, data=tuple(scored) if criterion.needs_data else None, **options)
        chosen = _lowest(_relevance(graph, scores, normalize), max(1, math.ceil(step_fraction * removable)))
        current, removed, (macs, params) = _within_target(current, graph, chosen, index, target, input_shape)
        graph = dependency_graph(current)  # fine-tuning changes weights, not the structure or counts
        if finetune_steps:
            training.fit(current, data, between, steps=finetune_steps, seed=int(rng.integers(2 ** 31)), loss=loss,
                         loss_weights=loss_weights)
        log.append(PruneStep(len(log), removed, len(graph.units()), macs, params, evaluate(current),
                             time.perf_counter() - start))
        _report(log[-1], verbose, callback)
    if final_finetune_epochs:
        training.fit(current, data, recipe, loss=loss, loss_weights=loss_weights)
    final = evaluate(current)
    if verbose and final is not None:
        print(f"after {final_finetune_epochs} epoch(s) of final fine-tuning: validation accuracy {final:.4f}",
              flush=True)
    return PruneResult(current, log, final)


def _report(step, verbose, callback):
    if verbose:
        accuracy = "" if step.val_accuracy is None else f", validation accuracy {step.val_accuracy:.4f}"
        print(f"step {step.step}: removed {step.removed} units, {step.units} left; MACs {step.macs:,}, "
              f"params {step.params:,}{accuracy} ({step.seconds:.1f} s)", flush=True)
    if callback is not None:
        callback(step)
