"""Why GraSP scored with inference-mode batch norm does not train on the BN VGG (docs/results.md, section 3).

    python benchmarks/grasp_diagnostics.py          # about 4 minutes on 2 cores

Prunes the quarter-width VGG-11 to compression 10 with GraSP (and SNIP for comparison), then
trains it with the sweep's recipe (3,000 images, 4 epochs) in four variants:

* ``batch statistics``: GraSP as its authors score it and tfprune does by default — batch norm
  normalises each scoring batch by its own statistics, differentiated through;
* ``moving statistics``: batch norm in inference mode (``batch_statistics=False``, as the SynFlow
  code scores), where at initialisation it is the identity;
* ``moving, shuffled``: the masks of ``moving statistics`` with the same per-layer densities,
  each layer's mask permuted at random — if this trains, the problem is *which* weights are kept,
  not how many per layer;
* ``snip``: SNIP's masks (moving statistics, as its authors).

For each it prints the test accuracy and the share of positive weights among those kept in each
layer (0.5 at initialisation).
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune import training  # noqa: E402

DATA_DIR = os.environ.get("TFPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
VARIANTS = [("grasp", "batch statistics", dict()),
            ("grasp", "moving statistics", dict(batch_statistics=False)),
            ("grasp", "moving, shuffled", dict(batch_statistics=False)),
            ("snip", "moving statistics", dict())]


def main():
    x, y = tfprune.data.load("cifar10", "train", DATA_DIR)
    test = tfprune.data.load("cifar10", "test", DATA_DIR)
    train = (x[:3000], y[:3000])
    scoring = np.sort(np.random.default_rng(0).choice(3000, 100, replace=False))
    for method, variant, options in VARIANTS:
        keras.utils.set_random_seed(0)
        model = tfprune.models.build("vgg11_w0.25")
        pruned = tfprune.prune_at_init(model, method, compression=10, data=(x[scoring], y[scoring]), verbose=0,
                                       **options)
        masks = tfprune.get_masks(pruned)
        if variant.endswith("shuffled"):
            rng = np.random.default_rng(1)
            masks = [rng.permutation(m.ravel()).reshape(m.shape) for m in masks]
            tfprune.apply_masks(pruned, masks)
        positive = [float((np.asarray(t.variable.value)[m] > 0).mean())
                    for t, m in zip(tfprune.prunable_weights(pruned), masks)]
        training.fit(pruned, train, training.Recipe(epochs=4))
        accuracy = training.evaluate(pruned, test)[0]
        print(f"{method:6s} {variant:18s} test accuracy {accuracy:.4f}; positive share of kept weights per layer "
              f"{[round(p, 2) for p in positive]}", flush=True)


if __name__ == "__main__":
    main()
