"""Reference networks: exact kernel counts worked out by hand, layer counts, shapes, initialisers."""

import math

import keras
import numpy as np
import pytest

import tfprune
from tfprune.experiments import models

TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


@pytest.fixture(scope="module")
def vgg16_bn():
    return models.vgg(16)


@pytest.fixture(scope="module")
def resnet18():
    return models.resnet18()


def kernels(model):
    """(number of prunable layers, number of kernel weights, kinds in model order)."""
    targets = tfprune.prunable_weights(model)
    return len(targets), sum(t.size for t in targets), [t.kind for t in targets]


def logits(model, n=2):
    return model(np.zeros((n, *model.input_shape[1:]), "float32"))


def layer_types(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


def cifar_resnet_kernels(depth, classes=10):
    """Kernel weights of the CIFAR ResNet-(6n+2), 16/32/64 filters, 1x1 shortcuts at stages 2, 3."""
    n = (depth - 2) // 6
    stem = 3 * 3 * 3 * 16
    stage1 = 2 * n * (3 * 3 * 16 * 16)
    stage2 = 3 * 3 * 16 * 32 + (2 * n - 1) * (3 * 3 * 32 * 32)
    stage3 = 3 * 3 * 32 * 64 + (2 * n - 1) * (3 * 3 * 64 * 64)
    shortcuts = 16 * 32 + 32 * 64
    return stem + stage1 + stage2 + stage3 + shortcuts + 64 * classes


# --- LeNets and the small conv model -------------------------------------------------------------


def test_lenet_300_100_mnist():
    model = models.lenet_300_100()
    assert kernels(model) == (3, 784 * 300 + 300 * 100 + 100 * 10, ["dense"] * 3)
    assert 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    biases = tfprune.prunable_weights(model, include_bias=True)
    assert sum(t.size for t in biases if t.kind == "bias") == 300 + 100 + 10 == 410
    assert tuple(logits(model, 3).shape) == (3, 10)


def test_lenet_300_100_digits():
    """The 8x8 digits data set: the first layer shrinks to 64 inputs."""
    model = models.lenet_300_100((8, 8, 1), 10)
    assert kernels(model)[:2] == (3, 8 * 8 * 300 + 300 * 100 + 100 * 10)
    assert tuple(logits(model).shape) == (2, 10)


def test_lenet5_caffe_mnist():
    """28 -> conv 24 -> pool 12 -> conv 8 -> pool 4: the first Dense layer sees 4*4*50 = 800."""
    model = models.lenet5_caffe()
    count = 5 * 5 * 1 * 20 + 5 * 5 * 20 * 50 + 4 * 4 * 50 * 500 + 500 * 10
    assert count == 430_500
    assert kernels(model) == (4, count, ["conv", "conv", "dense", "dense"])
    assert model.count_params() == count + 20 + 50 + 500 + 10 == 431_080
    assert tuple(logits(model).shape) == (2, 10)


def test_lenet5_caffe_activations():
    """No activation after the convolutions unless asked; the parameters are the same either way."""
    plain, relu = models.lenet5_caffe(), models.lenet5_caffe(conv_activation="relu")
    assert plain.get_layer("conv1").activation is keras.activations.linear
    assert relu.get_layer("conv1").activation is keras.activations.relu
    assert plain.get_layer("fc1").activation is keras.activations.relu
    assert plain.get_layer("fc").activation is keras.activations.linear
    assert relu.count_params() == plain.count_params()


def test_lenet5_caffe_input_size():
    """16x16 is the smallest input: 16 -> conv 12 -> pool 6 -> conv 2 -> pool 1."""
    model = models.lenet5_caffe((16, 16, 1), 3)
    assert kernels(model)[1] == 5 * 5 * 20 + 5 * 5 * 20 * 50 + 1 * 1 * 50 * 500 + 500 * 3
    assert tuple(logits(model).shape) == (2, 3)
    with pytest.raises(ValueError, match="at least 16x16"):
        models.lenet5_caffe((8, 8, 1))
    with pytest.raises(ValueError, match="height, width, channels"):
        models.lenet5_caffe((784,))


def test_conv():
    """Two same-padded 3x3 convolutions and no pooling: the Dense layer sees 32*32*width."""
    model = models.conv()
    count = 3 * 3 * 3 * 32 + 3 * 3 * 32 * 32 + 32 * 32 * 32 * 10
    assert count == 337_760
    assert kernels(model) == (3, count, ["conv", "conv", "dense"])
    assert all(layer.use_bias for layer in layer_types(model, keras.layers.Conv2D))
    small = models.conv((8, 8, 1), 4, width=16)
    assert kernels(small)[1] == 3 * 3 * 1 * 16 + 3 * 3 * 16 * 16 + 8 * 8 * 16 * 4
    assert tuple(logits(small).shape) == (2, 4)


# --- VGG -----------------------------------------------------------------------------------------


def test_vgg16_counts(vgg16_bn):
    """13 convolutions of 3x3 kernels in VGG configuration D, then Dense 512 -> 10."""
    convs = (3 * 64 + 64 * 64                    # 64, 64
             + 64 * 128 + 128 * 128              # 128, 128
             + 128 * 256 + 2 * 256 * 256         # 256, 256, 256
             + 256 * 512 + 2 * 512 * 512         # 512, 512, 512
             + 3 * 512 * 512)                    # 512, 512, 512
    count = 3 * 3 * convs + 512 * 10
    assert count == 14_715_584
    assert kernels(vgg16_bn) == (14, count, ["conv"] * 13 + ["dense"])
    # SynFlow's maximal compression of VGG-16 is N / K = 10^6.02 with K = 14 prunable layers.
    assert round(math.log10(count / 14), 2) == 6.02


@pytest.mark.parametrize("depth, layers, count", [
    (11, 9, 9 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512) + 5120),
    (13, 11, 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 256 * 256 + 256 * 512
                  + 3 * 512 * 512) + 5120),
    (19, 17, 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 3 * 256 * 256 + 256 * 512
                  + 7 * 512 * 512) + 5120),
])
def test_vgg_depths(depth, layers, count):
    model = models.vgg(depth, batch_norm=False)
    assert kernels(model)[:2] == (layers, count)
    assert model.name == f"vgg{depth}"


