"""tfprune/_compat.py is the only place that touches Keras internals, and each access still works.

The first test reads tfprune's source: outside ``_compat.py`` no module imports ``keras.src`` or
reads a private attribute (``obj._name``) of another object, nor one that Keras defines on its own
classes (``self._trainable_variables`` in a subclass); private names of tfprune's own objects
(``self._pairs``, ``_tfprune_*`` attributes) are allowed. The other tests fail loudly on a Keras
release that changed one of the accessors.
"""

import ast
import re
from pathlib import Path

import keras
import numpy as np
import pytest

import tfprune
from tfprune import _compat

PACKAGE = Path(tfprune.__file__).parent
L = keras.layers


def _keras_private_names():
    """Every ``self._name`` that Keras's own source assigns or reads."""
    names = set()
    for path in Path(keras.__file__).parent.rglob("*.py"):
        names.update(re.findall(r"self\.(_[A-Za-z]\w*)", path.read_text(errors="ignore")))
    return {n for n in names if not n.startswith("__")}


def _violations(path, keras_private):
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: imports {m}" for m in modules if m.startswith("keras.src")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            own = owner in ("self", "cls") and node.attr not in keras_private
            ours = node.attr.startswith("_tfprune") or owner == "_compat"
            if not (own or ours):
                found.append(f"line {node.lineno}: reads {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr"):
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                name = str(node.args[1].value)
                if name.startswith("_") and not name.startswith(("__", "_tfprune")):
                    found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_only_compat_touches_keras_internals():
    keras_private = _keras_private_names()
    assert "_trainable_variables" in keras_private  # the scan itself works
    report = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_compat.py":
            continue
        found = _violations(path, keras_private)
        if found:
            report[str(path.relative_to(PACKAGE))] = found
    assert not report, f"Keras internals outside tfprune/_compat.py: {report}"


