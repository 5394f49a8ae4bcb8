"""The TF-MOT bridge: tfprune's masks inside TF-MOT's own wrappers, for tf_keras models."""

import keras
import numpy as np
import pytest

tfmot = pytest.importorskip("tensorflow_model_optimization")
tf_keras = pytest.importorskip("tf_keras")

import tfprune  # noqa: E402
from tfprune import tfmot as bridge  # noqa: E402

L2 = tf_keras.layers
RNG = np.random.default_rng(0)
X = RNG.random((64, 28, 28, 1)).astype("float32")
Y = np.arange(64) % 10


def tf_keras_lenet():
    tf_keras.utils.set_random_seed(0)
    return tf_keras.Sequential([L2.InputLayer(input_shape=(28, 28, 1)), L2.Flatten(name="flatten"),
                                L2.Dense(300, activation="relu", name="fc1"), L2.Dense(100, activation="relu", name="fc2"),
                                L2.Dense(10, name="fc3")])


def keras3_lenet():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(name="flatten"),
                             keras.layers.Dense(300, activation="relu", name="fc1"),
                             keras.layers.Dense(100, activation="relu", name="fc2"), keras.layers.Dense(10, name="fc3")])


def tf_keras_cnn():
    tf_keras.utils.set_random_seed(0)
    inputs = L2.Input((28, 28, 1))
    x = L2.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = L2.BatchNormalization(name="bn")(x)
    x = L2.MaxPooling2D(name="pool")(x)
    x = L2.Flatten(name="flatten")(x)
    return tf_keras.Model(inputs, L2.Dense(10, name="fc")(x))


def keras3_cnn():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn", momentum=0.99, epsilon=1e-3)(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))


def expected_masks(tf_model, keras3_model, method, **kwargs):
    """Masks tfprune computes on a hand-built Keras 3 copy with the same weights."""
    for layer in tf_model.layers:
        if layer.weights:
            keras3_model.get_layer(layer.name).set_weights(layer.get_weights())
    pruned = tfprune.prune_at_init(keras3_model, method, verbose=0, **kwargs)
    return {(t.layer.name, t.variable.name): m for t, m in zip(tfprune.prunable_weights(pruned), tfprune.get_masks(pruned))}


@pytest.mark.parametrize("build", [(tf_keras_lenet, keras3_lenet), (tf_keras_cnn, keras3_cnn)], ids=["lenet", "cnn"])
@pytest.mark.parametrize("method", ["snip", "synflow"])
def test_wrapper_masks_equal_tfprune_masks_and_survive_fit(build, method):
    tf_model = build[0]()
    expected = expected_masks(tf_model, build[1](), method, sparsity=0.9, data=(X[:20], Y[:20]), rounds=5)
    wrapped = bridge.prune_at_init(tf_model, method, sparsity=0.9, data=(X[:20], Y[:20]), rounds=5, verbose=0)
    got = bridge.masks_of(wrapped)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    wrapped.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(X, Y, epochs=2, batch_size=16, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    after = bridge.masks_of(wrapped)
    for key in expected:
        np.testing.assert_array_equal(after[key], expected[key])
    plain = tfmot.sparsity.keras.strip_pruning(wrapped)
    for (layer, name), mask in expected.items():
        kernel = plain.get_layer(layer).kernel.numpy()
        assert np.all(kernel[~mask] == 0) and np.count_nonzero(kernel[mask]) == mask.sum()


def test_saved_model_loads_under_prune_scope(tmp_path):
    wrapped = bridge.prune_at_init(tf_keras_lenet(), "magnitude", sparsity=0.8, verbose=0)
    wrapped.save(tmp_path / "pruned.keras")
    with tfmot.sparsity.keras.prune_scope():
        loaded = tf_keras.models.load_model(tmp_path / "pruned.keras")
    for key, mask in bridge.masks_of(wrapped).items():
        np.testing.assert_array_equal(bridge.masks_of(loaded)[key], mask)
    schedule = loaded.get_layer("prune_low_magnitude_fc1").pruning_schedule
    assert isinstance(schedule, bridge.FixedMasks)
    assert (schedule.criterion, schedule.sparsity) == ("magnitude", pytest.approx(0.8))
    np.testing.assert_allclose(loaded.predict(X[:4], verbose=0), wrapped.predict(X[:4], verbose=0), rtol=1e-6)


def test_rescore_prunes_gradually_and_keeps_pruned_weights_pruned():
    wrapped = bridge.prune_at_init(tf_keras_lenet(), "snip", sparsity=0.5, data=(X[:20], Y[:20]), verbose=0)
    start = bridge.masks_of(wrapped)
    rescore = bridge.Rescore("snip", 0.9, data=(X[:20], Y[:20]), begin_epoch=1, end_epoch=3)
    wrapped.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(X, Y, epochs=4, batch_size=16, verbose=0,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), rescore])
    total = 784 * 300 + 300 * 100 + 100 * 10
    epochs, densities = zip(*rescore.history)
    assert epochs == (1, 2, 3)
    assert densities[0] > densities[1] > densities[2]
    assert round(densities[-1] * total) == tfprune.masks.kept_count(0.1, total)
    end = bridge.masks_of(wrapped)
    assert all(not (end[k] & ~start[k]).any() for k in start)


