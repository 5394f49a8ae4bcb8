"""Pruning schedules: when to prune, and to which sparsity.

A schedule is called with a step and returns ``(should_prune, sparsity)``: whether the masks are
updated at that step, and the sparsity (removed fraction) they then get. Three kinds, three types
that the entry points check (none is accepted where another is expected):

* training-step schedules (:class:`PruningSchedule`, TF-MOT's name) for pruning during ``fit`` with
  :class:`tfprune.callbacks.GradualPruning` (step = the optimizer's iteration count), with TF-MOT's
  semantics — its schedules of the same names and arguments return the same values at every step:
  :class:`PolynomialDecay` and :class:`ConstantSparsity`;
* the drop fraction of :class:`tfprune.callbacks.DynamicSparse` over training steps: :class:`DropFraction`;
* round schedules (:class:`RoundSchedule`) for :func:`tfprune.prune_at_init`'s ``round_schedule``
  (step = the round index ``t`` of ``T``), which
  end at the final density ``d`` in the last round: :class:`Exponential` (``"exponential"``) keeps
  ``d^((t+1)/T)`` after round ``t``, removing the same fraction of the remaining weights every
  round; :class:`Linear` (``"linear"``) keeps ``1 - (1 - d)(t+1)/T``, removing the same number.

Every schedule saves with ``keras.saving.serialize_keras_object`` and loads with
``keras.saving.deserialize_keras_object`` (or :func:`get`).
"""

from __future__ import annotations

import abc

import keras
import numpy as np

from tfprune.base import arguments
from tfprune.base.arguments import ArgumentError

__all__ = [
    "PruningSchedule",
    "PolynomialDecay",
    "ConstantSparsity",
    "RoundSchedule",
    "Exponential",
    "Linear",
    "DropFraction",
    "SCHEDULES",
    "get",
    "round_densities",
]


class _Schedule(abc.ABC):
    """What every schedule here shares: ``schedule(step)`` returns ``(due, value)``, and it saves as
    its constructor's arguments."""

    @abc.abstractmethod
    def __call__(self, step):
        """Whether to prune at ``step`` (an int), and the sparsity to prune to: ``(bool, float)``."""

    @abc.abstractmethod
    def get_config(self):
        """The constructor's arguments, as a dict of plain Python values."""

    @classmethod
    def from_config(cls, config):
        """The schedule ``cls(**config)``: the inverse of :meth:`get_config`."""
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class PruningSchedule(_Schedule):
    """Base of the training-step schedules: ``schedule(step)`` returns ``(should_prune, sparsity)``,
    ``step`` being the optimizer's iteration count.

    A subclass implements ``__call__`` and ``get_config`` (its constructor's arguments) and sets
    ``final_sparsity``, the sparsity it ends at; implementing :meth:`next_update` lets
    :class:`~tfprune.callbacks.GradualPruning` check the schedule against the model before the
    first step. Register it with ``keras.saving.register_keras_serializable`` to load it by name.
    """

    final_sparsity: float

    def next_update(self, step):
        """``(step, sparsity)`` of the first update at or after ``step``, ``None`` if there is none
        or the schedule does not say (this base)."""
        return None


class _StepSchedule(PruningSchedule):
    """Prunes every ``frequency`` steps from ``begin_step`` to ``end_step`` (inclusive; -1: no end)."""

    def __init__(self, begin_step, end_step, frequency, endless):
        self.begin_step = arguments.count("begin_step", begin_step, 0)
        self.end_step = arguments.count("end_step", end_step, None)
        if self.end_step < self.begin_step and not (endless and self.end_step == -1):
            never = " or -1 (prune until training ends)" if endless else ""
            raise ArgumentError(f"end_step must be >= begin_step ({self.begin_step}){never}, got {self.end_step}")
        self.frequency = arguments.count("frequency", frequency)

    def _due(self, step):
        in_range = self.begin_step <= step and (step <= self.end_step or self.end_step == -1)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def next_update(self, step):
        step = max(_step(step), self.begin_step)
        step += -(step - self.begin_step) % self.frequency
        if self.end_step != -1 and step > self.end_step:
            return None
        return step, self(step)[1]


