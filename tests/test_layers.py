"""MaskedLayer: the forward pass uses w ⊙ mask, pruned weights get zero gradient and stay put."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import L, batch, compile_for_test, random_masks, residual_cnn, subclassed_mlp

import tfprune


def masked_twin(build, wrapped):
    """An unwrapped copy of the architecture whose weights are the wrapped model's w ⊙ mask,
    computed here in NumPy (independently of tfprune.strip)."""
    twin = build()
    values = {}
    for t, m in zip(tfprune.prunable_weights(wrapped), tfprune.get_masks(wrapped)):
        values[id(t.variable)] = t.variable.numpy() * m
    plain_weights = [values.get(id(v), v.numpy()) for v in _unmasked_weights(wrapped)]
    twin.set_weights(plain_weights)
    return twin


def _unmasked_weights(wrapped):
    masks = {id(t.mask) for t in tfprune.prunable_weights(wrapped)}
    return [v for v in wrapped.weights if id(v) not in masks]


def wrapped_cnn(density=0.3, seed=0):
    model = tfprune.wrap(residual_cnn())
    tfprune.apply_masks(model, random_masks(model, density, seed))
    return model


def test_forward_equals_model_with_masked_weights():
    """Outputs equal those of the same network whose weights are w ⊙ m (NumPy)."""
    wrapped = wrapped_cnn()
    x, _ = batch((8, 8, 3))
    twin = masked_twin(residual_cnn, wrapped)
    np.testing.assert_allclose(wrapped(x, training=False), twin(x, training=False), rtol=1e-5, atol=1e-6)


def test_gradients_are_zero_exactly_where_pruned_and_exact_elsewhere():
    """∂L/∂w is 0 at pruned entries and equals the masked network's gradient (times m) elsewhere."""
    wrapped = wrapped_cnn()
    twin = masked_twin(residual_cnn, wrapped)
    x, y = batch((8, 8, 3))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    targets = tfprune.prunable_weights(wrapped)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, wrapped(x, training=False))
    grads = tape.gradient(loss, [t.variable.value for t in targets])
    twin_kernels = [twin.get_layer(t.layer.name).weights[[w.name for w in t.layer.weights].index(t.variable.name)] for t in targets]
    with tf.GradientTape() as tape:
        twin_loss = loss_fn(y, twin(x, training=False))
    twin_grads = tape.gradient(twin_loss, [v.value for v in twin_kernels])
    for g, tg, m in zip(grads, twin_grads, tfprune.get_masks(wrapped)):
        assert np.all(g.numpy()[~m] == 0.0)
        np.testing.assert_allclose(g.numpy()[m], tg.numpy()[m], rtol=1e-4, atol=1e-6)


def _fit_and_check(model, x, y, jit_compile=False):
    masks = tfprune.get_masks(model)
    before = [t.variable.numpy().copy() for t in tfprune.prunable_weights(model)]
    compile_for_test(model, jit_compile=jit_compile)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [t.variable.numpy() for t in tfprune.prunable_weights(model)]
    moved = 0
    for m, b, a, m_after in zip(masks, before, after, tfprune.get_masks(model)):
        np.testing.assert_array_equal(m, m_after)  # masks unchanged by training
        np.testing.assert_array_equal(a[~m], b[~m])  # pruned entries got no update
        moved += int(np.sum(a[m] != b[m]))
    assert moved > 0  # kept weights did train
    plain = tfprune.strip(model)
    for t, m in zip(tfprune.prunable_weights(plain), masks):
        assert np.all(t.variable.numpy()[~m] == 0.0)  # the effective kernels are zero where pruned
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager-graph", "xla"])
def test_fit_keeps_pruned_weights_pruned_on_residual_cnn(jit_compile):
    """fit (with and without XLA) on Conv2D/Depthwise/Separable/Dense/BN/Add: pruned stay zero."""
    x, y = batch((8, 8, 3))
    _fit_and_check(wrapped_cnn(), x, y, jit_compile)


def test_fit_keeps_pruned_weights_pruned_on_subclassed_model():
    """The same for a subclassed model wrapped in place."""
    model = tfprune.wrap(subclassed_mlp())
    tfprune.apply_masks(model, random_masks(model))
    x, y = batch((10,))
    moved = [t.variable.numpy().copy() for t in tfprune.prunable_weights(model)]
    masks = tfprune.get_masks(model)
    compile_for_test(model)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for t, m, b in zip(tfprune.prunable_weights(model), masks, moved):
        np.testing.assert_array_equal(t.variable.numpy()[~m], b[~m])
    np.testing.assert_array_equal(np.concatenate([m.ravel() for m in masks]),
                                  np.concatenate([m.ravel() for m in tfprune.get_masks(model)]))


def test_custom_training_loop_under_tf_function():
    """A tf.function train step with GradientTape leaves pruned entries untouched."""
    model = wrapped_cnn()
    masks = tfprune.get_masks(model)
    before = [t.variable.numpy().copy() for t in tfprune.prunable_weights(model)]
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = batch((8, 8, 3))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(3):
        step(x, y)
    for t, m, b in zip(tfprune.prunable_weights(model), masks, before):
        np.testing.assert_array_equal(t.variable.numpy()[~m], b[~m])
        assert np.any(t.variable.numpy()[m] != b[m])


