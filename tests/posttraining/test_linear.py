"""A Dense/EinsumDense kernel as the papers' matrix W (outputs × inputs): X Wᵀ gives the layer's
outputs (up to their order), and writing W back gives the kernel."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.posttraining.linear import Linear, is_linear

L = keras.layers
EQUATIONS = {  # equation, input shape (without batch), output shape, width
    "gpt2 query": ("abc,cde->abde", (5, 8), (5, 2, 4), 8),
    "gpt2 attention output": ("abcd,cde->abe", (5, 2, 4), (5, 8), 8),
    "llama attention output": ("bquh,uhm->bqm", (5, 2, 4), (5, 6), 8),
    "gemma query": ("btd,ndh->btnh", (5, 8), (5, 2, 3), 8),
    "ellipsis": ("...b,bc->...c", (5, 8), (6,), 8),
}


@pytest.mark.parametrize("name", EQUATIONS)
def test_einsum_kernel_as_matrix(name):
    equation, shape, output_shape, width = EQUATIONS[name]
    layer = L.EinsumDense(equation, output_shape=output_shape)
    x = np.random.default_rng(0).normal(size=(3,) + shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x)).astype(np.float64)
    target = next(t for t in tfprune.prunable_weights(keras.Sequential([keras.Input(shape), layer])) if is_linear(t))
    linear = Linear(target)
    assert linear.width == width and linear.rows * width == int(np.prod(target.shape))
    outputs = linear.features(x) @ linear.matrix().T
    np.testing.assert_allclose(np.sort(outputs.ravel()), np.sort(y.ravel()), rtol=1e-5, atol=1e-5)
    kernel = target.variable.numpy()
    linear.write(linear.matrix() * 2.0, None)
    np.testing.assert_allclose(target.variable.numpy(), 2.0 * kernel, rtol=1e-6)


def test_dense_kernel_is_w_transposed():
    layer = L.Dense(3)
    model = keras.Sequential([keras.Input((4,)), layer])
    linear = Linear(tfprune.prunable_weights(model)[0])
    np.testing.assert_array_equal(linear.matrix(), layer.kernel.numpy().T)
    assert (linear.width, linear.rows, linear.group_width) == (4, 3, 4)
