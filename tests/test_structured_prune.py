"""The entwined prune/fine-tune loop: exact greedy removal, targets, minimum, and the log."""

import math

import keras
import numpy as np
import pytest

import tfprune
from tfprune import structured, training

DIGITS = tfprune.data.load("digits", "train")
TEST = tfprune.data.load("digits", "test")


def mlp(seed=0, hidden=(32, 16)):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="relu", bias_initializer="random_normal", name=f"h{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="out")(x))


def cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="out")(x))


def mlp_macs(h0, h1):
    return 64 * h0 + h0 * h1 + h1 * 10


def simulate_l1(model, step_fraction, target):
    """NumPy float64 re-derivation of the loop on the MLP, L1 criterion, raw scores, no fine-tuning."""
    w = [np.float64(model.get_layer(n).kernel.numpy()) for n in ("h0", "h1", "out")]
    b = [np.float64(model.get_layer(n).bias.numpy()) for n in ("h0", "h1", "out")]
    alive = [np.arange(w[0].shape[1]), np.arange(w[1].shape[1])]  # original indices still present
    history = [mlp_macs(len(alive[0]), len(alive[1]))]
    while history[-1] > target:
        k0 = w[0][:, alive[0]]
        k1 = w[1][np.ix_(alive[0], alive[1])]
        scores = [np.abs(k0).sum(0) + np.abs(b[0][alive[0]]), np.abs(k1).sum(0) + np.abs(b[1][alive[1]])]
        units = [(s, layer, c) for layer in (0, 1) for c, s in enumerate(scores[layer])]
        removable = sum(len(a) - 1 for a in alive)
        count = max(1, math.ceil(step_fraction * removable))
        left, chosen = [len(a) for a in alive], []
        for s, layer, c in sorted(units, key=lambda u: u[0]):
            if len(chosen) == count:
                break
            if left[layer] > 1:
                left[layer] -= 1
                chosen.append((layer, c))

        def after(n):
            drop = [{c for layer, c in chosen[:n] if layer == i} for i in (0, 1)]
            return [np.array([a for j, a in enumerate(alive[i]) if j not in drop[i]]) for i in (0, 1)]

        n = len(chosen)
        if mlp_macs(*map(len, after(n))) < target:
            n = next(m for m in range(1, n + 1) if mlp_macs(*map(len, after(m))) <= target)
        alive = after(n)
        history.append(mlp_macs(len(alive[0]), len(alive[1])))
    return alive, history


@pytest.mark.parametrize("target_macs, step_fraction", [(0.5, 0.1), (0.3, 0.25), (0.9, 0.05)])
def test_l1_loop_removes_exactly_the_greedy_lowest_units(target_macs, step_fraction):
    model = mlp()
    before = [v.numpy().copy() for v in model.weights]
    original = mlp_macs(32, 16)
    result = structured.prune(model, "l1", data=DIGITS, kept_macs=target_macs, step_fraction=step_fraction,
                              finetune_steps=0, final_finetune_epochs=0, normalize="none", verbose=0)
    alive, history = simulate_l1(model, step_fraction, target_macs * original)
    assert [s.macs for s in result.steps] == history
    # the kept units are the simulation's, with their weights copied unchanged
    kernel = model.get_layer("h0").kernel.numpy()
    np.testing.assert_array_equal(result.model.get_layer("h0").kernel.numpy(), kernel[:, alive[0]])
    np.testing.assert_array_equal(result.model.get_layer("h1").kernel.numpy(),
                                  model.get_layer("h1").kernel.numpy()[np.ix_(alive[0], alive[1])])
    assert result.steps[-1].macs <= target_macs * original < result.steps[-2].macs
    assert result.steps[-1].params == result.model.count_params() == (
        64 * len(alive[0]) + len(alive[0]) + len(alive[0]) * len(alive[1]) + len(alive[1]) + len(alive[1]) * 10 + 10)
    for old, new in zip(before, model.weights):  # the input model is not changed
        np.testing.assert_array_equal(old, new.numpy())


