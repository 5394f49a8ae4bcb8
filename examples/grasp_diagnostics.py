"""Why GraSP does not train on the batch-norm VGG of the CIFAR-10 sweep (docs/results.md, section 3).

    python examples/grasp_diagnostics.py          # about 4 minutes on 2 cores

Prunes the quarter-width VGG-11 to compression 10 with GraSP (and SNIP for comparison), then
trains it with the sweep's recipe (3,000 images, 4 epochs) in three variants:

* ``as scored``: the mask as GraSP chose it;
* ``shuffled``: the same per-layer densities, each layer's mask permuted at random — if this
  trains, the problem is *which* weights GraSP keeps, not how many per layer;
* ``BN recalibrated``: each batch norm's moving statistics set to those of the 100 scoring
  images before scoring (what training-mode batch norm would normalise with), then restored — a
  check that scoring in inference mode at initialisation is not the cause.

For each it prints the test accuracy and the share of positive weights among those kept, per layer.
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune import training  # noqa: E402

DATA_DIR = os.environ.get("TFPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def recalibrate(model, x):
    """Sets every BatchNormalization's moving statistics to those of its input on ``x``; returns the old ones."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()) for layer in layers]
    for layer in layers:  # in model order, so each input already sees the recalibrated layers before it
        inputs = keras.Model(model.input, layer.input).predict(x, verbose=0)
        flat = inputs.reshape(-1, inputs.shape[-1])
        layer.moving_mean.assign(flat.mean(0))
        layer.moving_variance.assign(flat.var(0))
    return layers, saved


def main():
    x, y = tfprune.data.load("cifar10", "train", DATA_DIR)
    test = tfprune.data.load("cifar10", "test", DATA_DIR)
    train = (x[:3000], y[:3000])
    scoring = np.sort(np.random.default_rng(0).choice(3000, 100, replace=False))
    for method, variant in [("grasp", "as scored"), ("grasp", "shuffled"), ("grasp", "BN recalibrated"),
                            ("snip", "as scored")]:
        keras.utils.set_random_seed(0)
        model = tfprune.models.build("vgg11_w0.25")
        if variant == "BN recalibrated":
            layers, saved = recalibrate(model, x[scoring])
        pruned = tfprune.prune_at_init(model, method, compression=10, data=(x[scoring], y[scoring]), verbose=0)
        if variant == "BN recalibrated":
            for layer, (mean, variance) in zip(layers, saved):
                layer.moving_mean.assign(mean)
                layer.moving_variance.assign(variance)
        masks = tfprune.get_masks(pruned)
        if variant == "shuffled":
            rng = np.random.default_rng(1)
            masks = [rng.permutation(m.ravel()).reshape(m.shape) for m in masks]
            tfprune.apply_masks(pruned, masks)
        positive = [float((np.asarray(t.value)[m] > 0).mean()) for t, m in zip(tfprune.prunable_weights(pruned), masks)]
        training.fit(pruned, train, training.Recipe(epochs=4))
        accuracy = training.evaluate(pruned, test)[0]
        print(f"{method:6s} {variant:16s} test accuracy {accuracy:.4f}; positive share of kept weights per layer "
              f"{[round(p, 2) for p in positive]}", flush=True)


if __name__ == "__main__":
    main()