def test_vgg_batch_norm(vgg16_bn):
    """Conv-BN-ReLU with bias-free convolutions, or Conv-ReLU with biases."""
    assert vgg16_bn.name == "vgg16_bn"
    assert len(layer_types(vgg16_bn, keras.layers.BatchNormalization)) == 13
    assert not any(layer.use_bias for layer in layer_types(vgg16_bn, keras.layers.Conv2D))
    assert vgg16_bn.get_layer("fc").use_bias
    plain = models.vgg(11, batch_norm=False)
    assert not layer_types(plain, keras.layers.BatchNormalization)
    assert all(layer.use_bias for layer in layer_types(plain, keras.layers.Conv2D))


def test_vgg_shapes(vgg16_bn):
    assert vgg16_bn.get_layer("avgpool").output.shape[1:] == (1, 1, 512)
    assert tuple(logits(vgg16_bn).shape) == (2, 10)
    cifar100 = models.vgg(11, num_classes=100)
    assert cifar100.get_layer("fc").kernel.shape == (512, 100)
    assert tuple(logits(cifar100).shape) == (2, 100)
    tiny = models.vgg(11, input_shape=(64, 64, 3), num_classes=200)  # 2x2 after the average pool
    assert tiny.get_layer("fc").kernel.shape == (2 * 2 * 512, 200)
    with pytest.raises(ValueError, match="at least 32x32"):
        models.vgg(11, input_shape=(28, 28, 1))


def test_vgg_bad_depth():
    with pytest.raises(ValueError, match=r"one of \[11, 13, 16, 19\], got 15"):
        models.vgg(15)


# --- ResNets -------------------------------------------------------------------------------------


