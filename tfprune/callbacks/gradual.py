"""GradualPruning: raises the sparsity of a wrapped model during ``fit``, on a schedule.

The step is the optimizer's iteration count, read at the beginning of each training batch, as
TF-MOT's ``UpdatePruningStep`` does: a run resumed from a checkpoint (``BackupAndRestore``)
continues the schedule where it was. On a step where the schedule prunes, the current weights are
scored and every mask is set to exactly the schedule's sparsity through
:func:`tfprune.prune_at_init` (one round on the already wrapped model): the same scorers, the same
exact-count selection (:func:`tfprune.masks.from_scores`) and the same rollback on failure. On
every other step the callback reads the step and calls the schedule, nothing else.

*Stay pruned.* A wrapped layer keeps its dense weights; a masked weight gets zero gradient, so its
dense value is the one it had when it was pruned. Scoring that stale value would bring it back,
so for every criterion whose :attr:`~tfprune.scores.Scorer.keeps_pruned` is true (all but
``"force"``) the selection only chooses among the weights the current masks keep
(``candidates``); ``"magnitude"`` scores ``|w ⊙ m|`` anyway, which is 0 for a masked weight.
A criterion that may revive weights (FORCE) ranks all weights, and a revived weight comes back
with its stale dense value. A mask never grows under a keeps-pruned criterion: an update whose
sparsity is below a tensor's current sparsity raises (naming the step) and changes nothing.
"""

from __future__ import annotations

from tfprune import scores
from tfprune.base import arguments
from tfprune.base.deprecation import renamed
from tfprune.callbacks.updates import MaskUpdatingCallback, measured_sparsities, training_step
from tfprune.pruning import prune_at_init
from tfprune.sparsity import masks as masks_lib
from tfprune.sparsity import patterns, schedules

__all__ = ["GradualPruning"]

class GradualPruning(MaskUpdatingCallback):
    """Prunes a wrapped model during ``fit`` to the sparsity a schedule gives at each step.

    At every training step where ``schedule(step)`` returns ``(True, s)`` the current weights are
    scored with ``method`` and every mask is set to sparsity ``s``: with ``scope="local"`` each
    tensor of ``N`` weights keeps ``tfprune.masks.kept_count(1 - s, N)`` (as TF-MOT), with
    ``"global"`` one ranking over all prunable weights keeps ``kept_count(1 - s, total)``.
    Weights pruned earlier stay pruned unless the criterion may revive them (see the module
    docstring). Works with ``jit_compile=True``, under ``tf.distribute.MirroredStrategy`` (masks
    are chosen once on the host and assigned in cross-replica context, so every replica gets the
    same values), and with ``keras.callbacks.BackupAndRestore``: with epoch backups (its default
    ``save_freq="epoch"``) a killed and restarted run ends bit-identical to an uninterrupted one.
    Keras resumes a step-frequency backup at the start of its epoch, replaying steps the saved
    weights have already trained on, so those runs do not.

    With an ``NByM(n, m)`` pattern the density can only be ``n/m``: the schedule's final sparsity
    must be ``1 - n/m`` (checked here), and every update the schedule makes applies the full
    pattern, from the first one on; the schedule's intermediate sparsities are not used. With a
    criterion that keeps pruned weights pruned the first update fixes the masks, so
    ``ConstantSparsity(1 - n/m, begin_step)`` says the same thing more directly.

    Several ``GradualPruning`` (and :class:`~tfprune.callbacks.DynamicSparse`) callbacks may train one
    model in one ``fit``, each over the layers its ``policy`` selects, with its own schedule,
    criterion and pattern: TF-MOT's per-layer configuration. Selections that overlap are refused
    when ``fit`` starts, before the first step.

    The model must be compiled with ``steps_per_execution=1``: masks change between steps, and
    Keras calls callbacks once per execution.

    Args:
        schedule: A training-step schedule, :class:`tfprune.schedules.PruningSchedule`, ``step ->
            (should_prune, sparsity)``: :class:`~tfprune.schedules.PolynomialDecay`,
            :class:`~tfprune.schedules.ConstantSparsity` or a subclass of your own (a round
            schedule of :func:`tfprune.prune_at_init` is refused).
        criterion: A registered scorer name (``tfprune.scores.available()``) or a callable
            ``(model, targets, data) -> list of score tensors`` (higher is kept).
        policy: Which masked layers this callback prunes (see :func:`tfprune.prunable_weights`);
            ``None``: all of them.
        scope: ``"local"`` (per tensor, as TF-MOT) or ``"global"`` (over the selected layers).
        pattern: A sparsity pattern (``tfprune.patterns.get``): ``None``/``"unstructured"``,
            ``"1x4"``, ``"2:4"``, or a pattern object. A layer whose groups are shorter than an
            N:M pattern's ``m`` cannot reach its sparsity: a warning names it at the first update.
        data: Scoring data for the criteria that need it (``(x, y)`` or a dataset of batches).
        seed: Seed for criteria that draw (``"random"``).
        verbose: 1 prints one line per mask update; 0 (the default: ``fit`` prints its own progress) is silent.
        **criterion_options: Passed to the criterion.

    Attributes:
        updates: The :class:`MaskUpdate` of every update made, over all ``fit`` calls, oldest first.

    Raises:
        ValueError: on an unknown criterion, scope or pattern, a data-driven criterion without
            ``data``, an ``NByM`` pattern whose density the schedule's final sparsity
            contradicts; when ``fit`` starts, before anything changes, on a model that is not
            wrapped or is compiled with ``steps_per_execution > 1``, a policy that selects no
            masked layer, layers another mask-changing callback of the same ``fit`` changes, or a
            schedule that would have to grow the current masks; at an update, naming the step, if
            the scorer fails (nothing is changed then).
        ArgumentError: on a schedule that is not a training-step ``PruningSchedule`` (e.g. a round
            schedule), an unknown criterion, scope or pattern, or a ``seed`` or ``verbose`` of the
            wrong type or out of range.
        TypeError: on an option the criterion does not take.

    Example:
        >>> wrapped = tfprune.wrap(model)
        >>> wrapped.compile("adam", loss)
        >>> schedule = tfprune.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)
        >>> wrapped.fit(x, y, epochs=5, callbacks=[tfprune.callbacks.GradualPruning(schedule)])
        >>> plain = tfprune.strip(wrapped)
    """

    @renamed(method="criterion")
    def __init__(self, schedule, criterion="magnitude", *, policy=None, scope="local", pattern=None, data=None,
                 seed=None, verbose=0, **criterion_options):
        super().__init__(policy)
        _check_schedule(schedule)
        self.scorer = scores.get(criterion)
        self.scope = arguments.choice("scope", scope, masks_lib.SCOPES)
        seed = arguments.seed(seed)
        if self.scorer.accepts("seed"):
            criterion_options.setdefault("seed", seed)
        self.scorer.check_call(data, criterion_options)
        self.pattern = patterns.get(pattern)
        self._fixed_sparsity = _fixed_sparsity(self.pattern, schedule)
        self.schedule = schedule
        self.data = data
        self.verbose = arguments.verbosity(verbose)
        self.criterion_options = criterion_options

    def check_model(self, model):
        super().check_model(model)
        _check_direction(self.schedule, self._fixed_sparsity, self.scorer, self.scope,
                         measured_sparsities(model, self.policy), training_step(model))
        self.pattern.warn_unreachable(self.targets())

    def _update(self, step, sparsity):
        applied = sparsity if self._fixed_sparsity is None else self._fixed_sparsity
        try:
            prune_at_init(self.model, self.scorer, sparsity=applied, data=self.data, scope=self.scope,
                          rounds=1, policy=self.policy, pattern=self.pattern, verbose=0, **self.criterion_options)
        except ValueError as error:
            raise ValueError(f"GradualPruning update at step {step} (sparsity {sparsity:.6g}): {error}") from error
        update = self._record(step, sparsity)
        if self.verbose:
            print(f"GradualPruning: step {step}, sparsity {update.model_sparsity:.4f} over {len(update.sparsities)} "
                  "weights")


