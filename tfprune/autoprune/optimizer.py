"""AuxOptimizer: one optimizer for the weights, another for AutoPrune's auxiliary parameters."""

from __future__ import annotations

import keras

from tfprune import _compat
from tfprune.autoprune.layer import is_aux

__all__ = ["AuxOptimizer"]


@keras.saving.register_keras_serializable(package="tfprune")
class AuxOptimizer(keras.optimizers.Optimizer):
    """Routes the auxiliary variables m to their own optimiser, everything else to another.

    A learning rate of its own for m cannot be had by scaling m's gradient when the optimiser is
    Adam-like: Adam's step does not depend on the gradient's scale. This optimiser runs two
    optimisers side by side in one ``apply_gradients`` call (what Keras's trainer calls), each on
    its own variables, with its own state, learning rate and schedule. m never gets weight
    decay: it never reaches ``optimizer``, and ``aux_optimizer`` excludes all its variables.
    ``learning_rate`` and ``iterations`` are those of ``optimizer`` (so learning-rate callbacks
    act on W); set ``aux_optimizer.learning_rate`` for m. Saves and loads with the model.

    Args:
        optimizer: The optimiser of the model's other trainable variables.
        aux_optimizer: The optimiser of the auxiliary variables.
        name: The optimiser's name.

    Example:
        >>> model.compile(optimizer=autoprune.AuxOptimizer(keras.optimizers.Adam(1e-3),
        ...                                                  keras.optimizers.SGD(1e-1)), loss=...)
    """

    def __init__(self, optimizer, aux_optimizer, name=None):
        super().__init__(learning_rate=0.0, name=name)
        self.optimizer = keras.optimizers.get(optimizer)
        self.aux_optimizer = keras.optimizers.get(aux_optimizer)

    def build(self, var_list):
        main, aux = self._split_aux(var_list)  # no aux (e.g. a hardened clone): all goes to optimizer
        self.aux_optimizer.exclude_from_weight_decay(var_list=aux)
        self.optimizer.build(main)
        self.aux_optimizer.build(aux)
        super().build(var_list)

    @staticmethod
    def _split_aux(variables):
        return [v for v in variables if not is_aux(v)], [v for v in variables if is_aux(v)]

    @property
    def variables(self):
        return _compat.optimizer_own_variables(self) + self.optimizer.variables + self.aux_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            if not self.built:
                raise ValueError("AuxOptimizer is not built: pass trainable_variables with the first gradients")
            trainable_variables = _compat.optimizer_trainable_variables(self)
        elif not self.built:
            self.build(list(trainable_variables))
        pairs = list(zip(grads, trainable_variables))
        for optimizer, wanted in ((self.optimizer, False), (self.aux_optimizer, True)):
            chosen = [(g, v) for g, v in pairs if is_aux(v) == wanted]
            if chosen:
                optimizer.apply([g for g, _ in chosen], [v for _, v in chosen])

    @property
    def learning_rate(self):
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.optimizer.iterations

    def finalize_variable_values(self, var_list):
        main, aux = self._split_aux(var_list)
        self.optimizer.finalize_variable_values(main)
        self.aux_optimizer.finalize_variable_values(aux)

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.optimizers.serialize(self.optimizer),
            "aux_optimizer": keras.optimizers.serialize(self.aux_optimizer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(
            keras.optimizers.deserialize(config["optimizer"], custom_objects=custom_objects),
            keras.optimizers.deserialize(config["aux_optimizer"], custom_objects=custom_objects),
            name=config.get("name"),
        )
