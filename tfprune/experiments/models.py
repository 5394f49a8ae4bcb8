"""The reference networks of the pruning-at-initialisation papers, as Keras 3 functional models.

LeNet-300-100 and LeNet-5-Caffe (SNIP, on MNIST), the small ``conv`` model of the SynFlow code,
the CIFAR VGG-11/13/16/19 and ResNet-20/32/44/56/110 of SynFlow's "lottery" models (after
open_lth), and the CIFAR ResNet-18. Every model outputs logits (no softmax).

Batch normalisation uses PyTorch's defaults (momentum 0.9 in Keras terms, epsilon 1e-5), as the
SynFlow and GraSP code does; convolutions followed by batch normalisation have no bias.

Initialisation follows each network's own code. The SynFlow "lottery" VGG and ResNet draw every
convolution and Dense kernel from PyTorch's ``kaiming_normal_``: N(0, 2/fan_in), *not truncated*
(:data:`KAIMING_NORMAL`). Keras's ``"he_normal"`` truncates at two standard deviations, which
matters for pruning by magnitude: it caps VGG-16's 512→512 kernels at |w| ≤ 0.047 instead of
about 0.10, and global magnitude pruning then empties those layers first (critical compression
10^1.25 instead of the SynFlow paper's 10^2.75; see docs/results.md, section 2).
"""

from __future__ import annotations

import keras

__all__ = ["KAIMING_NORMAL", "lenet_300_100", "lenet5_caffe", "conv", "vgg", "resnet_cifar", "resnet18", "build", "available"]

L = keras.layers

#: PyTorch's ``kaiming_normal_`` with its defaults (fan-in, gain √2): an untruncated N(0, 2/fan_in).
#: A config, not an instance, so that each layer gets its own initialiser and its own draws.
KAIMING_NORMAL = {"class_name": "VarianceScaling",
                  "config": {"scale": 2.0, "mode": "fan_in", "distribution": "untruncated_normal"}}

_VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512,
         512, 512],
}


def _check_image(input_shape, model, minimum=1):
    """Raises ValueError unless ``input_shape`` is (height, width, channels), both sides >= minimum."""
    if len(input_shape) != 3:
        raise ValueError(f"{model} needs an image input shape (height, width, channels), got {input_shape}")
    if min(input_shape[:2]) < minimum:
        raise ValueError(f"{model} needs inputs of at least {minimum}x{minimum} pixels, got {input_shape}")


def _batch_norm(x, name):
    return L.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _conv_bn(x, filters, kernel_size, strides, kernel_initializer, name, batch_norm=True):
    """A same-padded convolution, then batch normalisation (its name + ``_bn``) if asked."""
    x = L.Conv2D(filters, kernel_size, strides, padding="same", use_bias=not batch_norm,
                 kernel_initializer=kernel_initializer, name=name)(x)
    return _batch_norm(x, f"{name}_bn") if batch_norm else x


def _fc(x, num_classes, kernel_initializer):
    return L.Dense(num_classes, kernel_initializer=kernel_initializer, name="fc")(x)


def _basic_block(x, filters, strides, kernel_initializer, name):
    """Two 3x3 conv-BN layers around a shortcut: identity, or 1x1 conv + BN if the shape changes."""
    y = _conv_bn(x, filters, 3, strides, kernel_initializer, f"{name}_conv1")
    y = L.ReLU(name=f"{name}_relu1")(y)
    y = _conv_bn(y, filters, 3, 1, kernel_initializer, f"{name}_conv2")
    if strides != 1 or x.shape[-1] != filters:
        x = _conv_bn(x, filters, 1, strides, kernel_initializer, f"{name}_shortcut")
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))


def _resnet(input_shape, num_classes, stages, kernel_initializer, name):
    """A 3x3 conv-BN-ReLU stem, stages of basic blocks, global average pooling and a Dense head.

    ``stages`` is a list of ``(filters, blocks)``; every stage but the first starts with stride 2.
    """
    _check_image(input_shape, name)
    inputs = keras.Input(input_shape)
    x = L.ReLU(name="relu1")(_conv_bn(inputs, stages[0][0], 3, 1, kernel_initializer, "conv1"))
    for s, (filters, blocks) in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            strides = 2 if s > 1 and b == 1 else 1
            x = _basic_block(x, filters, strides, kernel_initializer, f"block{s}_{b}")
    x = L.GlobalAveragePooling2D(name="avgpool")(x)
    return keras.Model(inputs, _fc(x, num_classes, kernel_initializer), name=name)


def lenet_300_100(input_shape=(28, 28, 1), num_classes=10, kernel_initializer="variance_scaling",
                  name="lenet_300_100"):
    """LeNet-300-100: Flatten, Dense 300 ReLU, Dense 100 ReLU, Dense ``num_classes``.

    266,200 kernel weights and 410 biases on MNIST. The default initialiser is Keras's
    ``variance_scaling`` (fan-in, scale 1, truncated normal), like ``tf.variance_scaling_initializer``
    in the SNIP code.

    Args:
        input_shape: Shape of one input; it is flattened.
        num_classes: Number of logits.
        kernel_initializer: Initialiser of the kernels (anything ``keras.initializers.get`` takes).
        name: Name of the model.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> model = lenet_300_100((8, 8, 1), 10)  # the digits data set
    """
    inputs = keras.Input(input_shape)
    x = L.Flatten(name="flatten")(inputs)
    for i, width in enumerate((300, 100), start=1):
        x = L.Dense(width, activation="relu", kernel_initializer=kernel_initializer, name=f"fc{i}")(x)
    return keras.Model(inputs, _fc(x, num_classes, kernel_initializer), name=name)