def test_resnet20_counts():
    model = models.resnet_cifar(20)
    count = cifar_resnet_kernels(20)
    assert count == 268_336 + 2_560 == 270_896  # 3x3 convs and Dense + the two 1x1 shortcuts
    # 1 stem + 18 block convolutions + 2 shortcuts + 1 Dense
    assert kernels(model) == (22, count, ["conv"] * 21 + ["dense"])
    shortcuts = [t for t in tfprune.prunable_weights(model) if t.shape[:2] == (1, 1)]
    assert [(t.layer.name, t.size) for t in shortcuts] == [("block2_1_shortcut", 16 * 32),
                                                            ("block3_1_shortcut", 32 * 64)]
    assert tuple(logits(model).shape) == (2, 10)


@pytest.mark.parametrize("depth", [8, 32, 56])
def test_resnet_cifar_depths(depth):
    model = models.resnet_cifar(depth, num_classes=100)
    assert kernels(model)[:2] == (depth + 2, cifar_resnet_kernels(depth, 100))
    assert model.name == f"resnet{depth}"


def test_resnet_batch_norm_and_names():
    """Every convolution is followed by BN and has no bias; the Dense head has one."""
    model = models.resnet_cifar(20)
    convs = layer_types(model, keras.layers.Conv2D)
    assert len(layer_types(model, keras.layers.BatchNormalization)) == len(convs) == 21
    assert not any(layer.use_bias for layer in convs)
    for name in ("conv1", "conv1_bn", "block1_1_conv1", "block2_1_conv2_bn", "block3_3_add", "fc"):
        model.get_layer(name)
    assert model.get_layer("fc").use_bias


@pytest.mark.parametrize("depth", [2, 19, 21, 20.0, "20"])
def test_resnet_cifar_bad_depth(depth):
    with pytest.raises(ValueError, match=r"6n \+ 2"):
        models.resnet_cifar(depth)


def test_resnet18(resnet18):
    stem = 3 * 3 * 3 * 64                                          #      1,728
    stage1 = 4 * (3 * 3 * 64 * 64)                                 #    147,456
    stage2 = 3 * 3 * 64 * 128 + 3 * (3 * 3 * 128 * 128)            #    516,096
    stage3 = 3 * 3 * 128 * 256 + 3 * (3 * 3 * 256 * 256)           #  2,064,384
    stage4 = 3 * 3 * 256 * 512 + 3 * (3 * 3 * 512 * 512)           #  8,257,536
    shortcuts = 64 * 128 + 128 * 256 + 256 * 512                   #    172,032
    count = stem + stage1 + stage2 + stage3 + stage4 + shortcuts + 512 * 10
    assert count == 11_164_352
    assert kernels(resnet18) == (21, count, ["conv"] * 20 + ["dense"])
    bn = 2 * (64 + 4 * 64 + 4 * 128 + 4 * 256 + 4 * 512 + 128 + 256 + 512)  # γ, β of 20 BN layers
    trainable = sum(int(np.prod(w.shape)) for w in resnet18.trainable_weights)
    assert trainable == count + bn + 10 == 11_173_962
    assert tuple(logits(resnet18).shape) == (2, 10)


# --- Initialisers --------------------------------------------------------------------------------


def check_truncated_normal(kernel, fan_in, scale):
    """Keras's variance scaling draws N(0, s^2) truncated to +-2s, s = sqrt(scale/fan_in)/0.8796,
    so that the kept values have std sqrt(scale / fan_in)."""
    values = keras.ops.convert_to_numpy(kernel)
    std = math.sqrt(scale / fan_in)
    assert abs(values.std() / std - 1) < 0.1
    assert abs(values.mean()) < 0.1 * std
    assert np.abs(values).max() <= 2 * std / TRUNCATED_NORMAL_STD * (1 + 1e-6)


def check_untruncated_normal(kernel, fan_in, scale):
    """PyTorch's kaiming_normal_: N(0, scale / fan_in) with nothing cut off, so among ~10^6 draws
    the largest |w| is beyond 4 standard deviations (P(all within 2.5σ) = (1 - 0.0124)^n)."""
    values = keras.ops.convert_to_numpy(kernel)
    std = math.sqrt(scale / fan_in)
    assert abs(values.std() / std - 1) < 0.02
    assert abs(values.mean()) < 0.02 * std
    assert np.abs(values).max() > 2.5 * std


