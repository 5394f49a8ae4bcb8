"""DynamicSparse: sparse training that moves connections during ``fit`` (RigL, SET).

The network trains sparse from the first step: when training starts on masks that keep every
weight, the callback draws random masks with the per-tensor budget of ``allocation`` (ERK or
uniform) at ``sparsity``. Every ``update_frequency`` steps (:class:`tfprune.schedules.DropFraction`)
each tensor that keeps ``k`` weights drops the ``kept_count(f, k) = floor(f·k + 1/2)`` kept
weights of smallest ``|w|`` (``f`` the drop fraction at that step; RigL's code takes
``floor(f·k)``) and grows as many among the weights it does not keep after the drop:

* ``"rigl"`` (Evci et al. 2020) grows where ``|∂L/∂w|`` of the dense gradient is largest. The
  callback does not see the batch ``fit`` trains on, so the gradient is computed on a batch of
  ``data`` (pass the training data): update ``u`` (the ``u``-th multiple of
  ``update_frequency``) uses batch ``u mod B`` of the ``B`` batches of :func:`scoring_batches
  <tfprune.autodiff.batches.scoring_batches>` (data as ``fit`` takes it), with the model's
  compiled loss (``model.compute_loss``, sample weights included), in inference
  mode, as a separate gradient computation (:func:`~tfprune.autodiff.gradients.effective_gradients`,
  masks read as ones): the optimizer never sees a dense update.
* ``"set"`` (Mocanu et al. 2018) grows at random, from a generator seeded by ``(seed, step)``.

Selection uses tfprune's exact top-k (:func:`tfprune.masks.from_scores`; ties go to the lower
flat index); a weight dropped and grown back in the same update keeps its value, as in RigL.
Grown weights start at zero and their optimizer slots (Adam's moments, SGD's momentum, ...) are
set to zero. Per-tensor kept counts never change. Everything an update uses is a function of the
step (the optimizer's iteration count), so a run resumed with ``keras.callbacks.BackupAndRestore``
makes the same updates as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from tfprune.autodiff.batches import scoring_batches
from tfprune.autodiff.gradients import effective_gradients
from tfprune.base import arguments, views
from tfprune.base.deprecation import renamed
from tfprune.callbacks.updates import MaskUpdatingCallback
from tfprune.layers.wrapping import assign_masks, masks_of
from tfprune.sparsity import masks as masks_lib
from tfprune.sparsity.schedules import DropFraction

__all__ = ["CRITERIA", "DynamicSparse", "optimizer_slots"]

CRITERIA = ("rigl", "set")
_INITIAL, _UPDATE = 0, 1  # seed streams: the initial masks, the SET growth at a step


def optimizer_slots(optimizer, variable):
    """The optimizer variables that belong to ``variable`` (Adam's two moments, SGD's momentum, ...).

    Keras optimizers create them with ``add_variable_from_reference``, which names each
    ``"<variable path with / as _>_<slot name>"`` (its documented pattern) and gives it the
    variable's shape; they are found by that name prefix and shape in ``optimizer.variables``
    (a variable whose path, with ``/`` as ``_``, extends this one's and has the same shape
    would be taken too: avoid layer names such as ``dense`` beside ``dense_kernel``).

    Args:
        optimizer: A built Keras 3 optimizer.
        variable: A variable the optimizer trains.

    Returns:
        A list of variables shaped like ``variable`` (empty for plain SGD).
    """
    prefix = variable.path.replace("/", "_") + "_"
    return [v for v in optimizer.variables
            if v.name.startswith(prefix) and tuple(v.shape) == tuple(variable.shape)]


class DynamicSparse(MaskUpdatingCallback):
    """Trains a wrapped model sparse, moving connections every few steps: RigL or SET.

    See the module docstring for the algorithm. Works with ``jit_compile=True`` (the callback
    runs between steps), under ``tf.distribute.MirroredStrategy`` (masks are chosen once on the
    host from all-reduced gradients and assigned in cross-replica context: every replica gets
    the same), with ``keras.callbacks.BackupAndRestore`` (epoch backups: a killed and restarted
    run ends bit-identical; give a ``seed``), with :class:`~tfprune.callbacks.PruningSummaries`
    (which also logs the connections moved), and the model saves, loads, strips and exports as
    any wrapped model. Compile with ``steps_per_execution=1``.

    Several callbacks (``DynamicSparse`` or :class:`~tfprune.callbacks.GradualPruning`) may train
    one model in one ``fit`` over disjoint selections of layers (``policy``); overlapping ones are
    refused when ``fit`` starts.

    Args:
        criterion: The growth criterion: ``"rigl"`` (grow by dense-gradient magnitude; needs
            ``data``) or ``"set"`` (grow at random). Connections are always dropped by magnitude.
        sparsity: Fraction of the prunable weights removed, in (0, 1).
        policy: Which masked layers this callback trains sparse (see
            :func:`tfprune.prunable_weights`); ``None``: all of them.
        allocation: Per-tensor budget of the initial masks: ``"erk"`` (Erdős–Rényi-Kernel)
            or ``"uniform"`` (every tensor at ``sparsity``).
        update_frequency: Steps between updates, an int >= 1.
        drop_fraction: Fraction of each tensor's kept weights moved at step 0 of the drop
            schedule, in (0, 1).
        drop_schedule: ``"cosine"`` (RigL: decays to 0 at ``end_step``) or ``"constant"``.
        end_step: No update from this step on (RigL stops at 75 % of training), an int >= 1.
        seed: Seeds the initial masks and SET's growth (an int); ``None`` draws one, so runs
            and resumed runs then differ.
        data: For RigL, the data to compute the gradient on (the training data), as ``fit``
            takes it: ``(x, y)`` or ``(x, y, sample_weight)`` arrays or a dataset of such batches.
        samples: Examples taken from ``data``; default that of
            :func:`~tfprune.autodiff.batches.scoring_batches` (10 × the number of classes).
        batch_size: Examples per gradient batch for arrays; default all ``samples`` in one.
        verbose: 1 prints one line per update (connections moved); 0 (the default: ``fit``
            prints its own progress) is silent.

    Attributes:
        updates: The :class:`~tfprune.callbacks.MaskUpdate` of every update (with ``moved``),
            over all ``fit`` calls, oldest first.
        schedule: The :class:`tfprune.schedules.DropFraction` in use.

    Raises:
        ArgumentError: at construction, on an unknown criterion, allocation or drop schedule, a
            sparsity outside (0, 1), a drop fraction outside (0, 1), ``update_frequency < 1``,
            ``end_step < 1``, or a ``seed``, ``samples``, ``batch_size`` or ``verbose`` of the
            wrong type or out of range.
        ValueError: at construction, for RigL without ``data``; when ``fit`` starts, before any
            mask changes, on a model that is not wrapped, compiled with ``steps_per_execution > 1``,
            whose ``data`` does not fit it or its compiled loss (one-hot rows for sparse
            categorical cross-entropy), whose masks are already sparse with other
            per-tensor kept counts than ``sparsity`` and ``allocation`` give, or whose selected
            layers another mask-changing callback of the same ``fit`` changes.

    Example:
        >>> wrapped = tfprune.wrap(model)
        >>> wrapped.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> rigl = tfprune.callbacks.DynamicSparse("rigl", 0.9, end_step=3000, data=(x, y), seed=0)
        >>> wrapped.fit(x, y, epochs=5, callbacks=[rigl])
        >>> plain = tfprune.strip(wrapped)
    """

    @renamed(method="criterion", distribution="allocation")
    def __init__(self, criterion, sparsity, *, policy=None, allocation="erk", update_frequency=100,
                 drop_fraction=0.3, drop_schedule="cosine", end_step, seed=None, data=None, samples=None,
                 batch_size=None, verbose=0):
        super().__init__(policy)
        self.criterion = arguments.choice("criterion", criterion, CRITERIA)
        self.sparsity = arguments.number("sparsity", sparsity, 0, 1, low_open=True, high_open=True)
        self.allocation = arguments.choice("allocation", allocation, masks_lib.ALLOCATIONS)
        self.schedule = DropFraction(drop_fraction, end_step, update_frequency, drop_schedule)
        if criterion == "rigl" and data is None:
            raise ValueError("criterion 'rigl' grows by the gradient on a batch of data: pass data=(x, y) "
                             "(the training data) or a dataset of (x, y) batches")
        seed = arguments.seed(seed)
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else seed
        self.data, self.verbose = data, arguments.verbosity(verbose)
        self.samples = arguments.count("samples", samples, optional=True)
        self.batch_size = arguments.count("batch_size", batch_size, optional=True)
        self._batches = None

    def set_model(self, model):
        super().set_model(model)
        if self.criterion == "rigl":
            self._batches = scoring_batches(model, self.data, self.samples, self.batch_size)

    def initial_masks(self):
        """Random masks at ``sparsity`` with the per-tensor budget of ``allocation``, drawn from
        ``seed``, in the order of :meth:`targets`; their kept counts are the ones every update keeps."""
        rng = np.random.default_rng([self.seed, _INITIAL])
        scores = [rng.random(t.shape) for t in self.targets()]
        return masks_lib.from_scores(scores, sparsity=self.sparsity, scope="local", allocation=self.allocation)

    def check_model(self, model):
        super().check_model(model)
        initial = self.initial_masks()
        counts, dense = [int(m.sum()) for m in initial], [m.size for m in initial]
        current = [int(m.sum()) for m in masks_of(self.targets())]
        if current not in (counts, dense):
            raise ValueError(
                f"the masks of {model.name!r} keep {current} weights per tensor, but sparsity={self.sparsity:g} "
                f"with allocation={self.allocation!r} keeps {counts}: start from a freshly wrapped model (all masks "
                "ones), or give the sparsity and allocation of these masks"
            )

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # checks the model and the other callbacks before any mask changes
        targets = self.targets()
        if all(m.all() for m in masks_of(targets)):
            assign_masks(targets, self.initial_masks())

    def grow_scores(self, step, targets):
        """Scores of the weights to grow at ``step`` (higher grows first): ``|∂L/∂w|`` (RigL) or uniform
        random numbers from ``(seed, step)`` (SET)."""
        if self.criterion == "set":
            rng = np.random.default_rng([self.seed, _UPDATE, step])
            return [rng.random(t.shape) for t in targets]
        batch = self._batches[(step // self.schedule.frequency) % len(self._batches)]
        gradients = effective_gradients(self.model, targets, [batch])
        return [np.abs(views.array(g).astype(np.float64)) for g in gradients]

    def _update(self, step, fraction):
        targets = self.targets()
        old = masks_of(targets)
        weights = [t.variable.numpy() for t in targets]
        kept = [int(m.sum()) for m in old]
        dropped = [masks_lib.kept_count(fraction, k) for k in kept]
        names = [t.name for t in targets]
        survivors = masks_lib.from_scores(
            [np.abs(w) for w in weights], scope="local", candidates=old, names=names,
            allocation=[(k - d) / m.size for k, d, m in zip(kept, dropped, old)])
        grown = masks_lib.from_scores(
            self.grow_scores(step, targets), scope="local", candidates=[~s for s in survivors], names=names,
            allocation=[d / m.size for d, m in zip(dropped, old)])
        new = [s | g for s, g in zip(survivors, grown)]
        arrived = [n & ~o for n, o in zip(new, old)]
        for t, w, a in zip(targets, weights, arrived):
            if a.any():
                _zero_at(t.variable, a, w)
                for slot in optimizer_slots(self.model.optimizer, t.variable):
                    _zero_at(slot, a)
        assign_masks(targets, new)
        moved = {name: int(a.sum()) for name, a in zip(names, arrived)}
        self._record(step, self.sparsity, moved)
        if self.verbose:
            print(f"DynamicSparse: step {step}, moved {sum(moved.values())} connections (fraction {fraction:.4f})")

def _zero_at(variable, where, value=None):
    """Writes zeros into ``variable`` where ``where`` is true (``value``: its current value, if read)."""
    value = variable.numpy() if value is None else value.copy()
    value[where] = 0
    variable.assign(value)