@keras.saving.register_keras_serializable(package="tfprune")
class PolynomialDecay(_StepSchedule):
    """Sparsity rising from ``initial_sparsity`` to ``final_sparsity`` along a polynomial, as TF-MOT's.

    At step ``s`` the sparsity is ``f + (i - f)(1 - p)^power`` with ``p = (s - begin_step) /
    (end_step - begin_step)`` clipped to [0, 1], computed in float32 as TF-MOT does, so the value
    is the one TF-MOT's ``PolynomialDecay`` returns (called eagerly) bit for bit. Masks are
    updated at ``begin_step``, every ``frequency`` steps after it, up to ``end_step``. The
    sparsity rises fast at first and flattens towards the end (Zhu & Gupta 2017).

    Args:
        initial_sparsity: Sparsity at ``begin_step``, in [0, 1).
        final_sparsity: Sparsity from ``end_step`` on, in [0, 1).
        begin_step: First step that prunes, an int >= 0.
        end_step: Step at which ``final_sparsity`` is reached, an int > ``begin_step``.
        power: Exponent of the decay, a number > 0 (3: fast at first; 1: linear).
        frequency: Prune every this many steps, an int >= 1.

    Raises:
        ArgumentError: on a sparsity outside [0, 1), a step that is not an int, ``begin_step < 0``,
            ``end_step <= begin_step`` (TF-MOT returns NaN when they are equal), ``power <= 0``
            or ``frequency < 1``.

    Example:
        >>> schedule = PolynomialDecay(0.5, 0.8, begin_step=0, end_step=1000, frequency=100)
        >>> schedule(0), schedule(50), schedule(1000)
        ((True, 0.5), (False, 0.5427875518798828), (True, 0.800000011920929))
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100):
        super().__init__(begin_step, end_step, frequency, endless=False)
        if self.end_step == self.begin_step:
            raise ArgumentError(f"PolynomialDecay needs end_step > begin_step to rise over, got both {self.end_step}; "
                             "to prune once, use ConstantSparsity(sparsity, step, end_step=step)")
        self.initial_sparsity = _sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _sparsity("final_sparsity", final_sparsity)
        arguments.number("power", power, 0, low_open=True)
        self.power = power

    def __call__(self, step):
        step = _step(step)
        f32 = np.float32
        progress = f32(step - self.begin_step) / f32(self.end_step - self.begin_step)
        progress = min(f32(1.0), max(f32(0.0), progress))
        rise = f32(self.initial_sparsity - self.final_sparsity) * (f32(1.0) - progress) ** f32(self.power)
        return self._due(step), float(rise + f32(self.final_sparsity))

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step, "power": self.power,
                "frequency": self.frequency}


@keras.saving.register_keras_serializable(package="tfprune")
class ConstantSparsity(_StepSchedule):
    """One sparsity, applied every ``frequency`` steps from ``begin_step`` to ``end_step``, as TF-MOT's.

    The sparsity returned is ``target_sparsity`` rounded to float32, as TF-MOT returns it.

    Args:
        target_sparsity: The sparsity, in [0, 1).
        begin_step: First step that prunes, an int >= 0.
        end_step: Last step that may prune, an int >= ``begin_step``, or -1 (the default) to
            prune until training ends.
        frequency: Prune every this many steps, an int >= 1.

    Raises:
        ArgumentError: on a sparsity outside [0, 1), a step that is not an int, ``begin_step < 0``,
            ``end_step`` neither -1 nor >= ``begin_step``, or ``frequency < 1``.

    Example:
        >>> schedule = ConstantSparsity(0.5, begin_step=200, frequency=100)
        >>> schedule(100), schedule(300), schedule(350)
        ((False, 0.5), (True, 0.5), (False, 0.5))
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency, endless=True)
        self.target_sparsity = _sparsity("target_sparsity", target_sparsity)

    @property
    def final_sparsity(self):
        """The sparsity the schedule ends at: ``target_sparsity``."""
        return self.target_sparsity

    def __call__(self, step):
        step = _step(step)
        return self._due(step), float(np.float32(self.target_sparsity))

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
                "end_step": self.end_step, "frequency": self.frequency}