@keras.saving.register_keras_serializable(package="tfprune_tests")
class ConvBN(L.Layer):
    """A composite layer: a convolution followed by batch normalisation."""

    def __init__(self, filters=4, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = L.Conv2D(filters, 3, padding="same")
        self.bn = L.BatchNormalization()

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, x, training=None):
        return self.bn(self.conv(x), training=training)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def conv_bn_model():
    inputs = keras.Input((6, 6, 2))
    x = ConvBN(name="conv_bn")(inputs)
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))


def test_state_updates_of_the_wrapped_layer_are_applied():
    """Batch-norm statistics inside a wrapped composite layer update as in the masked twin."""
    wrapped = tfprune.wrap(conv_bn_model())
    tfprune.apply_masks(wrapped, random_masks(wrapped, 0.5))
    twin = masked_twin(conv_bn_model, wrapped)
    x, _ = batch((6, 6, 2))
    wrapped(x, training=True)
    twin(x, training=True)
    inner = wrapped.get_layer("masked_conv_bn").layer.bn
    assert not np.allclose(inner.moving_mean.numpy(), 0.0)
    np.testing.assert_allclose(inner.moving_mean.numpy(), twin.get_layer("conv_bn").bn.moving_mean.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(inner.moving_variance.numpy(), twin.get_layer("conv_bn").bn.moving_variance.numpy(), rtol=1e-5)


def test_activity_regulariser_losses_are_passed_on():
    """An activity regulariser of the wrapped layer reaches model.losses with the masked value."""
    inputs = keras.Input((5,))
    outputs = L.Dense(3, activity_regularizer=keras.regularizers.L1(0.5), name="d")(inputs)
    wrapped = tfprune.wrap(keras.Model(inputs, outputs))
    mask = np.zeros((5, 3), bool)
    mask[0] = True
    tfprune.apply_masks(wrapped, [mask])
    x, _ = batch((5,), n=4)
    out = wrapped(x)
    kernel = wrapped.get_layer("masked_d").layer.kernel.numpy() * mask
    expected = 0.5 * np.abs(x @ kernel).sum() / x.shape[0]
    np.testing.assert_allclose(out.numpy(), x @ kernel, rtol=1e-5, atol=1e-6)
    assert len(wrapped.losses) == 1
    np.testing.assert_allclose(float(wrapped.losses[0]), expected, rtol=1e-5)


def sequence_model(kind):
    inputs = keras.Input((5,), dtype="int32")
    x = L.Embedding(20, 6, name="embedding")(inputs)
    if kind == "lstm":
        x = L.LSTM(4, name="lstm")(x)
    else:
        x = L.MultiHeadAttention(2, 3, name="attention")(x, x)
        x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_embedding_recurrent_and_attention_kernels(kind):
    """Embedding, LSTM and MultiHeadAttention kernels are masked in the forward pass."""
    wrapped = tfprune.wrap(sequence_model(kind))
    kinds = [t.kind for t in tfprune.prunable_weights(wrapped)]
    expected = ["embedding", "rnn", "rnn_recurrent", "dense"] if kind == "lstm" else ["embedding"] + ["attention"] * 4 + ["dense"]
    assert kinds == expected
    tfprune.apply_masks(wrapped, random_masks(wrapped, 0.4))
    x = np.random.default_rng(0).integers(0, 20, (4, 5)).astype("int32")
    twin = masked_twin(lambda: sequence_model(kind), wrapped)
    np.testing.assert_allclose(wrapped(x), twin(x), rtol=1e-5, atol=1e-6)


def test_standalone_masked_layer_masks_its_kernel():
    """MaskedLayer(Dense) on its own: default masks the kernel only; zero mask leaves the bias."""
    layer = tfprune.MaskedLayer(L.Dense(4, bias_initializer="ones"))
    x = np.ones((2, 3), "float32")
    layer(x)
    assert layer.masked_weights == ["kernel"]
    layer.masks[0].assign(np.zeros((3, 4), "float32"))
    np.testing.assert_array_equal(layer(x).numpy(), np.ones((2, 4)))


def test_masking_an_unknown_weight_is_an_error():
    """A masked_weights path that the layer does not have raises and lists the weights."""
    with pytest.raises(ValueError, match="kernel"):
        tfprune.MaskedLayer(L.Dense(2), masked_weights=["nope"])(np.ones((1, 2), "float32"))


def test_enclosing_stateless_scope_reaches_the_wrapped_layer():
    """model.stateless_call with substituted values: biases and kernels inside a MaskedLayer
    read the substituted values (Keras stateless scopes do not nest by themselves)."""
    wrapped = tfprune.wrap(keras.Sequential([keras.Input((3,)), L.Dense(2, name="d")]))
    mask = np.array([[1, 0], [1, 1], [0, 1]], bool)
    tfprune.apply_masks(wrapped, [mask])
    kernel = np.arange(6, dtype="float32").reshape(3, 2)
    bias = np.array([10.0, 20.0], "float32")
    inner = wrapped.layers[0].layer
    values = {id(inner.kernel): kernel, id(inner.bias): bias}
    trainable = [values.get(id(v), v.numpy()) for v in wrapped.trainable_variables]
    non_trainable = [v.numpy() for v in wrapped.non_trainable_variables]
    x = np.ones((1, 3), "float32")
    out, _ = wrapped.stateless_call(trainable, non_trainable, x)
    np.testing.assert_allclose(out.numpy(), x @ (kernel * mask) + bias)
