"""Layer-collapse sweep on a reference network (SynFlow paper, Fig. 1-2 style): CSV and PNG.

    python examples/layer_collapse.py --model vgg16 --methods random,magnitude,snip,grasp,synflow \\
        --log10-compressions 0:6:0.5 --seeds 0 --out docs/collapse

Data-driven methods score with 100 CIFAR-10 training images from ``--data-dir`` (default
``../shared/data`` when present, else random images: layer collapse does not depend much on them).
Besides the registered methods, ``grasp_synflow_code`` is GraSP as the SynFlow code scores it
(batch norm in inference mode, one batch, no re-initialised Dense kernels).
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfprune  # noqa: E402

MODELS = {
    "vgg16": lambda classes: tfprune.models.vgg(16, num_classes=classes),
    "resnet20": lambda classes: tfprune.models.resnet_cifar(20, num_classes=classes),
    "lenet_300_100": lambda classes: tfprune.models.lenet_300_100((32, 32, 3), num_classes=classes),
}


def scoring_data(data_dir):
    try:
        x, y = tfprune.data.load("cifar10", "train", data_dir, download=False)
        return x[:100], y[:100], "CIFAR-10 (100 training images)"
    except tfprune.data.DataUnavailableError:
        rng = np.random.default_rng(0)
        return rng.random((100, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 100), "random images"


def grasp_synflow_code(model, targets, data, seed=None):
    """GraSP as the SynFlow code scores it: ``eval()`` mode, one batch, Dense kernels as they are."""
    return tfprune.scores.grasp(model, targets, data, batch_size=len(data[0]), batch_statistics=False,
                                reinit_dense=False, seed=seed)


EXTRA_METHODS = {"grasp_synflow_code": grasp_synflow_code}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", choices=sorted(MODELS))
    parser.add_argument("--methods", default="random,magnitude,snip,grasp,synflow")
    parser.add_argument("--log10-compressions", default="0:6:0.5", help="start:stop:step of log10 compression")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--classes", type=int, default=10, help="output classes (100: CIFAR-100 shapes)")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    parser.add_argument("--out", default="collapse", help="output path prefix (.csv and .png are added)")
    args = parser.parse_args()
    start, stop, step = (float(v) for v in args.log10_compressions.split(":"))
    compressions = 10 ** np.arange(start, stop + step / 2, step)
    x, y, described = scoring_data(args.data_dir)
    print(f"{args.model}; scoring data: {described}")
    methods = [EXTRA_METHODS.get(m, m) for m in args.methods.split(",")]
    sweep = tfprune.collapse_sweep(lambda: MODELS[args.model](args.classes), methods, compressions, data=(x, y),
                                   seeds=[int(s) for s in args.seeds.split(",")])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sweep.to_csv(f"{args.out}.csv")
    sweep.plot(f"{args.out}.png", compression=10 ** min(stop, 3.0))
    print(f"N/K = 10^{np.log10(sweep.max_compression):.2f}")
    for method, per_seed in sweep.critical_per_seed.items():
        logs = ["below" if c is None else f"{np.log10(c):.2f}" for c in per_seed]
        known = [np.log10(c) for c in per_seed if c is not None]
        summary = (f"median 10^{np.median(known):.2f}, range 10^{min(known):.2f}-10^{max(known):.2f}"
                   if len(known) == len(per_seed) else "collapsed at the smallest compression on some seed")
        print(f"critical compression of {method}: {summary}; per seed (log10): {', '.join(logs)}")


if __name__ == "__main__":
    main()