def _check_schedule(schedule):
    if isinstance(schedule, schedules.RoundSchedule):
        raise arguments.ArgumentError(
            f"GradualPruning takes a training-step schedule, and {schedule!r} is a round schedule of "
            "tfprune.prune_at_init (its steps are rounds): use tfprune.schedules.PolynomialDecay or "
            "ConstantSparsity, or prune_at_init(..., round_schedule=...) before training"
        )
    if not isinstance(schedule, schedules.PruningSchedule):
        raise arguments.ArgumentError(
            "schedule must be a training-step tfprune.schedules.PruningSchedule, e.g. "
            f"tfprune.schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000); got {schedule!r}"
        )


def _check_direction(schedule, fixed_sparsity, scorer, scope, measured, step):
    """Raises, before the first step, if the next update (at or after ``step``) would have to grow
    the current masks: a schedule whose sparsity decreases, or one below the masks' sparsity."""
    upcoming = schedule.next_update(step)
    if not scorer.keeps_pruned or fixed_sparsity is not None or upcoming is None:
        return
    at, first = upcoming
    if first > schedule.final_sparsity + 1e-6:  # float32 schedules
        raise ValueError(f"{schedule!r} lowers the sparsity from {first:g} to {schedule.final_sparsity:g}, and "
                         f"criterion {scorer.name!r} keeps pruned weights pruned: a schedule can only raise the "
                         "sparsity")
    current = max(measured[0].values()) if scope == "local" else measured[1]
    if first < current - 1e-6:
        where = "its sparsest masked tensor is" if scope == "local" else "the selected masks are"
        raise ValueError(f"{schedule!r} prunes to sparsity {first:g} at step {at}, but {where} at {current:.6g} "
                         f"already, and criterion {scorer.name!r} keeps pruned weights pruned: start the schedule "
                         f"at or above {current:.6g}")


def _fixed_sparsity(pattern, schedule):
    """The sparsity a pattern such as N:M fixes (checked against the schedule's final one), else ``None``."""
    if pattern.density is None:
        return None
    try:
        pattern.check_sparsity(schedule.final_sparsity)
    except ValueError:
        raise ValueError(
            f"the schedule ends at sparsity {schedule.final_sparsity:g}, but pattern {pattern} fixes the "
            f"sparsity at {1.0 - pattern.density:g}: use a schedule that ends there, e.g. "
            f"ConstantSparsity({1.0 - pattern.density:g}, begin_step)"
        ) from None
    return 1.0 - pattern.density
