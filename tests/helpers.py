"""Small models and batches shared by the tests."""

import keras
import numpy as np

L = keras.layers


def residual_cnn(num_classes=3):
    """A functional CNN with Conv2D, BatchNormalization, DepthwiseConv2D, SeparableConv2D, a
    residual Add and Dense layers."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    y = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    y = L.SeparableConv2D(8, 3, padding="same", name="separable")(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(inputs, L.Dense(num_classes, name="logits")(x), name="residual_cnn")


@keras.saving.register_keras_serializable(package="tfprune_tests")
class SubclassedMLP(keras.Model):
    """A subclassed model with layers in attributes, in a list, and a nested Sequential."""

    def __init__(self, num_classes=3, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.first = L.Dense(16, activation="relu")
        self.blocks = [L.Dense(16, activation="relu"), L.Dense(12, activation="relu")]
        self.head = keras.Sequential([L.Dense(num_classes)])

    def call(self, x):
        x = self.first(L.Flatten()(x) if len(x.shape) > 2 else x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def subclassed_mlp(num_classes=3, features=10):
    model = SubclassedMLP(num_classes)
    model(np.zeros((1, features), "float32"))
    return model


def batch(shape, num_classes=3, n=32, seed=0):
    """A random float32 batch of inputs and integer labels."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype("float32"), rng.integers(0, num_classes, n)


def random_masks(model, density=0.3, seed=0):
    """Random boolean masks for every prunable weight of a wrapped model (each keeps >= 1)."""
    import tfprune

    rng = np.random.default_rng(seed)
    out = []
    for t in tfprune.prunable_weights(model):
        m = rng.random(t.shape) < density
        m.flat[0] = True
        out.append(m)
    return out


def compile_for_test(model, jit_compile=False, optimizer="adam"):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def mlp64():
    """Dense(64 → 32, relu) → Dense(10), layers named ``hidden`` and ``logits``."""
    return keras.Sequential([keras.Input((64,)), L.Dense(32, activation="relu", name="hidden"),
                             L.Dense(10, name="logits")], name="mlp")


def snapshot(model):
    """Copies of every variable's value."""
    return [v.numpy().copy() for v in model.variables]


def assert_unchanged(model, before):
    """Every variable of ``model`` is bit-identical to ``before`` (from :func:`snapshot`)."""
    after = snapshot(model)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)  # NaN and inf compare equal to themselves here


def zeroed_copy(model, zeros):
    """A copy of ``model`` with ``{variable path: (axis, indices)}`` entries set to zero: the reference
    a structurally pruned model must equal (its consumers ignore the removed channels)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    paths = {v.path: c for v, c in zip(model.weights, copy.weights)}
    for path, (axis, indices) in zeros.items():
        target = paths[path]
        value = target.numpy()
        index = [slice(None)] * value.ndim
        index[axis] = list(indices)
        value[tuple(index)] = 0
        target.assign(value)
    return copy


def assert_same_outputs(a, b, x):
    """``a(x)`` equals ``b(x)`` in inference mode, to 1e-5 relative to the largest output."""
    want = np.asarray(b(x, training=False))
    got = np.asarray(a(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


def assert_equal_but_rounding(got, expected, rtol=1e-5):
    """Score tensors equal up to float32 rounding: a scoring step runs eagerly in its first round and
    compiled afterwards (:class:`tfprune.autodiff.gradients.Step`), which may sum in another order.
    GraSP needs ``rtol=2e-4``: with T = 200 its Hessian term is a difference of nearly equal sums."""
    for g, e in zip(got, expected, strict=True):
        e = np.asarray(e)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * 0.1 * np.abs(e).max())


def pruned_digits_cnn():
    """The QAT recipe of tests/test_qat.py and benchmarks/qat_digits.py: embedded 8×8 digits, Conv2D(16, 3)
    → Dense(32) → Dense(10), magnitude 80 % per layer, 5 epochs Adam 1e-2 (seed 0).

    Returns:
        ``(pruned, loss, (x, y), (x_test, y_test))``.
    """
    import tfprune

    x, y = tfprune.data.load("digits", "train")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), L.Reshape((8, 8, 1)), L.Conv2D(16, 3, activation="relu"),
                              L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10)])
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.8, scope="local", verbose=0, seed=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pruned.compile(keras.optimizers.Adam(1e-2), loss)
    pruned.fit(x, y, epochs=5, batch_size=64, verbose=0)
    return pruned, loss, (x, y), tfprune.data.load("digits", "test")