class RoundSchedule(_Schedule):
    """Base of the round schedules of :func:`tfprune.prune_at_init`: step ``t`` is a round index.

    ``schedule(t)`` is ``(True, sparsity after round t)`` for ``t = 0 … rounds-1``, the last one
    ``final_sparsity`` exactly; before round 0 it is ``(False, initial_sparsity)`` and after the
    last round ``(False, final_sparsity)``. A subclass defines the curve from density 1 in
    :meth:`density_after`; from an initial density ``d0`` the schedule follows the same curve
    scaled by ``d0``: round t keeps ``d0 · density_after(d / d0, (t+1)/T)`` (for both curves here,
    the same fraction, or the same number, of the weights left at the start is removed each round).

    Args:
        final_sparsity: Sparsity after the last round, in [0, 1).
        rounds: Number of rounds, an int >= 1.
        initial_sparsity: Sparsity before round 0, in [0, ``final_sparsity``]; default 0 (dense).
            :func:`tfprune.prune_at_init` starts the rounds at the model's current sparsity
            (:meth:`starting_at`).

    Raises:
        ArgumentError: on a sparsity outside [0, 1), ``initial_sparsity > final_sparsity`` or
            ``rounds`` not an int >= 1.
    """

    def __init__(self, final_sparsity, rounds, initial_sparsity=0.0):
        self.final_sparsity = _sparsity("final_sparsity", final_sparsity)
        self.rounds = arguments.count("rounds", rounds)
        self.initial_sparsity = _sparsity("initial_sparsity", initial_sparsity)
        if self.initial_sparsity > self.final_sparsity:
            raise ArgumentError(f"initial_sparsity ({self.initial_sparsity}) must be <= final_sparsity "
                             f"({self.final_sparsity}): a round schedule only removes weights")

    @staticmethod
    @abc.abstractmethod
    def density_after(final_density, progress):
        """Density kept, starting from density 1, once a fraction ``progress`` in (0, 1] of the rounds is done."""

    def starting_at(self, sparsity):
        """The same curve, rounds and final sparsity, started at ``sparsity`` (at most the final one).

        Example:
            >>> Exponential(0.99, rounds=2).starting_at(0.9)(0)  # keeps 0.1 · 0.1 ** (1/2)
            (True, 0.9683772233983162)
        """
        return type(self).from_config({**self.get_config(), "initial_sparsity": sparsity})

    def __call__(self, step):
        step = _step(step)
        if step < 0:
            return False, self.initial_sparsity
        if step >= self.rounds - 1:
            return step == self.rounds - 1, self.final_sparsity
        start = 1.0 - self.initial_sparsity
        return True, 1.0 - start * self.density_after((1.0 - self.final_sparsity) / start, (step + 1) / self.rounds)

    def get_config(self):
        return {"final_sparsity": self.final_sparsity, "rounds": self.rounds,
                "initial_sparsity": self.initial_sparsity}


@keras.saving.register_keras_serializable(package="tfprune")
class Exponential(RoundSchedule):
    """Every round removes the same fraction of the remaining weights: round t keeps ``d^((t+1)/T)``.

    Example:
        >>> Exponential(0.75, rounds=2)(0)  # keeps 0.25 ** (1/2)
        (True, 0.5)
    """

    @staticmethod
    def density_after(final_density, progress):
        return final_density**progress


@keras.saving.register_keras_serializable(package="tfprune")
class Linear(RoundSchedule):
    """Every round removes the same number of weights: round t keeps ``1 - (1 - d)(t+1)/T``.

    Example:
        >>> Linear(0.5, rounds=2)(0)
        (True, 0.25)
    """

    @staticmethod
    def density_after(final_density, progress):
        return 1.0 - (1.0 - final_density) * progress


@keras.saving.register_keras_serializable(package="tfprune")
class DropFraction(_Schedule):
    """When dynamic sparse training moves connections, and which fraction of the kept ones.

    ``schedule(step)`` returns ``(should_update, fraction)``: updates happen at the steps ``s``
    with ``0 < s < end_step`` and ``s % frequency == 0`` (step 0 has trained nothing yet; from
    ``end_step`` on the masks stay fixed). ``decay="cosine"`` is RigL's schedule,
    ``fraction(s) = initial_fraction · (1 + cos(π·s/end_step)) / 2``; ``"constant"`` keeps
    ``initial_fraction`` (SET's original choice). Used by :class:`tfprune.callbacks.DynamicSparse`.

    Args:
        initial_fraction: The fraction at step 0, in (0, 1).
        end_step: The last step is ``end_step - 1``; an int >= 1.
        frequency: Update every this many steps, an int >= 1.
        decay: ``"cosine"`` or ``"constant"``.

    Raises:
        ArgumentError: on a fraction outside (0, 1), ``end_step < 1``, ``frequency < 1`` or an
            unknown decay.

    Example:
        >>> schedule = DropFraction(0.3, end_step=1000, frequency=100)
        >>> schedule(100), schedule(150), schedule(500)
        ((True, 0.29265847744427304), (False, 0.28365097862825517), (True, 0.15))
    """

    DECAYS = ("cosine", "constant")

    def __init__(self, initial_fraction, end_step, frequency=100, decay="cosine"):
        self.initial_fraction = arguments.number("drop_fraction", initial_fraction, 0, 1, low_open=True,
                                                 high_open=True)
        self.decay = arguments.choice("drop_schedule", decay, self.DECAYS)
        self.end_step = arguments.count("end_step", end_step)
        self.frequency = arguments.count("update_frequency", frequency)

    def __call__(self, step):
        step = _step(step)
        due = 0 < step < self.end_step and step % self.frequency == 0
        if self.decay == "constant":
            return due, self.initial_fraction
        progress = min(step, self.end_step) / self.end_step
        return due, self.initial_fraction * 0.5 * (1.0 + float(np.cos(np.pi * progress)))

    def get_config(self):
        """The constructor's arguments."""
        return {"initial_fraction": self.initial_fraction, "end_step": self.end_step,
                "frequency": self.frequency, "decay": self.decay}