def test_the_scan_catches_a_private_read(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import keras.src.backend\nx = layer._flatten_layers()\ny = self._trainable_variables\n")
    assert len(_violations(bad, {"_trainable_variables"})) == 3


def _mlp():
    inputs = keras.Input((3,))
    hidden = L.Dense(4, name="hidden")(inputs)
    return keras.Model(inputs, L.Dense(2, name="out")(hidden + 1.0), name="mlp")


def test_layer_accessors():
    rnn = L.LSTM(2)
    rnn.build((None, 5, 3))
    assert [type(x).__name__ for x in _compat.direct_sublayers(rnn)] == ["LSTMCell"]
    assert [type(x).__name__ for x in _compat.nested_layers(rnn)] == ["LSTM", "LSTMCell"]
    assert _compat.own_variables(rnn) == []
    cell = _compat.direct_sublayers(rnn)[0]
    assert [v.name for v in _compat.own_variables(cell)] == ["kernel", "recurrent_kernel", "bias"]
    bn = L.BatchNormalization()
    bn.build((None, 3))
    assert [v.name for v in _compat.own_variables(bn)] == ["gamma", "beta", "moving_mean", "moving_variance"]


def test_functional_graph_accessors():
    model = _mlp()
    assert isinstance(model, _compat.Functional)
    by_depth = _compat.nodes_by_depth(model)
    names = {n.operation.name for nodes in by_depth.values() for n in nodes}
    assert {"hidden", "out"} <= names and len(names) == 4  # input, hidden, the "+ 1" op node, out
    assert _compat.keras_history_operation(model.outputs[0]).name == "out"
    assert _compat.inputs_struct(model) is model.inputs[0] or _compat.inputs_struct(model) == model.inputs
    seq = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    assert isinstance(_compat.sequential_graph(seq), _compat.Functional)
    assert _compat.sequential_graph(keras.Sequential([L.Dense(2)])) is None


def test_build_shapes_and_symbolic_tracing():
    dense = L.Dense(2)
    dense(np.ones((1, 3), "float32"))
    assert list(_compat.build_shapes(dense).values()) == [(1, 3)]
    spec = _compat.compute_output_spec(lambda x: _mlp()(x), keras.KerasTensor((1, 3)))
    assert tuple(spec.shape) == (1, 2)


def test_stateless_scope_and_tracking():
    assert _compat.stateless_scope() is None
    with keras.StatelessScope() as scope:
        assert _compat.stateless_scope() is scope
    class Parent(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = L.Dense(2)

    parent = Parent()
    old, new = parent.inner, L.Dense(3)
    assert getattr(parent, _compat.LAYER_LIST_ATTRIBUTE)[0] is old
    _compat.replace_tracked_layer(parent, old, new)
    assert getattr(parent, _compat.LAYER_LIST_ATTRIBUTE)[0] is new


def test_optimizer_trainable_variables():
    variable = keras.Variable(np.ones(2, "float32"))
    optimizer = keras.optimizers.SGD()
    optimizer.build([variable])
    assert list(_compat.optimizer_trainable_variables(optimizer)) == [variable]


def test_setup_cfg_states_the_tested_keras_range():
    import configparser

    from packaging.requirements import Requirement

    setup = configparser.ConfigParser()
    setup.read(PACKAGE.parent / "setup.cfg")
    lines = setup["options"]["install_requires"].split("\n")
    keras_req = next(Requirement(line) for line in lines if line.strip().startswith("keras"))
    operators = {spec.operator for spec in keras_req.specifier}
    assert operators == {">=", "<"}, f"state a lower and an upper bound for keras, got {keras_req}"
    assert keras_req.specifier.contains(keras.__version__)


def test_optimizer_own_variables():
    optimizer = keras.optimizers.SGD()
    optimizer.build([keras.Variable(np.ones(2, "float32"))])
    own = _compat.optimizer_own_variables(optimizer)
    assert any(v is optimizer.iterations for v in own)


def test_explicit_attention_scores_goes_through_the_softmax_layer():
    layer = L.MultiHeadAttention(num_heads=2, key_dim=3)
    x = np.random.default_rng(0).normal(size=(2, 4, 5)).astype("float32")
    fused = np.asarray(layer(x, x))
    softmax = next(sub for sub in _compat.nested_layers(layer) if isinstance(sub, L.Softmax))
    calls = []
    original = softmax.call
    object.__setattr__(softmax, "call", lambda *a, **k: calls.append(1) or original(*a, **k))
    try:
        with _compat.explicit_attention_scores(layer):
            explicit = np.asarray(layer(x, x))
    finally:
        object.__delattr__(softmax, "call")
    assert calls, "the explicit path did not call the Softmax sub-layer"
    np.testing.assert_allclose(explicit, fused, rtol=1e-5, atol=1e-6)
    assert "_compute_attention" not in vars(layer)  # restored


def test_operation_classes_are_the_classes_of_graph_nodes():
    inputs = keras.Input((4,))
    outputs = keras.ops.sigmoid(inputs + 3.0) * 2.0
    model = keras.Model(inputs, outputs)
    node_classes = {type(op) for op in model.operations if not isinstance(op, keras.layers.InputLayer)}
    found = _compat.operation_classes(["Add", "Sigmoid", "Multiply", "NoSuchOperation"])
    assert len(found) == 3 and set(found) == node_classes


def test_convnext_layer_scale_is_what_convnext_uses():
    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=10)
    layer_scale = _compat.convnext_layer_scale()
    assert sum(isinstance(layer, layer_scale) for layer in model.layers) == 18  # one per block: 3+3+9+3


def test_observed_inputs_sees_each_call_and_restores():
    dense = L.Dense(2)
    seen = []
    with _compat.observed_inputs([dense], lambda layer, inputs: seen.append((layer, tuple(inputs.shape)))):
        dense(np.ones((3, 4), "float32"))
        dense(inputs=np.ones((1, 4), "float32"))
    assert seen == [(dense, (3, 4)), (dense, (1, 4))]
    assert "call" not in vars(dense)
    dense(np.ones((1, 4), "float32"))
    assert len(seen) == 2


def test_input_structure_compiled_loss_and_data_adapter():
    a, b = keras.Input((2,), name="b_input"), keras.Input((3,), name="a_input")
    model = keras.Model({"b": a, "a": b}, L.Dense(1)(L.Concatenate()([a, b])))
    assert set(_compat.input_structure(model)) == {"a", "b"}
    assert _compat.input_structure(keras.Sequential([keras.Input((3,)), L.Dense(2)])) is not None
    assert _compat.input_structure(keras.Sequential([L.Dense(2)])) is None
    assert _compat.compile_loss(model) is None
    model.compile("sgd", "mse", loss_weights=[0.5])
    assert _compat.compile_loss(model) is not None and _compat.compile_loss_weights(model) == [0.5]
    x = {"a": np.ones((5, 3)), "b": np.zeros((5, 2))}
    batches = list(_compat.data_adapter(x, np.arange(5), None, batch_size=2).get_numpy_iterator())
    assert [len(batch[1]) for batch in batches] == [2, 2, 1] and batches[0][0]["a"].dtype == np.float32


def test_exact_tensorflow_moments_give_the_variances_second_derivative():
    """Within ``exact_tensorflow_moments`` Keras's moments equal NumPy's, and the Hessian of the
    variance of n values along v is the closed form 2/n · (v − mean v) (``tf.nn.moments`` gives
    2/n · v); Keras's own function is back afterwards."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn as tensorflow_nn

    original = tensorflow_nn._compute_moments
    rng = np.random.default_rng(0)
    x, v = (tf.constant(rng.normal(size=(1, 6)), tf.float64) for _ in range(2))
    with _compat.exact_tensorflow_moments():
        mean, variance = keras.ops.moments(x, axes=[1])
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                total = tf.reduce_sum(keras.ops.moments(x, axes=[1])[1])
            along_v = tf.reduce_sum(inner.gradient(total, x) * v)
        hessian_v = outer.gradient(along_v, x)
    assert tensorflow_nn._compute_moments is original
    np.testing.assert_allclose(mean, x.numpy().mean(1), rtol=1e-12)
    np.testing.assert_allclose(variance, x.numpy().var(1), rtol=1e-12)
    np.testing.assert_allclose(hessian_v, 2 / 6 * (v.numpy() - v.numpy().mean()), rtol=1e-12, atol=1e-15)


def test_add_weight_with_layout_makes_the_variable_add_weight_would():
    """Made in ``build``: tracked by the layer, under the path ``add_weight`` gives, with its values."""

    class TwoWeights(keras.layers.Layer):
        def build(self, input_shape):
            options = dict(shape=(2, 3), initializer="ones", dtype="float32", trainable=False)
            self.made = _compat.add_weight_with_layout(self, None, name="made", **options)
            self.reference = self.add_weight(name="reference", **options)

        def call(self, x):
            return x

    layer = TwoWeights(name="two")
    layer.build((None, 2))
    assert layer.non_trainable_weights == [layer.made, layer.reference]
    assert (layer.made.path, layer.reference.path) == ("two/made", "two/reference")
    np.testing.assert_array_equal(layer.made.numpy(), np.ones((2, 3)))
