"""The same SNIP pruning on one device, on MirroredStrategy with two replicas, and on two local
MultiWorkerMirroredStrategy workers; prints a digest of each mask set and whether they agree.

    python examples/distributed.py

Each configuration runs in its own process (logical devices and TF_CONFIG must be set before
TensorFlow starts); workers talk over loopback on free ports; every child is killed on exit; the
whole run is bounded (--timeout, default 300 s). The multi-worker run gives each worker different
data on purpose: the all-reduced scores still give both the same masks.
"""

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

CHILD = "--child"


def masks_digest(masks):
    import numpy as np

    return hashlib.sha256(b"".join(np.packbits(m).tobytes() for m in masks)).hexdigest()[:16]


def child(mode):
    import numpy as np
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif mode == "worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    import keras

    import tfprune

    index = json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": 0}}'))["task"]["index"]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 64)
    if mode == "worker":  # each worker its own half: the global batch is their union
        x, y = np.concatenate([x[32 * index:32 * index + 32]] * 2), np.concatenate([y[32 * index:32 * index + 32]] * 2)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = tfprune.models.lenet_300_100()
    pruned = tfprune.prune_at_init(model, "snip", sparsity=0.95, data=(x, y), verbose=0)
    print(json.dumps({"mode": mode, "worker": index, "replicas": strategy.num_replicas_in_sync,
                      "masks": masks_digest(tfprune.get_masks(pruned))}), flush=True)


def run(processes, timeout):
    outputs = []
    deadline = time.monotonic() + timeout
    try:
        for p in processes:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            if p.returncode:
                raise SystemExit(f"a child failed:\n{err[-2000:]}")
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outputs


def spawn(mode, env=None):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, __file__, CHILD, mode], env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    results = run([spawn("single")], args.timeout) + run([spawn("mirrored")], args.timeout)
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    workers = [spawn("worker", {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    results += run(workers, args.timeout)
    for r in results:
        print(f"{r['mode']:>8} worker {r['worker']} ({r['replicas']} replica(s)): masks {r['masks']}")
    print("all masks agree:", len({r["masks"] for r in results}) == 1)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == CHILD:
        child(sys.argv[2])
    else:
        main()
