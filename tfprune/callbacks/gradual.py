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


from tfprune.sparsity import masks as masks_lib
from tfprune.sparsity import patterns, schedules
from tfprune import scores
from tfprune.callbacks.updates import (MaskUpdate, MaskUpdatingCallback, active_pruning, measured_sparsities,
                                      training_step)
from tfprune.pruning import prune_at_init

__all__ = ["GradualPruning", "MaskUpdate", "active_pruning", "measured_sparsities", "training_step"]

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

    The model must be compiled with ``steps_per_execution=1``: masks change between steps, and
    Keras calls callbacks once per execution.

    Args:
        schedule: A :class:`tfprune.schedules.PruningSchedule`, ``step -> (should_prune,
            sparsity)``: :class:`~tfprune.schedules.PolynomialDecay`,
            :class:`~tfprune.schedules.ConstantSparsity` or a subclass of your own.
        method: A registered scorer name (``tfprune.scores.available()``) or a callable
            ``(model, targets, data) -> list of score tensors`` (higher is kept).
        scope: ``"local"`` (per tensor, as TF-MOT) or ``"global"``.
        pattern: A sparsity pattern (``tfprune.patterns.get``): ``None``/``"unstructured"``,
            ``"1x4"``, ``"2:4"``, or a pattern object.
        data: Scoring data for the criteria that need it (``(x, y)`` or a dataset of batches).
        **scorer_options: Passed to the scorer.

    Attributes:
        updates: The :class:`MaskUpdate` of every update made, over all ``fit`` calls, oldest first.

    Raises:
        ValueError: on an unknown method, scope or pattern, a data-driven method without
            ``data``, an ``NByM`` pattern whose density the schedule's final sparsity
            contradicts; when ``fit`` starts, before anything changes, on a model that is not
            wrapped or is compiled with ``steps_per_execution > 1``; at an update, naming the
            step, if the scorer fails or a mask would have to grow (nothing is changed then).
        TypeError: on a schedule that is not a ``PruningSchedule``, or a scorer option the
            scorer does not take.

    Example:
        >>> wrapped = tfprune.wrap(model)
        >>> wrapped.compile("adam", loss)
        >>> schedule = tfprune.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)
        >>> wrapped.fit(x, y, epochs=5, callbacks=[tfprune.callbacks.GradualPruning(schedule)])
        >>> plain = tfprune.strip(wrapped)
    """

    def __init__(self, schedule, method="magnitude", *, scope="local", pattern=None, data=None, **scorer_options):
        super().__init__()
        _check_schedule(schedule)
        self.scorer = scores.get(method)
        if scope not in masks_lib.SCOPES:
            raise ValueError(f"scope must be one of {masks_lib.SCOPES}, got {scope!r}")
        if self.scorer.needs_data and data is None:
            raise ValueError(
                f"method {self.scorer.name!r} needs data: pass data=(x, y) or a dataset of (x, y) batches"
            )
        unknown = sorted(k for k in scorer_options if not self.scorer.accepts(k))
        if unknown:
            raise TypeError(f"scorer {self.scorer.name!r} takes no option {unknown}")
        self.pattern = patterns.get(pattern)
        self._fixed_sparsity = _fixed_sparsity(self.pattern, schedule)
        self.schedule = schedule
        self.scope = scope
        self.data = data
        self.scorer_options = scorer_options

    def _update(self, step, sparsity):
        applied = sparsity if self._fixed_sparsity is None else self._fixed_sparsity
        try:
            prune_at_init(self.model, self.scorer, sparsity=applied, data=self.data, scope=self.scope,
                          rounds=1, pattern=self.pattern, verbose=0, **self.scorer_options)
        except ValueError as error:
            raise ValueError(f"GradualPruning update at step {step} (sparsity {sparsity:.6g}): {error}") from error
        self.updates.append(MaskUpdate(step, sparsity, *measured_sparsities(self.model)))


def _check_schedule(schedule):
    if not isinstance(schedule, schedules.PruningSchedule):
        raise TypeError(
            "schedule must be a tfprune.schedules.PruningSchedule, e.g. "
            f"tfprune.sparsity.schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000); got {schedule!r}"
        )


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