_ROUND_SCHEDULES = {"exponential": Exponential, "linear": Linear}
SCHEDULES = tuple(_ROUND_SCHEDULES)
_BY_NAME = {"polynomial_decay": PolynomialDecay, "constant_sparsity": ConstantSparsity, **_ROUND_SCHEDULES}


def get(identifier, **arguments):
    """A schedule from a schedule object, a config dict or a name.

    Args:
        identifier: A :class:`PruningSchedule` (returned as it is); a dict from
            ``keras.saving.serialize_keras_object`` (or ``{"class_name": "PolynomialDecay",
            "config": {...}}``); or a name — ``"polynomial_decay"``, ``"constant_sparsity"``,
            ``"exponential"``, ``"linear"`` — built with ``arguments``.
        **arguments: The constructor's arguments, with a name only.

    Returns:
        A :class:`PruningSchedule`.

    Raises:
        ArgumentError: on an unknown name, a dict that is not a schedule's config, or arguments
            given with an object or a dict.

    Example:
        >>> get("exponential", final_sparsity=0.99, rounds=2)
        Exponential(final_sparsity=0.99, rounds=2, initial_sparsity=0.0)
    """
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier](**arguments)
    if arguments:
        raise ArgumentError(f"constructor arguments {sorted(arguments)} go with a schedule name "
                            f"({', '.join(_BY_NAME)}), not with {identifier!r}")
    if isinstance(identifier, _Schedule):
        return identifier
    if isinstance(identifier, dict):
        classes = {cls.__name__: cls for cls in _BY_NAME.values()}
        schedule = keras.saving.deserialize_keras_object(identifier, custom_objects=classes)
        if not isinstance(schedule, _Schedule):
            raise ArgumentError(f"the config {identifier!r} gives a {type(schedule).__name__}, not a pruning schedule")
        return schedule
    raise ArgumentError(f"unknown schedule {identifier!r}: give a tfprune.schedules.PruningSchedule, its config "
                        f"dict, or one of the names {', '.join(_BY_NAME)}")


def round_densities(final_density, rounds, schedule="exponential"):
    """Densities to reach after each of ``rounds`` rounds, ending at ``final_density``.

    Args:
        final_density: Kept fraction after the last round, in (0, 1].
        rounds: Number of rounds, an int >= 1.
        schedule: ``"exponential"`` or ``"linear"`` (the curves of :class:`Exponential` and
            :class:`Linear`).

    Returns:
        A list of ``rounds`` floats, non-increasing, the last equal to ``final_density``.

    Raises:
        ArgumentError: on an unknown schedule, ``rounds`` not an int >= 1 or a density outside (0, 1].

    Example:
        >>> round_densities(0.01, 2)
        [0.1, 0.01]
        >>> round_densities(0.5, 2, "linear")
        [0.75, 0.5]
    """
    arguments.choice("schedule", schedule, SCHEDULES)
    rounds = arguments.count("rounds", rounds)
    arguments.number("final_density", final_density, 0, 1, low_open=True)
    curve = _ROUND_SCHEDULES[schedule].density_after
    return [curve(final_density, (t + 1) / rounds) for t in range(rounds - 1)] + [final_density]


def _sparsity(name, value):
    return arguments.number(name, value, 0, 1, high_open=True)


def _step(step):
    """``step`` as a Python int; it may be a NumPy or TensorFlow integer scalar."""
    value = np.asarray(step)
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise TypeError(f"a schedule's step must be an integer, got {step!r}")
    return int(value)