def test_group_mean_normalisation_ranks_units_relative_to_their_layer():
    """With each group divided by its mean, the first step takes from both layers, in the
    proportion of their relative scores, not only from the layer with the smaller raw norms."""
    model = mlp()
    seen = []
    structured.prune(model, "l1", data=DIGITS, kept_params=0.95, step_fraction=0.2, finetune_steps=0,
                     final_finetune_epochs=0, callback=seen.append, verbose=0)
    first = seen[1]
    k0 = np.abs(model.get_layer("h0").kernel.numpy()).sum(0) + np.abs(model.get_layer("h0").bias.numpy())
    k1 = np.abs(model.get_layer("h1").kernel.numpy()).sum(0) + np.abs(model.get_layer("h1").bias.numpy())
    relative = sorted([(s / k0.mean(), 0) for s in k0] + [(s / k1.mean(), 1) for s in k1])
    count = math.ceil(0.2 * (31 + 15))
    assert first.removed <= count
    layers = [layer for _, layer in relative[:first.removed]]
    h0 = 32 - layers.count(0)
    h1 = 16 - layers.count(1)
    assert first.macs == mlp_macs(h0, h1)


def test_cnn_with_batch_norm_reaches_the_target_and_log_matches_profile():
    model = cnn()
    training.fit(model, DIGITS, training.Recipe(epochs=3, learning_rate=0.05))
    macs, params = structured.counts(model)
    seen = []
    result = structured.prune(model, "singe", data=DIGITS, kept_macs=0.5, step_fraction=0.2, finetune_steps=10,
                              final_finetune_epochs=2, validation=TEST, criterion_options={"steps": 2},
                              samples=64, callback=seen.append, verbose=0)
    assert seen == result.steps and result.steps[0].macs == macs and result.steps[0].params == params
    assert [s.step for s in result.steps] == list(range(len(result.steps)))
    assert all(a.macs > b.macs for a, b in zip(result.steps, result.steps[1:]))
    assert result.steps[-1].macs <= 0.5 * macs
    assert structured.counts(result.model) == (result.steps[-1].macs, result.steps[-1].params)
    assert tfprune.profile(result.model, verbose=0).total.macs == result.steps[-1].macs
    assert all(s.val_accuracy is not None for s in result.steps)
    assert result.final_val_accuracy == pytest.approx(training.evaluate(result.model, TEST)[0])
    assert result.final_val_accuracy > 0.8  # half the MACs, still far above chance (0.1)


def test_residual_groups_go_together():
    model = tfprune.models.resnet_cifar(8, (8, 8, 3))
    x = np.random.default_rng(0).random((64, 8, 8, 3), dtype=np.float32)
    y = np.arange(64) % 10
    result = structured.prune(model, "taylor", data=(x, y), kept_params=0.6, step_fraction=0.2,
                              finetune_steps=0, final_finetune_epochs=0, samples=32, verbose=0)
    smaller = result.model
    for layer in smaller.layers:
        if isinstance(layer, keras.layers.Add):
            shapes = {tuple(t.shape[1:]) for t in layer.input}
            assert len(shapes) == 1  # every branch of a residual add kept the same channels
    assert smaller.count_params() <= 0.6 * model.count_params()
    assert smaller.predict(x, verbose=0).shape == (64, 10)


def test_minimum_counts_and_a_target_below_it():
    model = mlp()
    assert structured.minimum_counts(model) == (mlp_macs(1, 1), 64 + 1 + 1 + 1 + 10 + 10)
    with pytest.raises(ValueError, match=r"below the minimum reachable 75 \(2.8% of the original 2,720\)"):
        structured.prune(model, "l1", data=DIGITS, kept_macs=50, verbose=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of kept_macs and kept_params"),
        (dict(kept_macs=0.5, kept_params=0.5), "exactly one of kept_macs and kept_params"),
        (dict(kept_macs=0.5, step_fraction=0), r"step_fraction must be a number in \(0, 1\], got 0$"),
        (dict(kept_macs=0.5, normalize="max"), "normalize must be one of"),
        (dict(kept_macs=-1), "kept_macs must be a finite number > 0, got -1$"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        structured.prune(mlp(), "l1", data=DIGITS, verbose=0, **kwargs)


def test_unknown_criterion_and_subclassed_model():
    with pytest.raises(ValueError, match="unknown"):
        structured.prune(mlp(), "nope", data=DIGITS, kept_macs=0.5, verbose=0)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.a = keras.layers.Dense(8)
            self.b = keras.layers.Dense(10)

        def call(self, x):
            return self.b(self.a(keras.ops.reshape(x, (-1, 64))))

    net = Net()
    net(DIGITS[0][:2])
    with pytest.raises(ValueError, match="functional or Sequential"):
        structured.prune(net, "l1", data=DIGITS, kept_macs=0.5, verbose=0)