def lenet5_caffe(input_shape=(28, 28, 1), num_classes=10, kernel_initializer="variance_scaling",
                 conv_activation=None, name="lenet5_caffe"):
    """LeNet-5-Caffe: conv 20 5x5, max-pool 2, conv 50 5x5, max-pool 2, Dense 500 ReLU, Dense.

    Convolutions are unpadded. 430,500 kernel weights and 580 biases (431,080 parameters) on
    MNIST. By default the convolutions have no activation and only the hidden Dense layer has a
    ReLU, as in Caffe's LeNet and the SNIP code; many PyTorch re-implementations add a ReLU after
    each convolution (``conv_activation="relu"``). The parameter count is the same either way.

    Args:
        input_shape: (height, width, channels), at least 16x16 (two 5x5 convolutions and two
            2x2 pools).
        num_classes: Number of logits.
        kernel_initializer: Initialiser of the kernels (anything ``keras.initializers.get`` takes).
        conv_activation: Activation after each convolution; ``None`` for none.
        name: Name of the model.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: if the input is not an image of at least 16x16 pixels.

    Example:
        >>> model = lenet5_caffe(conv_activation="relu")
    """
    _check_image(input_shape, "lenet5_caffe", minimum=16)
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((20, 50), start=1):
        x = L.Conv2D(filters, 5, activation=conv_activation, kernel_initializer=kernel_initializer,
                     name=f"conv{i}")(x)
        x = L.MaxPooling2D(2, name=f"pool{i}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(500, activation="relu", kernel_initializer=kernel_initializer, name="fc1")(x)
    return keras.Model(inputs, _fc(x, num_classes, kernel_initializer), name=name)


def conv(input_shape=(32, 32, 3), num_classes=10, width=32, kernel_initializer="he_normal",
         name="conv"):
    """The small convolutional network of the SynFlow code (its ``conv`` model with ``L=3``).

    Two 3x3 same-padded convolutions of ``width`` filters with biases and ReLU, no pooling, then
    Flatten and a Dense layer of ``num_classes``. On CIFAR-10 with width 32: 864 + 9,216 +
    327,680 = 337,760 kernel weights.

    Args:
        input_shape: (height, width, channels).
        num_classes: Number of logits.
        width: Filters of each convolution.
        kernel_initializer: Initialiser of the kernels (anything ``keras.initializers.get`` takes).
        name: Name of the model.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> model = conv((8, 8, 1), 10, width=16)
    """
    _check_image(input_shape, "conv")
    inputs = keras.Input(input_shape)
    x = inputs
    for i in (1, 2):
        x = L.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=kernel_initializer,
                     name=f"conv{i}")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, _fc(x, num_classes, kernel_initializer), name=name)


def vgg(depth=16, batch_norm=True, input_shape=(32, 32, 3), num_classes=10, kernel_initializer=None,
        name=None, width=1.0):
    """The CIFAR VGG of the SynFlow code (its "lottery" VGG, after open_lth).

    3x3 same-padded convolutions in VGG's configurations A/B/D/E (depth 11/13/16/19), each
    Conv-BN-ReLU (the SynFlow code keeps a redundant conv bias before BN; here it has none) or,
    when ``batch_norm`` is false, Conv-ReLU with bias; 2x2 max-pooling between
    the five groups, then 2x2 average pooling (1x1 on CIFAR), Flatten and one Dense layer 512 ->
    ``num_classes``. VGG-16 has 13 convolutions + 1 Dense layer and 14,715,584 kernel weights on
    CIFAR-10.

    Args:
        depth: 11, 13, 16 or 19.
        batch_norm: Batch normalisation after each convolution.
        input_shape: (height, width, channels), at least 32x32.
        num_classes: Number of logits.
        kernel_initializer: Initialiser of the kernels (anything ``keras.initializers.get`` takes;
            pass a name or a config rather than one instance, which would give same-shaped layers
            the same weights); default :data:`KAIMING_NORMAL`, as the SynFlow code.
        name: Name of the model; default ``"vgg16_bn"``, ``"vgg16"`` etc. (``"vgg16_bn_w0.25"``
            for another width).
        width: Multiplier of every convolution's filters (rounded, at least 1), e.g. 0.25 for a
            quarter-width network that trains 16× faster.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: for another depth, a width <= 0, or an input smaller than 32x32.

    Example:
        >>> model = vgg(16, num_classes=100)  # CIFAR-100
    """
    if depth not in _VGG_PLANS:
        raise ValueError(f"vgg depth must be one of {sorted(_VGG_PLANS)}, got {depth!r}")
    if not width > 0:
        raise ValueError(f"vgg width must be > 0, got {width!r}")
    kernel_initializer = kernel_initializer or KAIMING_NORMAL
    name = name or f"vgg{depth}{'_bn' if batch_norm else ''}" + (f"_w{width:g}" if width != 1 else "")
    _check_image(input_shape, name, minimum=32)
    inputs = keras.Input(input_shape)
    x, convs, pools = inputs, 0, 0
    for spec in _VGG_PLANS[depth]:
        if spec == "M":
            pools += 1
            x = L.MaxPooling2D(2, name=f"pool{pools}")(x)
        else:
            convs += 1
            x = _conv_bn(x, max(1, round(spec * width)), 3, 1, kernel_initializer, f"conv{convs}", batch_norm)
            x = L.ReLU(name=f"relu{convs}")(x)
    x = L.AveragePooling2D(2, name="avgpool")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, _fc(x, num_classes, kernel_initializer), name=name)


