"""SparseGPT on one Dense layer equals a NumPy float64 transcription of the paper's Algorithm 1
(written here without lazy batch updates: every column updates all the columns after it at
once), masks and updated weights; its reconstruction error ‖WX − ŴX‖² is below Wanda's and
magnitude's on the same calibration data; a singular Hessian without damping raises and restores."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.posttraining import SingularHessianError

L = keras.layers
WIDTH, OUTPUTS, TOKENS = 32, 12, 256


def one_layer(width=WIDTH, outputs=OUTPUTS):
    return keras.Sequential([keras.Input((width,)), L.Dense(outputs, name="dense")], name="one")


def correlated_inputs(tokens=TOKENS, width=WIDTH, seed=2):
    """Inputs with correlated features of different sizes: a Hessian far from diagonal."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(width, width)) * np.geomspace(0.2, 3.0, width)
    return (rng.normal(size=(tokens, width)) @ mixing / np.sqrt(width)).astype("float32")


def algorithm_1(w, x, density, block, damping, n_m=None):
    """The paper's Algorithm 1 in float64: H = 2XᵀX, damped by λ·mean(diag H); H⁻¹ as the upper
    Cholesky factor of its inverse; at the start of every `block` columns (every m for N:M) the
    mask of those columns keeps the largest w²/[H⁻¹]_cc²; each column's pruning error updates all
    the columns after it."""
    w = w.astype(np.float64).copy()
    rows, columns = w.shape
    h = 2.0 * x.T.astype(np.float64) @ x.astype(np.float64)
    h += damping * np.mean(np.diag(h)) * np.eye(columns)
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T
    mask = np.ones(w.shape, bool)
    step = n_m[1] if n_m else block
    for j in range(columns):
        if j % step == 0:
            scores = (w[:, j:j + step] / np.diag(hinv)[j:j + step]) ** 2
            if n_m:
                ranks = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable")
                mask[:, j:j + step] = ranks < n_m[0]
            else:
                keep = np.zeros(scores.size, bool)
                keep[np.argsort(-scores.ravel(), kind="stable")[:round(density * scores.size)]] = True
                mask[:, j:j + step] = keep.reshape(scores.shape)
        error = (~mask[:, j]) * w[:, j] / hinv[j, j]
        w[:, j:] -= np.outer(error, hinv[j, j:])
    return w * mask, mask


@pytest.mark.parametrize("pattern,block", [(None, 8), (None, 128), ("2:4", 8)])
def test_sparsegpt_equals_algorithm_1(pattern, block):
    model, x = one_layer(), correlated_inputs()
    kernel = model.layers[0].kernel.numpy()
    tfprune.posttraining.prune(model, "sparsegpt", data=x, sparsity=None if pattern else 0.5, pattern=pattern,
                               block_size=block, samples=TOKENS, batch_size=100, verbose=0)
    want, mask = algorithm_1(kernel.T, x, 0.5, block, 0.01, (2, 4) if pattern else None)
    got = model.layers[0].kernel.numpy().T
    np.testing.assert_array_equal(got != 0, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(got - kernel.T)[mask].max() > 1e-3  # the kept weights were updated
    assert (got == 0).sum() == OUTPUTS * WIDTH // 2


def reconstruction_error(dense, pruned, x):
    x = x.astype(np.float64)
    return float(np.sum((x @ dense.astype(np.float64) - x @ pruned.astype(np.float64)) ** 2))


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_sparsegpt_reconstructs_best(pattern):
    x = correlated_inputs()
    dense = one_layer().get_weights()
    errors = {}
    for criterion in ("magnitude", "wanda", "sparsegpt"):
        model = one_layer()
        model.set_weights(dense)
        tfprune.posttraining.prune(model, criterion, data=x, sparsity=None if pattern else 0.5, pattern=pattern,
                                   samples=TOKENS, verbose=0)
        errors[criterion] = reconstruction_error(dense[0], model.layers[0].kernel.numpy(), x)
    assert errors["sparsegpt"] < 0.9 * min(errors["wanda"], errors["magnitude"]), errors


def test_singular_hessian_without_damping_raises_and_restores():
    """d1 sees 40 tokens of 32 features (its Hessian is regular); d2 sees them as 64 features, a
    Hessian of rank <= 40: with damping=0 pruning d2 fails and d1, already pruned, is restored."""
    model = keras.Sequential([keras.Input((WIDTH,)), L.Dense(64, name="d1"), L.Dense(8, name="d2")])
    x = correlated_inputs(tokens=40)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(SingularHessianError, match="d2/kernel' from 40 calibration tokens over its 64"):
        tfprune.posttraining.prune(model, "sparsegpt", data=x, sparsity=0.5, damping=0, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    tfprune.posttraining.prune(model, "sparsegpt", data=x, sparsity=0.5, verbose=0)  # the default damping
    assert [np.mean(layer.kernel.numpy() == 0) for layer in model.layers] == [0.5, 0.5]


def test_inputs_never_seen_are_pruned_first():
    """An input that is zero on every calibration token (H_jj = 0) has its weights set to 0, within
    the budget; damping=0 is then fine for the rest."""
    x = correlated_inputs()
    x[:, 5] = 0.0
    model = one_layer()
    tfprune.posttraining.prune(model, "sparsegpt", data=x, sparsity=0.5, samples=TOKENS, damping=0, verbose=0)
    kernel = model.layers[0].kernel.numpy()
    assert np.all(kernel[5] == 0) and (kernel == 0).sum() == OUTPUTS * WIDTH // 2
