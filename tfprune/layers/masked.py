"""MaskedLayer: runs any Keras 3 layer with some of its weights multiplied by fixed masks."""

from __future__ import annotations

import inspect
from collections import defaultdict

import keras
from keras import ops
from tfprune import _compat
from tfprune.layers import kinds
from tfprune.layers.changes import changed

__all__ = ["MaskedLayer", "effective_values_given"]


def relative_path(unit, variable):
    """The variable's path below the unit (``"kernel"``, ``"query/kernel"``), stable across saves."""
    prefix = f"{unit.path}/" if unit.path else ""
    return variable.path[len(prefix):] if prefix and variable.path.startswith(prefix) else variable.path


class SubstitutingWrapper(keras.layers.Wrapper):
    """Base of the wrappers that run their layer with some of its variables replaced by tensors.

    A subclass says which in :meth:`substitutes`. The forward pass calls the wrapped layer inside a
    :class:`keras.StatelessScope` that maps each substituted variable to its tensor (and repeats
    the values an enclosing scope gives the layer's other variables). Updates the layer makes to
    its other variables (batch-norm statistics, seeds) are written back, and losses it adds
    (activity regularisers) are passed on. Gradients flow through the substituted tensors to
    whatever they were computed from. Used by :class:`MaskedLayer` and
    :class:`tfprune.autoprune.AutoPruneLayer`.

    Args:
        layer: The Keras 3 layer to wrap.
        **kwargs: Passed to :class:`keras.layers.Wrapper`.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        self._passes_training = "training" in inspect.signature(layer.call).parameters
        self.supports_masking = layer.supports_masking
        # A plain list, set past Keras's attribute tracking: the wrapped layer's variables must
        # stay owned by the wrapped layer, not become the wrapper's own.
        object.__setattr__(self, "_pairs", [])

    def substitutes(self):
        """``(variable, tensor)`` pairs: the values the forward pass uses for those variables."""
        raise NotImplementedError

    def _create_state(self):
        """Creates the subclass's variables next to the built layer (fills ``self._pairs``)."""
        raise NotImplementedError

    def _create_state_if_layer_built(self):
        """Called at the end of a subclass's ``__init__``: a built layer gets its state at once."""
        if self.layer.built:
            self._create_state()
            self.built = True

    def build(self, input_shape=None):
        super().build(input_shape)
        if not self._pairs:
            self._create_state()
        self.built = True

    def _inner_kwargs(self, training, kwargs):
        if self._passes_training:
            kwargs["training"] = training
        return kwargs

    def call(self, inputs, *args, training=None, **kwargs):
        substitutes = self.substitutes()
        with keras.StatelessScope(state_mapping=self._outer_values() + substitutes, collect_losses=True) as scope:
            outputs = self.layer(inputs, *args, **self._inner_kwargs(training, kwargs))
        substituted_ids = {id(v) for v, _ in substitutes}
        for variable in self.layer.variables:
            if id(variable) in substituted_ids:
                continue
            value = scope.get_current_value(variable)
            if value is not None:
                variable.assign(value)
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs

    def _outer_values(self):
        """Values an enclosing StatelessScope gives the wrapped layer's variables (scopes do not
        nest: the inner one must repeat them, or the layer would read the variables themselves)."""
        outer = _compat.stateless_scope()
        if outer is None:
            return []
        values = [(v, outer.get_current_value(v)) for v in self.layer.variables]
        return [(v, value) for v, value in values if value is not None]

    def compute_output_spec(self, inputs, *args, training=None, **kwargs):
        return self.layer.compute_output_spec(inputs, *args, **self._inner_kwargs(training, kwargs))

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)


