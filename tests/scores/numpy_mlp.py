"""A float64 NumPy re-derivation of a small MLP's loss gradient, for checking scorers."""

import keras
import numpy as np

L = keras.layers


def keras_mlp(weights, activation="relu", use_bias=True):
    """A Keras MLP with the given kernels (and biases), logits output."""
    kernels = weights[0::2] if use_bias else weights
    inputs = keras.Input((kernels[0].shape[0],))
    x = inputs
    for i, k in enumerate(kernels):
        last = i == len(kernels) - 1
        x = L.Dense(k.shape[1], activation=None if last else activation, use_bias=use_bias, name=f"d{i}")(x)
    model = keras.Model(inputs, x)
    model.set_weights([w.astype("float32") for w in weights])
    return model


def _act(z, activation):
    return np.maximum(z, 0) if activation == "relu" else np.tanh(z)


def _act_grad(z, activation):
    return (z > 0).astype(float) if activation == "relu" else 1 - np.tanh(z) ** 2


def grads(kernels, biases, x, y, activation="relu", temperature=1.0):
    """Gradient of the mean softmax cross-entropy of (x, y) w.r.t. each kernel, float64."""
    hs, zs = [x.astype(np.float64)], []
    for i, (k, b) in enumerate(zip(kernels, biases)):
        z = hs[-1] @ k + b
        zs.append(z)
        hs.append(z if i == len(kernels) - 1 else _act(z, activation))
    logits = hs[-1] / temperature
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(p.shape[1])[y]) / len(x) / temperature
    out = [None] * len(kernels)
    for i in reversed(range(len(kernels))):
        out[i] = hs[i].T @ dz
        if i:
            dz = (dz @ kernels[i].T) * _act_grad(zs[i - 1], activation)
    return out


def synflow_closed_form(kernels):
    """SynFlow scores of a bias-free linear chain on ones (float64):
    s_l[i, j] = a_{l-1}[i] |W_l[i, j]| b_l[j] with a_0 = 1, a_l = a_{l-1}|W_l|, b_L = 1, b_l = |W_{l+1}| b_{l+1}."""
    absolute = [np.abs(k) for k in kernels]
    a = [np.ones(kernels[0].shape[0])]
    for k in absolute:
        a.append(a[-1] @ k)
    b = [np.ones(kernels[-1].shape[1])]
    for k in reversed(absolute[1:]):
        b.insert(0, k @ b[0])
    return [np.outer(a[i], b[i]) * absolute[i] for i in range(len(kernels))]