def resnet_cifar(depth=20, input_shape=(32, 32, 3), num_classes=10, kernel_initializer=None,
                 name=None):
    """The CIFAR ResNet of He et al. as in the SynFlow code (its "lottery" ResNet, after open_lth).

    A 3x3 conv of 16 filters + BN + ReLU, three stages of n = (depth - 2) / 6 basic blocks with
    16/32/64 filters (stride 2 at the start of stages 2 and 3), global average pooling and a Dense
    layer. Shortcuts are identities, or a 1x1 conv + BN where the shape changes (option B).
    ResNet-20 has 19 convolutions + 2 shortcut convolutions + 1 Dense layer and 270,896 kernel
    weights on CIFAR-10.

    Args:
        depth: 6n + 2 for n >= 1: 20, 32, 44, 56, 110, ...
        input_shape: (height, width, channels).
        num_classes: Number of logits.
        kernel_initializer: Initialiser of the kernels (anything ``keras.initializers.get`` takes;
            a name or a config, as for :func:`vgg`); default :data:`KAIMING_NORMAL`, as the SynFlow code.
        name: Name of the model; default ``"resnet20"`` etc.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: for a depth that is not 6n + 2.

    Example:
        >>> model = resnet_cifar(56)
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet_cifar depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), "
                         f"got {depth!r}")
    n = (depth - 2) // 6
    return _resnet(input_shape, num_classes, [(16, n), (32, n), (64, n)], kernel_initializer or KAIMING_NORMAL,
                   name or f"resnet{depth}")


def resnet18(input_shape=(32, 32, 3), num_classes=10, kernel_initializer="he_normal", name="resnet18"):
    """The CIFAR ResNet-18: ImageNet's ResNet-18 with a 3x3 stem of 64 filters and no max-pool.

    Four stages of two basic blocks with 64/128/256/512 filters (stride 2 at the start of stages
    2-4, with 1x1 conv + BN shortcuts there), global average pooling and a Dense layer: 17
    convolutions + 3 shortcut convolutions + 1 Dense layer, 11,164,352 kernel weights and
    11,173,962 trainable parameters on CIFAR-10.

    Args:
        input_shape: (height, width, channels).
        num_classes: Number of logits.
        kernel_initializer: Initialiser of the kernels (anything ``keras.initializers.get`` takes).
        name: Name of the model.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> model = resnet18(num_classes=100)
    """
    return _resnet(input_shape, num_classes, [(64, 2), (128, 2), (256, 2), (512, 2)], kernel_initializer,
                   name)


def _builders():
    named = {"lenet_300_100": lenet_300_100, "lenet5_caffe": lenet5_caffe, "conv": conv, "resnet18": resnet18}
    named.update({f"vgg{d}": (lambda d: lambda **kw: vgg(d, **kw))(d) for d in _VGG_PLANS})
    named.update({f"vgg{d}_w0.25": (lambda d: lambda **kw: vgg(d, width=0.25, **kw))(d) for d in _VGG_PLANS})
    named.update({f"resnet{d}": (lambda d: lambda **kw: resnet_cifar(d, **kw))(d) for d in (20, 32, 44, 56, 110)})
    return named


def available():
    """Names :func:`build` knows: ``lenet_300_100``, ``lenet5_caffe``, ``conv``, ``vgg11`` …
    ``vgg19`` (and their quarter-width ``vgg11_w0.25`` …), ``resnet20`` … ``resnet110`` and
    ``resnet18``."""
    return sorted(_builders())


def build(name, input_shape=None, num_classes=10):
    """A reference network by name.

    Args:
        name: One of :func:`available`, e.g. ``"vgg16"`` or ``"resnet20"``.
        input_shape: (height, width, channels); default the network's own (28x28x1 for the
            LeNets, 32x32x3 for the others).
        num_classes: Number of logits.

    Returns:
        A new functional ``keras.Model`` with freshly initialised weights.

    Example:
        >>> model = build("resnet20", (32, 32, 3), 10)
    """
    builders = _builders()
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(available())}")
    options = {"num_classes": num_classes}
    if input_shape is not None:
        options["input_shape"] = tuple(input_shape)
    return builders[name](**options)