def test_lottery_networks_use_untruncated_kaiming_normal(vgg16_bn):
    for name in ("conv9", "conv10", "conv11", "conv12", "conv13"):  # the five 512→512 convolutions
        check_untruncated_normal(vgg16_bn.get_layer(name).kernel, 3 * 3 * 512, 2.0)
    check_untruncated_normal(models.resnet_cifar(20).get_layer("block3_3_conv2").kernel, 3 * 3 * 64, 2.0)
    fc = keras.ops.convert_to_numpy(vgg16_bn.get_layer("fc").kernel)
    assert abs(fc.std() / math.sqrt(2 / 512) - 1) < 0.1
    same_shape = [keras.ops.convert_to_numpy(vgg16_bn.get_layer(f"conv{i}").kernel) for i in (12, 13)]
    assert not np.allclose(*same_shape)  # one initialiser per layer, not one shared draw


def test_he_normal(resnet18):
    check_truncated_normal(resnet18.get_layer("block4_2_conv2").kernel, 3 * 3 * 512, 2.0)
    check_truncated_normal(models.vgg(11, width=0.25, kernel_initializer="he_normal").get_layer("conv8").kernel,
                           3 * 3 * 128, 2.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_magnitude_critical_compression_of_vgg16_is_the_synflow_papers(seed):
    """Global magnitude pruning of VGG-16 (CIFAR-100 shapes) at 10^0, 10^0.25, … keeps every layer
    alive up to 10^2.75 and empties one at 10^3.0, as in Tanaka et al. (2020), Fig. 1."""
    keras.utils.set_random_seed(seed)
    model = models.vgg(16, num_classes=100)
    targets = tfprune.prunable_weights(model)
    scores = tfprune.scores.magnitude(model, targets)
    grid = 10 ** np.arange(0, 4.01, 0.25)
    collapsed = [bool(tfprune.masks.collapsed_layers(tfprune.masks.from_scores(scores, compression=c))) for c in grid]
    assert math.log10(tfprune.experiments.collapse.critical_compression(grid, collapsed)) == pytest.approx(2.75)


def test_variance_scaling():
    check_truncated_normal(models.lenet_300_100().get_layer("fc1").kernel, 784, 1.0)
    check_truncated_normal(models.lenet5_caffe().get_layer("fc1").kernel, 800, 1.0)


def test_custom_initializer_and_name():
    model = models.resnet_cifar(8, kernel_initializer=keras.initializers.Constant(0.5), name="tiny")
    assert model.name == "tiny"
    for t in tfprune.prunable_weights(model):
        assert np.all(keras.ops.convert_to_numpy(t.variable) == 0.5)
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("fc").bias))


def test_vgg_width_scales_every_convolution():
    model = models.vgg(11, width=0.25)
    plan = [16, 32, 64, 64, 128, 128, 128, 128]  # VGG-11's 64 … 512 filters, quartered
    kernels = [layer.kernel.shape for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [k[-1] for k in kernels] == plan
    expected = 9 * sum(cin * cout for cin, cout in zip([3] + plan[:-1], plan)) + 128 * 10
    assert sum(int(np.prod(k)) for k in kernels) + 128 * 10 == expected == 577_712
    assert model.name == "vgg11_bn_w0.25"
    with pytest.raises(ValueError, match="width must be > 0"):
        models.vgg(11, width=0)


def test_build_by_name():
    assert models.build("resnet20").count_params() == models.resnet_cifar(20).count_params()
    model = models.build("vgg16", (32, 32, 3), 100)
    assert model.output_shape == (None, 100) and model.name == "vgg16_bn"
    assert models.build("lenet_300_100", (8, 8, 1)).input_shape == (None, 8, 8, 1)
    assert {"vgg11_w0.25", "resnet56", "lenet5_caffe", "conv", "resnet18"} <= set(models.available())
    with pytest.raises(ValueError, match="unknown model 'resnet7'; known models: conv, "):
        models.build("resnet7")
