"""Why a wrapped model would not reload with ``keras.models.load_model``, said when it is wrapped.

A functional model of a class of its own (a KerasHub task) wraps into a
:class:`~tfprune.layers.wrapping.WrappedModel`, which saves as that class and reloads. Any other
graph model wraps into a plain ``Functional`` or ``Sequential`` clone whose ``.keras`` file holds
the config of every layer of its graphs, those of nested models included, where a nested model of
a class of its own (a KerasHub backbone inside your functional model) held only the arguments of
its constructor. Keras cannot reload such a file when

* a layer's ``from_config`` refuses the layer's own ``get_config()`` (KerasHub's
  ``ViTPatchingAndEmbedding`` writes ``num_patches``, which its constructor does not take), or
* a layer of a nested model is also called by a model around it (as ``GPT2CausalLM`` computes its
  logits with its backbone's token embedding): Keras rebuilds it as two layers and finds weights
  for one of them only.

``save_weights`` / ``load_weights`` into a model wrapped the same way do not have these limits.
"""

from __future__ import annotations

import warnings

import keras

from tfprune import _compat
from tfprune.base import walk

__all__ = ["copy_from_config", "reload_problems", "warn_if_not_reloadable"]


def copy_from_config(layer):
    """A new, unbuilt layer made by ``type(layer).from_config(layer.get_config())``.

    Raises:
        ValueError: naming the layer and the cause if its ``from_config`` refuses its ``get_config()``.
    """
    try:
        return type(layer).from_config(layer.get_config())
    except Exception as error:  # the layer's own get_config/from_config failed
        raise ValueError(
            f"cannot copy layer {layer.name!r} of type {type(layer).__name__} from its config "
            f"({error}); give it a get_config() that from_config() accepts"
        ) from error


def reload_problems(model):
    """Why the wrapped clone of ``model`` would not reload from a ``.keras`` file, one sentence each.

    Args:
        model: A Keras 3 model before it is wrapped.

    Returns:
        A list of strings, empty when nothing is known to prevent the reload.
    """
    graphs = [m for m in [model, *walk.nested_models(model)] if walk.is_graph_model(m)]
    problems = []
    for graph in graphs:
        if type(graph) in (_compat.Functional, keras.Sequential):
            continue  # its file held its layers' configs already
        for layer in _graph_layers(graph):
            try:
                copy_from_config(layer)
            except ValueError as error:
                cause = str(error.__cause__).rsplit("Exception encountered: ", 1)[-1]  # Keras's innermost
                problems.append(f"layer {layer.name!r} ({type(layer).__name__}) of {graph.name!r} cannot be "
                                f"rebuilt from its own config: {cause}")
    owners = {}
    for graph in graphs:
        for layer in _graph_layers(graph):
            owners.setdefault(id(layer), (layer, []))[1].append(graph.name)
    problems += [f"layer {layer.name!r} is called by the models {names}: Keras reloads it as one layer per model "
                 "and finds the weights of only one" for layer, names in owners.values() if len(names) > 1]
    return problems


def warn_if_not_reloadable(model):
    """Warns, naming each cause, if the wrapped clone of ``model`` would not reload (:func:`reload_problems`)."""
    problems = reload_problems(model)
    if not problems:
        return
    stripped = "" if type(model) in (_compat.Functional, keras.Sequential) else (
        f"save the stripped model instead (tfprune.strip keeps the class {type(model).__name__}, whose file holds "
        "its constructor's arguments), or ")
    warnings.warn(f"the wrapped {model.name!r} will save, but keras.models.load_model cannot reload that file: "
                  f"{'; '.join(problems)}. To save it, {stripped}use save_weights() and load_weights() on a model "
                  "wrapped the same way", UserWarning, stacklevel=3)


def _graph_layers(graph):
    """The layers a graph model's config lists, inputs and nested models left out."""
    return [layer for layer in graph.layers if not isinstance(layer, (keras.layers.InputLayer, keras.Model))]
