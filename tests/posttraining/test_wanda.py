"""Wanda on a Dense stack equals a NumPy float64 re-derivation: each layer's inputs recomputed from
the layers before it *as pruned*, scores |W_ij|·‖X_j‖₂, the top k of each output row kept (and the
2:4 variant: the top 2 of every 4 consecutive inputs of a row); kept weights unchanged."""

import keras
import numpy as np
import pytest

import tfprune

L = keras.layers
WIDTHS = (12, 24, 16, 8)  # input, then three Dense layers


def dense_stack():
    inputs = keras.Input((WIDTHS[0],))
    x = L.Dense(WIDTHS[1], activation="relu", name="d1")(inputs)
    x = L.Dense(WIDTHS[2], activation="relu", name="d2")(x)
    return keras.Model(inputs, L.Dense(WIDTHS[3], name="d3")(x), name="stack")


def calibration(n=96, seed=1):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.05, 5.0, WIDTHS[0])  # features of very different sizes: Wanda ≠ magnitude
    return (rng.normal(size=(n, WIDTHS[0])) * scales).astype("float32")


def numpy_wanda(kernels, biases, x, keep_of_row):
    """Pruned kernels (in, out), layer by layer, each from the inputs of the pruned layers before it."""
    h, pruned = x.astype(np.float64), []
    for i, (kernel, bias) in enumerate(zip(kernels, biases)):
        w = kernel.T.astype(np.float64)  # (out, in): the papers' W
        keep = keep_of_row(np.abs(w) * np.linalg.norm(h, axis=0))
        pruned.append((w * keep).T)
        h = h @ pruned[-1] + bias
        if i < len(kernels) - 1:
            h = np.maximum(h, 0.0)
    return pruned


def top_k_per_row(k):
    def keep(scores):
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out = np.zeros(scores.shape, bool)
        np.put_along_axis(out, order, True, axis=1)
        return out
    return keep


def two_of_four(scores):
    groups = scores.reshape(scores.shape[0], -1, 4)
    ranks = np.argsort(np.argsort(-groups, axis=-1, kind="stable"), axis=-1)
    return (ranks < 2).reshape(scores.shape)


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_wanda_equals_numpy_rederivation(pattern):
    model, x = dense_stack(), calibration()
    dense = [layer.get_weights() for layer in model.layers[1:]]
    tfprune.posttraining.prune(model, "wanda", data=x, sparsity=0.5 if pattern is None else None, pattern=pattern,
                               verbose=0)
    rule = two_of_four if pattern else None
    expected = numpy_wanda([k for k, _ in dense], [b for _, b in dense], x,
                           rule or (lambda s: top_k_per_row(s.shape[1] // 2)(s)))
    for layer, (kernel, bias), want in zip(model.layers[1:], dense, expected):
        got = layer.kernel.numpy()
        np.testing.assert_array_equal(got != 0, want != 0, err_msg=layer.name)
        np.testing.assert_array_equal(got[got != 0], kernel[got != 0])  # kept weights unchanged
        np.testing.assert_array_equal(layer.bias.numpy(), bias)
        assert np.all((got == 0).sum(axis=0) == kernel.shape[0] // 2)  # every output row: exactly half


def test_wanda_is_not_magnitude_and_ranks_within_rows():
    """With input features of very different sizes Wanda's masks differ from magnitude's; 30 %
    sparsity of 12 inputs keeps round(8.4) = 8 of every row."""
    x = calibration()
    wanda, magnitude = dense_stack(), dense_stack()
    magnitude.set_weights(wanda.get_weights())
    tfprune.posttraining.prune(wanda, "wanda", data=x, sparsity=0.3, verbose=0)
    tfprune.posttraining.prune(magnitude, "magnitude", sparsity=0.3, verbose=0)
    first = wanda.get_layer("d1").kernel.numpy()
    assert np.all((first != 0).sum(axis=0) == 8)
    assert not np.array_equal(first != 0, magnitude.get_layer("d1").kernel.numpy() != 0)
    # magnitude ranks the whole layer: exactly kept_count(0.7, 288) = 202 weights kept, rows uneven
    kept = magnitude.get_layer("d1").kernel.numpy() != 0
    assert kept.sum() == 202 and len(set(kept.sum(axis=0))) > 1


def test_wanda_reads_a_dataset_and_pairs_as_fit_does():
    import tensorflow as tf

    x = calibration(n=40)
    reference = dense_stack()
    weights = reference.get_weights()
    tfprune.posttraining.prune(reference, "wanda", data=x, sparsity=0.5, verbose=0)
    for data in [(x, np.zeros(40)), tf.data.Dataset.from_tensor_slices((x, np.zeros(40))).batch(7)]:
        model = dense_stack()
        model.set_weights(weights)
        tfprune.posttraining.prune(model, "wanda", data=data, sparsity=0.5, samples=40, verbose=0)
        for a, b in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_policy_and_wrapped_model_then_strip():
    """Only the layers the policy names are pruned; in a wrapped model the masks are written too,
    and strip gives a plain model computing what the wrapped one computes."""
    x = calibration()
    model = dense_stack()
    wrapped = tfprune.wrap(model)
    tfprune.posttraining.prune(wrapped, "wanda", data=x, sparsity=0.5, verbose=0,
                               policy=tfprune.policies.ExcludeLayers(names=["d3"]))
    masks = tfprune.get_masks(wrapped)
    assert [m.mean() for m in masks] == [0.5, 0.5, 1.0]
    stripped = tfprune.strip(wrapped)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    assert np.mean(stripped.get_layer("d1").kernel.numpy() == 0) == 0.5


class Reversed(keras.Model):
    """A subclassed stack whose layers are created in the reverse of the order it calls them."""

    def __init__(self):
        super().__init__(name="reversed")
        self.d3 = L.Dense(WIDTHS[3], name="d3")
        self.d2 = L.Dense(WIDTHS[2], activation="relu", name="d2")
        self.d1 = L.Dense(WIDTHS[1], activation="relu", name="d1")

    def call(self, x):
        return self.d3(self.d2(self.d1(x)))


def test_subclassed_model_is_pruned_in_call_order():
    """Each layer's inputs come from the layers the model calls before it, pruned, whatever the
    order the layers were created in."""
    model, x = Reversed(), calibration()
    model(x[:1])
    layers = [model.d1, model.d2, model.d3]
    dense = [layer.get_weights() for layer in layers]
    tfprune.posttraining.prune(model, "wanda", data=x, sparsity=0.5, verbose=0)
    expected = numpy_wanda([k for k, _ in dense], [b for _, b in dense], x, lambda s: top_k_per_row(s.shape[1] // 2)(s))
    for layer, want in zip(layers, expected):
        np.testing.assert_array_equal(layer.kernel.numpy() != 0, want != 0, err_msg=layer.name)
