"""prune_at_init: score, mask, and repeat over rounds — the one driver every criterion shares."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.sparsity import masks as masks_lib
from tfprune.analysis import datachecks
from tfprune.sparsity import patterns, schedules
from tfprune import scores
from tfprune.base import arguments, views
from tfprune.base.deprecation import renamed
from tfprune.analysis.connectivity import check_collapse, check_on_collapse
from tfprune.autodiff import gradients, losses
from tfprune.layers.targets import is_wrapped, prunable_weights, warn_unpruned
from tfprune.base.walk import check_built
from tfprune.layers.wrapping import assign_masks, get_masks, masks_of, unwrap, wrap

__all__ = ["prune_at_init"]


@renamed(method="criterion", schedule="round_schedule", block="pattern")
def prune_at_init(
    model,
    criterion,
    *,
    sparsity=None,
    compression=None,
    data=None,
    scope="global",
    rounds=None,
    round_schedule="exponential",
    policy=None,
    seed=None,
    verbose=1,
    allocation="uniform",
    include_bias=False,
    include_norm=False,
    pattern=None,
    on_collapse="warn",
    **criterion_options,
):
    """Prunes a model before training: scores its weights and keeps the highest.

    Each of ``rounds`` rounds scores the network as currently masked and keeps the density the
    schedule gives for that round (round t of T keeps ``d^((t+1)/T)`` with the exponential
    schedule); the last round ends at the asked density exactly. Unless the criterion may revive
    weights (FORCE), weights pruned in one round stay pruned. On a wrapped model the rounds start
    at its current density ``d0`` (round t keeps ``d0·(d/d0)^((t+1)/T)``), so pruning continues
    from its masks: a model at sparsity 0.9 goes on to 0.99 over the rounds.

    Args:
        model: A built Keras 3 model, plain or already wrapped (then pruning continues from its
            current masks).
        criterion: A registered scorer name (``tfprune.scores.available()``) or a callable
            ``(model, targets, data) -> list of score tensors``.
        sparsity: Fraction of the prunable weights to remove, in [0, 1).
        compression: Or: all prunable weights / kept weights, >= 1. Give one of the two.
        data: Data for criteria that need it, as ``model.fit`` takes it: ``(x, y)`` or
            ``(x, y, sample_weight)`` arrays (``x`` a list or dict of arrays for several inputs)
            or a dataset of such batches. A compiled model's loss scores it (unless ``loss=`` is
            given); an uncompiled one's, sparse categorical cross-entropy on class ids.
        scope: ``"global"`` (one ranking over all weights) or ``"local"`` (a budget per tensor).
        rounds: Number of score-and-mask rounds; default the method's own (SynFlow 100,
            iterative SNIP and FORCE 60, the others 1).
        round_schedule: ``"exponential"`` or ``"linear"`` density schedule over the rounds, or a round
            schedule object (:class:`tfprune.schedules.Exponential`, :class:`~tfprune.schedules.Linear`),
            which sets the final sparsity and the rounds itself: then leave out ``sparsity``,
            ``compression`` and ``rounds``. Either starts at the model's current sparsity
            (:meth:`tfprune.schedules.RoundSchedule.starting_at`; with ``scope="local"``, that of
            its sparsest tensor).
        policy: Which layers to prune (see :func:`tfprune.prunable_weights`). On a wrapped model,
            which of its masked layers this call prunes: the other masks stay as they are.
        seed: Seed passed to scorers that take one (``"random"``): same seed, same masks.
        verbose: 1 shows a progress bar over the rounds (when there are several), 0 is silent.
        allocation: Per-tensor budgets for ``scope="local"`` (see :func:`tfprune.masks.from_scores`).
        include_bias: Prune biases too (plain models only).
        include_norm: Prune normalisation γ and β too (plain models only).
        pattern: The sparsity pattern (see :mod:`tfprune.patterns`): ``None``/``"unstructured"``,
            ``"1x4"`` (whole blocks of 4 consecutive inputs per output unit, for TFLite's fast
            sparse fully connected kernels), ``"2:4"`` (every 4 consecutive inputs keep their 2
            best: the density is 1/2, so the amount may be left out, and pruning takes one
            round), or a :class:`tfprune.patterns.Pattern`.
        on_collapse: What to do when the masks empty a tensor or cut the output off from the
            input (see :mod:`tfprune.connectivity`): ``"warn"`` (a
            :class:`tfprune.CollapseWarning` naming the tensors), ``"raise"`` (a
            :class:`tfprune.CollapseError`; the model is left as it was) or ``"ignore"``.
        **criterion_options: Passed to the criterion (e.g. ``samples``, ``temperature``).

    Returns:
        The wrapped model with its masks set (for a plain functional model a new model sharing
        its layers; a subclassed model is wrapped in place). If anything fails, every weight of
        the model is restored and the error is raised.

    Raises:
        ArgumentError: on anything but a Keras 3 model (a layer, ``None``, a tf_keras model: use
            :mod:`tfprune.tfmot`), or an argument of the wrong type or out of range (an amount,
            ``scope``, ``allocation``, ``rounds``, ``seed``, ``verbose``, a flag, a schedule,
            pattern or criterion name).
        TypeError: on an option the criterion does not take.
        ValueError: on missing data or data that does not fit the model
            (:mod:`tfprune.analysis.datachecks`), a model without prunable
            weights, a pattern whose fixed density the amount or the rounds contradict, an amount
            that keeps more weights than the masks of a wrapped model keep now, a weight that is
            NaN or infinite (naming it), or scores that are NaN or infinite (naming the weight).
        CollapseError: with ``on_collapse="raise"``, naming the emptied tensors.

    Example:
        >>> pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.9)
        >>> pruned.compile("adam", "sparse_categorical_crossentropy"); pruned.fit(x, y)
    """
    arguments.keras_model(model)
    check_built(model)
    scorer = scores.get(criterion)
    chosen_pattern = patterns.get(pattern)
    rounds, seed = arguments.count("rounds", rounds, optional=True), arguments.seed(seed)
    verbose = arguments.verbosity(verbose)
    include_bias = arguments.flag("include_bias", include_bias)
    include_norm = arguments.flag("include_norm", include_norm)
    planned = _round_schedule(round_schedule, sparsity, compression, rounds, scorer.default_rounds, chosen_pattern)
    masks_lib.Budget(sparsity=planned.final_sparsity, scope=scope, allocation=allocation)  # checks scope, allocation
    if scorer.accepts("seed"):
        criterion_options.setdefault("seed", seed)
    scorer.check_call(data, criterion_options)
    if scorer.needs_data and scorer.accepts("loss") and criterion_options.get("loss") is None \
            and losses.is_compiled(model):
        criterion_options["loss"] = losses.resolve(model)  # the wrapped copy is not compiled
    check_on_collapse(on_collapse)
    was_wrapped = is_wrapped(model)
    if was_wrapped and (include_bias or include_norm):
        raise ValueError(f"model {model.name!r} is already wrapped: include_bias and include_norm apply when wrapping")
    chosen = prunable_weights(model, policy=policy) if was_wrapped else None  # the masked layers to prune now
    datachecks.check_weights(model)  # once: scoring never changes a weight

    warn_unpruned(model)
    variables = list(model.weights)
    before = views.snapshot(variables)  # copy-on-write views: free, and exact if a step fails
    masks = masks_of(chosen) if was_wrapped else None  # a plain model is wrapped with all masks ones
    if masks and scorer.keeps_pruned and scope == "global" and isinstance(chosen_pattern, patterns.Unstructured):
        _check_can_continue(model, masks, planned.final_sparsity,
                            _amount(sparsity, compression, round_schedule, chosen_pattern))
    planned = _continued(planned, masks, scope)
    try:
        wrapped = model if was_wrapped else wrap(model, policy, include_bias, include_norm)
        targets = chosen if was_wrapped else prunable_weights(wrapped)
        names = [t.name for t in targets]
        axes = [t.reduction_axis for t in targets]
        chosen_pattern.warn_unreachable(targets, stacklevel=4)
        current = masks if was_wrapped else get_masks(wrapped)  # read once: nothing wrote them since
        total = planned.rounds
        progress = keras.utils.Progbar(total, unit_name="round") if verbose and total > 1 else None
        for step in range(total):
            with gradients.scoring_rounds(total):
                round_scores = scorer(wrapped, targets, data, **criterion_options)
            _check_shapes(round_scores, targets, scorer.name)
            current = masks_lib.from_scores(
                round_scores,
                sparsity=planned(step)[1],
                scope=scope,
                allocation=allocation,
                candidates=current if scorer.keeps_pruned else None,
                names=names,
                pattern=chosen_pattern,
                reduction_axes=axes,
            )
            assign_masks(targets, current)
            if progress is not None:
                progress.update(step + 1, values=[("density", masks_lib.density(current))])
        check_collapse(wrapped, on_collapse, criterion_options.get("input_shape"))
    except BaseException:
        views.restore(variables, before)
        if not was_wrapped and is_wrapped(model):  # a subclassed model wrapped in place
            unwrap(model)
        raise
    return wrapped


def _round_schedule(schedule, sparsity, compression, rounds, default_rounds, pattern):
    """The round schedule to follow: a given round-schedule object, or one built from a name.

    Checks it against ``pattern`` before any work: a pattern that fixes the density (N:M) prunes
    in one round (the default then, whatever the method's), to its own sparsity (the default
    amount).
    """
    if isinstance(schedule, schedules.RoundSchedule):
        if sparsity is not None or compression is not None or rounds is not None:
            raise ValueError(f"round_schedule={schedule!r} sets the final sparsity and the rounds: leave out "
                             "sparsity, compression and rounds")
    elif isinstance(schedule, str) and schedule in schedules.SCHEDULES:
        if sparsity is None and compression is None and pattern.density is not None:
            sparsity = 1.0 - pattern.density
        density = masks_lib.resolve_density(sparsity, compression)
        if rounds is None:
            rounds = 1 if pattern.density is not None else default_rounds
        schedule = schedules.get(schedule, final_sparsity=1.0 - density, rounds=rounds)
    else:
        arguments.choice("round_schedule", schedule, schedules.SCHEDULES,
                         advice="or a tfprune.schedules.RoundSchedule (Exponential, Linear)")
    pattern.check_sparsity(schedule.final_sparsity)
    if pattern.density is not None and schedule.rounds > 1:
        raise ValueError(f"pattern {pattern} fixes the density at every round, so it prunes in one round: "
                         f"pass rounds=1 (got {schedule.rounds})")
    return schedule


def _continued(round_schedule, masks, scope):
    """``round_schedule`` started at the sparsity of the current ``masks`` (``None``: dense): over
    all of them (global scope) or of the sparsest tensor (local scope, so that no round asks a
    tensor for more weights than its mask keeps); at the final sparsity if the masks are already
    sparser."""
    if not masks:
        densities = [1.0]
    else:
        densities = [masks_lib.density(masks)] if scope == "global" else masks_lib.densities(masks)
    return round_schedule.starting_at(min(1.0 - min(densities), round_schedule.final_sparsity))


def _check_can_continue(model, masks, final_sparsity, amount):
    """Raises, before any work, if the current masks keep fewer weights than ``final_sparsity``
    asks to keep (global scope): pruning continues from them and cannot grow them."""
    total = sum(np.size(m) for m in masks)
    kept = sum(int(np.count_nonzero(m)) for m in masks)
    asked = masks_lib.kept_count(1.0 - final_sparsity, total)
    if asked > kept:
        raise ValueError(
            f"cannot keep {asked} of the {total} prunable weights ({amount}): the masks of model {model.name!r} "
            f"keep only {kept} (sparsity {1.0 - kept / total:.6g}), and pruning continues from the current "
            "masks without growing them; to prune to a lower sparsity, start from the unpruned model or reset "
            "the masks: tfprune.apply_masks(model, [np.ones(t.shape) for t in tfprune.prunable_weights(model)])"
        )


def _amount(sparsity, compression, schedule, pattern):
    """The argument that set the final sparsity, as the user wrote it (for messages)."""
    if sparsity is not None:
        return f"sparsity={sparsity!r}"
    if compression is not None:
        return f"compression={compression!r}"
    if isinstance(schedule, schedules.RoundSchedule):
        return f"round_schedule={schedule!r}"
    return f"pattern={str(pattern)!r}"


def _check_shapes(round_scores, targets, name):
    if len(round_scores) != len(targets):
        raise ValueError(f"scorer {name!r} returned {len(round_scores)} score tensors for {len(targets)} weights")
    for s, t in zip(round_scores, targets):
        if tuple(np.shape(s)) != t.shape:
            raise ValueError(f"scorer {name!r} returned scores of shape {tuple(np.shape(s))} for {t.name} of shape {t.shape}")