def test_layer_policy_skip_first_last_and_types():
    wrapped = bridge.prune_at_init(tf_keras_lenet(), "magnitude", sparsity=0.5, verbose=0,
                                   pruning_policy=bridge.LayerPolicy(skip_first=True, skip_last=True))
    assert sorted(layer for layer, _ in bridge.masks_of(wrapped)) == ["fc2"]
    assert bridge.masks_of(wrapped)[("fc2", "kernel")].mean() == 0.5
    only = bridge.prune_at_init(tf_keras_cnn(), "magnitude", sparsity=0.5, verbose=0,
                                pruning_policy=bridge.LayerPolicy(types=["Conv2D"]))
    assert list(bridge.masks_of(only)) == [("conv", "kernel")]
    with pytest.raises(ValueError, match="no layer"):
        bridge.prune_at_init(tf_keras_cnn(), "magnitude", sparsity=0.5, pruning_policy=bridge.LayerPolicy(types=["LSTM"]))


def xnnpack_model():
    tf_keras.utils.set_random_seed(0)
    inputs = L2.Input((16, 16, 3))
    x = L2.ZeroPadding2D(1)(inputs)
    x = L2.Conv2D(8, 3, strides=2, padding="valid", name="stem")(x)
    x = L2.Conv2D(16, 1, name="pointwise")(x)
    x = L2.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, L2.Dense(4, name="fc")(x))


def test_layer_policy_passes_through_tfmot_xnnpack_policy():
    base = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()
    reference = tfmot.sparsity.keras.prune_low_magnitude(xnnpack_model(), pruning_policy=base)
    expected = sorted(layer.layer.name for layer in reference.layers if type(layer).__name__ == "PruneLowMagnitude")
    wrapped = bridge.prune_at_init(xnnpack_model(), "magnitude", sparsity=0.5, verbose=0,
                                   pruning_policy=bridge.LayerPolicy(base=base))
    assert sorted({layer for layer, _ in bridge.masks_of(wrapped)}) == expected == ["pointwise"]
    with pytest.raises(ValueError, match="Conv2D 3x3"):
        bridge.prune_at_init(tf_keras_cnn(), "magnitude", sparsity=0.5, pruning_policy=bridge.LayerPolicy(base=base))


def test_wrong_path_errors_say_which_path_to_use():
    with pytest.raises(TypeError, match="Keras 3 model.*tfprune.prune_at_init"):
        bridge.prune_at_init(keras3_lenet(), "magnitude", sparsity=0.5)
    with pytest.raises(TypeError, match="got the tf_keras Sequential .*tf_keras models: use tfprune.tfmot"):
        tfprune.prune_at_init(tf_keras_lenet(), "magnitude", sparsity=0.5)
    wrapped = bridge.prune_at_init(tf_keras_lenet(), "magnitude", sparsity=0.5, verbose=0)
    with pytest.raises(ValueError, match="already wrapped by TF-MOT"):
        bridge.prune_at_init(wrapped, "magnitude", sparsity=0.5)


class Scale(L2.Layer):
    def call(self, x):
        return 2 * x


def test_unsupported_layers_are_named():
    inputs = L2.Input((8,))
    model = tf_keras.Model(inputs, L2.Dense(3)(Scale(name="my_scale")(inputs)))
    with pytest.raises(ValueError, match="Scale"):
        bridge.prune_at_init(model, "magnitude", sparsity=0.5)
