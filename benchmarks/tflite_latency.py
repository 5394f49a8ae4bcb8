"""Batch-1 latency of dense, unstructured-sparse and 1×4-block-sparse LeNet-300-100 TFLite files.

Three LeNet-300-100 (784-300-100-10) files: dense; 95 % unstructured sparse (magnitude, 95 % in
every layer); 95 % block sparse (blocks of 4 consecutive inputs per output unit, the 5 % of blocks
of largest L1 norm kept in every layer). Each is written with ``tfprune.export.tflite``, which
checks its outputs against Keras. Then every file runs in every installed interpreter
(ai_edge_litert, tf.lite) with XNNPACK on and off: single invocations of batch 1, timed one by
one, in interleaved rounds after a warm-up; the table gives the median. Prints the file sizes, the
ops of each graph, whether XNNPACK took any op, and the latencies as Markdown tables.

Latency does not depend on the weights' values, only on where the zeros are, so the models are
not trained.

    python benchmarks/tflite_latency.py [--out-dir /tmp/tflite_latency] [--rounds 7] [--invokes 500] [--threads 1]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune import export  # noqa: E402

SPARSITY = 0.95


def block_masks(wrapped, block=4):
    """Per kernel (in, out): keep the 5 % of blocks of ``block`` consecutive inputs with the
    largest L1 norm (each input size here is a multiple of ``block``)."""
    masks = []
    for target in tfprune.prunable_weights(wrapped):
        kernel = np.abs(target.variable.numpy())
        norms = kernel.reshape(kernel.shape[0] // block, block, kernel.shape[1]).sum(axis=1)
        keep = max(1, round((1 - SPARSITY) * norms.size))
        threshold = np.sort(norms, axis=None)[-keep]
        masks.append(np.repeat(norms >= threshold, block, axis=0))
    return masks


def models():
    """``{name: (stripped model, export options)}``."""
    keras.utils.set_random_seed(0)
    dense = tfprune.models.lenet_300_100()
    unstructured = tfprune.strip(tfprune.prune_at_init(dense, "magnitude", sparsity=SPARSITY, scope="local", verbose=0))
    wrapped = tfprune.wrap(dense)
    tfprune.apply_masks(wrapped, block_masks(wrapped))
    return {
        "dense": (dense, dict(sparse=False)),
        "unstructured 95 %": (unstructured, dict()),
        "block 1×4 95 %": (tfprune.strip(wrapped), dict(block=(1, 4))),
    }


def op_summary(report):
    """How each FULLY_CONNECTED weight is read: sparse directly, through DENSIFY, or dense."""
    sparse = ["DENSIFY+FC" if t.densified else "FC sparse " + "×".join(map(str, t.block))
              for t in report.sparse_tensors]
    dense = report.ops.count("FULLY_CONNECTED") - len(sparse)
    return ", ".join(sparse + ["FC dense"] * dense)


def prepared(path, runtime, use_xnnpack, threads):
    """An interpreter ready to invoke on one example, and whether XNNPACK took any node."""
    interpreter = export.make_interpreter(path, runtime=runtime, use_xnnpack=use_xnnpack, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.default_rng(0).random(detail["shape"], dtype=np.float32))
    # _get_ops_details lists the execution plan; a DELEGATE node is XNNPACK's (private API, examples only)
    delegated = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    return interpreter, delegated


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="/tmp/tflite_latency")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--invokes", type=int, default=500, help="timed invocations per configuration per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    reports = {}
    for name, (model, options) in models().items():
        path = os.path.join(args.out_dir, name.split()[0] + ".tflite")
        reports[name] = export.tflite(model, path, **options)
        print(reports[name], end="\n\n")

    configs = {}
    for name, report in reports.items():
        for runtime in export.available_runtimes():
            for use_xnnpack in (True, False):
                configs[name, runtime, use_xnnpack] = prepared(report.path, runtime, use_xnnpack, args.threads)
    for interpreter, _ in configs.values():
        for _ in range(args.warmup):
            interpreter.invoke()
    samples = {key: [] for key in configs}
    for _ in range(args.rounds):
        for key, (interpreter, _) in configs.items():
            for _ in range(args.invokes):
                start = time.perf_counter()
                interpreter.invoke()
                samples[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(times) * 1e6 for key, times in samples.items()}

    print("| model | file bytes | × dense | FULLY_CONNECTED weights |")
    print("|---|---:|---:|---|")
    for name, report in reports.items():
        print(f"| {name} | {report.file_bytes:,} | {report.file_bytes / reports['dense'].file_bytes:.3f} | "
              f"{op_summary(report)} |")
    print(f"\nbatch 1, {args.threads} thread(s), median of {args.rounds} × {args.invokes} invocations (µs):\n")
    print("| model | runtime | XNNPACK | XNNPACK took ops | median µs | × dense (same runtime and XNNPACK setting) |")
    print("|---|---|---|---|---:|---:|")
    for (name, runtime, use_xnnpack), (_, delegated) in configs.items():
        ratio = medians[name, runtime, use_xnnpack] / medians["dense", runtime, use_xnnpack]
        print(f"| {name} | {runtime} | {'on' if use_xnnpack else 'off'} | {'yes' if delegated else 'no'} | "
              f"{medians[name, runtime, use_xnnpack]:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