@keras.saving.register_keras_serializable(package="tfprune")
class MaskedLayer(SubstitutingWrapper):
    """Wraps a layer and multiplies chosen weights by masks in every forward pass.

    The wrapped layer keeps its dense weights; the forward pass substitutes ``w * mask`` for each
    masked weight ``w`` (through a :class:`keras.StatelessScope`), so pruned weights contribute
    nothing and receive zero gradient. This holds in ``fit``, custom training loops, under
    ``jit_compile=True`` and under a distribution strategy. Masks are non-trainable variables of
    the wrapper, saved and loaded with the model. Updates the wrapped layer makes to its own
    state (batch-norm statistics, seeds) are applied as usual, and losses it adds (activity
    regularisers) are passed on. Weight regularisers of the wrapped layer see the dense weights.

    Usually made by :func:`tfprune.wrap`, not by hand.

    Args:
        layer: The Keras 3 layer to wrap (any layer, including composite ones such as
            ``MultiHeadAttention`` or a user's layer made of sub-layers).
        masked_weights: Paths, relative to ``layer``, of the weights to mask (``["kernel"]``,
            ``["query/kernel", ...]``). Default: the layer's prunable weights (see
            :mod:`tfprune.kinds`).
        **kwargs: Passed to :class:`keras.layers.Layer` (e.g. ``name``).

    Example:
        >>> layer = MaskedLayer(keras.layers.Dense(4))
        >>> y = layer(np.ones((2, 3), "float32"))
        >>> layer.masks[0].assign(np.zeros((3, 4)))  # now y == bias
    """

    def __init__(self, layer, masked_weights=None, **kwargs):
        kwargs.setdefault("name", f"masked_{layer.name}")
        super().__init__(layer, **kwargs)
        self.masked_weights = None if masked_weights is None else list(masked_weights)
        self._create_state_if_layer_built()

    def _create_state(self):
        by_path = {relative_path(self.layer, v): v for v in self.layer.weights}
        if self.masked_weights is None:
            self.masked_weights = [relative_path(self.layer, v) for _, v, _ in kinds.candidate_weights(self.layer)]
        missing = [p for p in self.masked_weights if p not in by_path]
        if missing or not self.masked_weights:
            raise ValueError(
                f"cannot mask {missing or 'nothing'} in layer {self.layer.name!r}: its weights are "
                f"{sorted(by_path)}"
            )
        distribution = keras.distribution.distribution()
        for path in self.masked_weights:
            variable = by_path[path]
            options = dict(name=path.replace("/", "_") + "_mask", shape=variable.shape, initializer="ones",
                           dtype=variable.dtype, trainable=False)
            if distribution is None:
                mask = self.add_weight(**options)
            else:  # laid out as its weight is (sharded with it), whatever the layout map says of the mask's path
                mask = _compat.add_weight_with_layout(self, distribution.get_variable_layout(variable), **options)
            self._pairs.append((variable, mask))

    # Ids of masked variables whose effective value (already masked) an enclosing StatelessScope
    # gives (see :func:`effective_values_given`): the layer reads it as it is, unmultiplied.
    _effective_given = frozenset()

    @property
    def masks(self):
        """The mask variables, in the order of ``masked_weights``."""
        return [m for _, m in self._pairs]

    @property
    def masked_variables(self):
        """``(weight, mask)`` variable pairs, in the order of ``masked_weights``."""
        return list(self._pairs)

    def mask_of(self, variable):
        """The mask variable of ``variable``, or ``None`` if it is not masked."""
        for v, m in self._pairs:
            if v is variable:
                return m
        return None

    def substitutes(self):
        given = self._effective_given
        return [(v, ops.multiply(v.value, m.value)) for v, m in self._pairs if id(v) not in given]

    def get_config(self):
        return {**super().get_config(), "masked_weights": list(self.masked_weights)}


def effective_values_given(targets):
    """A context in which the wrappers of ``targets`` read those weights as effective values.

    Inside it, an enclosing :class:`keras.StatelessScope` maps each target's variable to its
    *effective* value ``θ ⊙ m`` (or any value to use as such); the :class:`MaskedLayer` uses that
    value as it is instead of multiplying it by the mask again, which saves a multiplication over
    every masked weight, and a tensor of ones, per forward pass. Other masked weights of the same
    wrappers are masked as usual.

    Args:
        targets: :class:`tfprune.layers.targets.Target` objects; those without a wrapper are ignored.

    Returns:
        A context manager (:func:`tfprune.layers.changes.changed`).
    """
    wrappers, given = {}, defaultdict(set)
    for t in targets:
        if t.wrapper is not None:
            wrappers[id(t.wrapper)] = t.wrapper
            given[id(t.wrapper)].add(id(t.variable))
    return changed((wrappers[key], "_effective_given", frozenset(ids)) for key, ids in given.items())
