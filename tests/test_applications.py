"""keras.applications (``weights=None``, 32×32 inputs, 10 classes, softmax or logits head): prune at
sparsity 0.9 with magnitude, SNIP, GraSP and SynFlow, train one step, strip.

Each cell asserts: exactly ⌊0.1·N + ½⌋ of the N prunable weights kept; the fit step leaves every
masked weight bit-identical (zero gradient under plain SGD); the stripped
weights equal dense ⊙ mask; the stripped model's predictions equal the wrapped model's exactly.
MobileNetV2 (logits) and MobileNetV3Small (softmax) run by default, the rest of the matrix is slow.
"""

import keras
import numpy as np
import pytest

import tfprune

A = keras.applications
INPUT_SHAPE = (32, 32, 3)
APPLICATIONS = {
    "MobileNetV2": lambda **head: A.MobileNetV2(weights=None, input_shape=INPUT_SHAPE, alpha=0.35, classes=10, **head),
    "MobileNetV3Small": lambda **head: A.MobileNetV3Small(
        weights=None, input_shape=INPUT_SHAPE, alpha=0.75, minimalistic=True, classes=10, **head
    ),
    "ResNet50": lambda **head: A.ResNet50(weights=None, input_shape=INPUT_SHAPE, classes=10, **head),
    "EfficientNetB0": lambda **head: A.EfficientNetB0(weights=None, input_shape=INPUT_SHAPE, classes=10, **head),
    "DenseNet121": lambda **head: A.DenseNet121(weights=None, input_shape=INPUT_SHAPE, classes=10, **head),
    "NASNetMobile": lambda **head: A.NASNetMobile(weights=None, input_shape=INPUT_SHAPE, classes=10, **head),
    "ConvNeXtTiny": lambda **head: A.ConvNeXtTiny(weights=None, input_shape=INPUT_SHAPE, classes=10, **head),
}
HEADS = {"softmax": {}, "logits": {"classifier_activation": None}}
METHODS = {"magnitude": {}, "snip": {"samples": 4}, "grasp": {"samples": 4}, "synflow": {"rounds": 2}}
DEFAULT_RUN = {("MobileNetV2", "logits"), ("MobileNetV3Small", "softmax")}


def cells():
    for app in APPLICATIONS:
        for head in HEADS:
            marks = () if (app, head) in DEFAULT_RUN else (pytest.mark.slow,)
            for method in METHODS:
                yield pytest.param(app, head, method, id=f"{app}-{head}-{method}", marks=marks)


def prune(model, method, **options):
    """prune_at_init at sparsity 0.9; emptied tensors are expected here (magnitude empties heads)."""
    return tfprune.prune_at_init(model, method, sparsity=0.9, verbose=0, on_collapse="ignore", **options)


@pytest.mark.parametrize("app, head, method", list(cells()))
def test_prune_fit_strip_keeps_zeros_and_predictions(app, head, method):
    logits = head == "logits"
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, *INPUT_SHAPE)).astype("float32")
    y = rng.integers(0, 10, 4)
    options = dict(METHODS[method])
    if tfprune.scores.get(method).needs_data:
        options["data"] = (x, y)  # default from_logits=True: a softmax head is skipped for the score
    wrapped = prune(APPLICATIONS[app](**HEADS[head]), method, **options)

    masks = tfprune.get_masks(wrapped)
    total = sum(m.size for m in masks)
    assert sum(int(m.sum()) for m in masks) == (total + 5) // 10  # ⌊0.1·N + ½⌋ kept

    targets = tfprune.prunable_weights(wrapped)
    before = [t.variable.numpy() for t in targets]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    wrapped.compile(keras.optimizers.SGD(0.01), loss, run_eagerly=True)  # eager: one step costs less than a trace
    wrapped.fit(x[:2], y[:2], batch_size=2, epochs=1, verbose=0)
    after = [t.variable.numpy() for t in targets]
    assert int(wrapped.optimizer.iterations.numpy()) == 1
    for b, a, m in zip(before, after, masks):
        np.testing.assert_array_equal(a[~m], b[~m])

    plain = tfprune.strip(wrapped)
    assert not tfprune.is_wrapped(plain)
    assert not any(type(layer).__module__.startswith("tfprune") for layer in plain.layers)
    stripped = tfprune.prunable_weights(plain)
    assert [t.shape for t in stripped] == [m.shape for m in masks]
    for t, a, m in zip(stripped, after, masks):
        np.testing.assert_array_equal(t.variable.numpy(), np.where(m, a, 0.0))
    for t, m in zip(tfprune.prunable_weights(wrapped), masks):
        np.testing.assert_array_equal(t.mask.numpy() != 0, m)  # strip left the wrapped model's masks
    np.testing.assert_array_equal(plain(x, training=False), wrapped(x, training=False))
