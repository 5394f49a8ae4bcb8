"""Dense vs structured-pruned latency at 50 % of the MACs: ResNet50, MobileNetV2 and a Transformer block.

Each model is made smaller with ``tfprune.structured.remove``: every prunable unit group (channel
groups, attention heads, FFN units) loses the same share of its units, those of lowest L1 norm
(``tfprune.structured.criteria.l1``), the share found by bisection so that the MACs
(``tfprune.profile``) are at most ``--kept-macs`` of the dense model's (``--round-to 8`` keeps a
multiple of 8 units per group, which vector kernels prefer). The models are
``keras.applications`` ResNet50 and MobileNetV2 (``weights=None``, ``--size``², 1000 classes) and a
ViT-S encoder block (pre-norm, ``--tokens`` tokens of width 384, 6 heads, FFN 1536). Latency does
not depend on the weights' values, so nothing is trained.

Timed, dense and pruned in interleaved rounds after a warm-up:

* Keras: ``model(x, training=False)`` in a ``tf.function``, at batch 1 and at ``--batch``;
* TFLite: the float32 file written (and checked against Keras) by ``tfprune.export.tflite``, run by
  the interpreter with its default XNNPACK delegate, at batch 1.

Each figure is the median over ``--rounds`` rounds of the mean time of ``--calls`` calls. The table
gives each pruned/dense latency ratio beside the MAC ratio; it is printed and written into
docs/results.md between the ``structured-speedup`` markers (``--doc ""`` to skip).

    python benchmarks/structured_speedup.py                      # 224×224, batch 32: the results table
    python benchmarks/structured_speedup.py --size 32 --tokens 16 --batch 2 --rounds 1 --calls 1 --doc ""
"""

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfprune import export
from tfprune.base import files  # noqa: E402
from tfprune.structured import counts, criteria, dependency_graph, remove  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- structured-speedup:begin -->", "<!-- structured-speedup:end -->"
MODELS = ("resnet50", "mobilenetv2", "transformer")
TORCH_PRUNING = ("Torch-Pruning's README reports ResNet-50 at 4.12 → 1.07 GMACs running 45.2 → 20.7 ms "
                 "(batch 64; 0.26× the MACs, 0.46× the time)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--kept-macs", type=float, default=0.5, help="MACs of the pruned model / dense (default 0.5)")
    parser.add_argument("--target-macs", dest="kept_macs", type=float, help=argparse.SUPPRESS)  # 0.1 spelling
    parser.add_argument("--size", type=int, default=224, help="image side of ResNet50 and MobileNetV2 (default 224)")
    parser.add_argument("--tokens", type=int, default=197, help="tokens of the Transformer block (default 197)")
    parser.add_argument("--batch", type=int, default=32, help="the larger Keras batch (default 32)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per configuration per round (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of TensorFlow (intra-op) and of the TFLite interpreter (default: all cores)")
    parser.add_argument("--round-to", type=int, default=1,
                        help="keep a multiple of this many units in each group (e.g. 8, vector-friendly; default 1)")
    parser.add_argument("--no-tflite", action="store_true", help="time Keras only")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results.md"),
                        help='markdown file whose structured-speedup block is replaced ("" to skip)')
    return parser.parse_args(argv)


# ---------------------------------------------------------------- models


def transformer_block(tokens, width=384, heads=6, ffn=1536):
    """A pre-norm ViT-S encoder block: x + MHA(LN(x)), then x + FFN(LN(x))."""
    inputs = keras.Input((tokens, width))
    h = keras.layers.LayerNormalization(epsilon=1e-6, name="ln1")(inputs)
    h = keras.layers.MultiHeadAttention(heads, width // heads, name="attention")(h, h)
    x = keras.layers.Add()([inputs, h])
    h = keras.layers.LayerNormalization(epsilon=1e-6, name="ln2")(x)
    h = keras.layers.Dense(ffn, activation="gelu", name="ffn1")(h)
    h = keras.layers.Dense(width, name="ffn2")(h)
    return keras.Model(inputs, keras.layers.Add()([x, h]), name="vit_s_block")


def build(name, args):
    keras.utils.set_random_seed(0)
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=(args.size, args.size, 3))
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(args.size, args.size, 3))
    return transformer_block(args.tokens)


def uniform_removal(graph, scores, share, round_to=1):
    """``remove``'s argument: the ``share`` of each prunable group's units of lowest summed score,
    the number kept rounded up to a multiple of ``round_to`` (at most the group's size)."""
    pairs = []
    for group in graph.groups:
        if group.prunable:
            relevance = sum(np.asarray(scores[p]) for p in group.producers)
            keep = min(group.size, math.ceil((group.size - int(share * group.size)) / round_to) * round_to)
            count = min(group.max_removable, group.size - keep)
            pairs += [(group, int(c)) for c in np.argsort(relevance, kind="stable")[:count]]
    return graph.removal(pairs)


def pruned(model, target, round_to=1, steps=8):
    """The model with the smallest uniform share removed that reaches ``target`` × its MACs (bisection)."""
    graph = dependency_graph(model)
    scores = criteria.l1(model)
    goal = target * counts(model)[0]
    low, high, best = 0.0, 1.0, None
    for _ in range(steps):
        share = (low + high) / 2
        smaller = remove(model, uniform_removal(graph, scores, share, round_to))
        if counts(smaller)[0] <= goal:
            high, best = share, smaller
        else:
            low = share
    if best is None:
        raise RuntimeError(f"{model.name}: no uniform share reaches {target} of the MACs")
    return best


# ---------------------------------------------------------------- timing


def example(model, batch):
    shape = (batch, *model.inputs[0].shape[1:])
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


def keras_runner(model, batch):
    x = tf.constant(example(model, batch))
    forward = tf.function(lambda t: model(t, training=False))
    return lambda: forward(x).numpy()


def tflite_runner(model, folder, threads):
    path = os.path.join(folder, f"{model.name}_{model.count_params()}.tflite")
    export.tflite(model, path, sparse=False, check_data=example(model, 2))
    interpreter = export.make_interpreter(path, use_xnnpack=True, num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]
    x = example(model, 1)
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    return interpreter.invoke


def median_ms(runners, rounds, calls):
    """``{key: median over rounds of the mean ms per call}``, the runners interleaved in each round."""
    for run in runners.values():  # warm-up: tracing, allocation, XNNPACK packing
        run()
        run()
    samples = {key: [] for key in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            start = time.perf_counter()
            for _ in range(calls):
                run()
            samples[key].append((time.perf_counter() - start) / calls * 1e3)
    return {key: statistics.median(values) for key, values in samples.items()}


# ---------------------------------------------------------------- report


def measure(name, args, folder):
    dense = build(name, args)
    small = pruned(dense, args.kept_macs, args.round_to)
    (dense_macs, dense_params), (small_macs, small_params) = counts(dense), counts(small)
    print(f"{name}: MACs {dense_macs:,} → {small_macs:,}, params {dense_params:,} → {small_params:,}", flush=True)
    settings = ["keras b1", f"keras b{args.batch}"] + ([] if args.no_tflite else ["tflite b1"])
    runners = {}
    for variant, model in (("dense", dense), ("pruned", small)):
        runners["keras b1", variant] = keras_runner(model, 1)
        runners[f"keras b{args.batch}", variant] = keras_runner(model, args.batch)
        if not args.no_tflite:
            runners["tflite b1", variant] = tflite_runner(model, folder, args.threads)
    times = median_ms(runners, args.rounds, args.calls)
    row = {"model": name, "macs": (dense_macs, small_macs), "params": (dense_params, small_params)}
    row["times"] = {s: (times[s, "dense"], times[s, "pruned"]) for s in settings}
    return row


def table(rows, args):
    settings = list(rows[0]["times"])
    head = ["model", "input", "GMACs dense → pruned", "MAC ratio", "params ratio"]
    head += [f"{s} ms dense → pruned (ratio)" for s in settings]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        shape = f"{args.tokens}×384" if r["model"] == "transformer" else f"{args.size}²"
        (dm, sm), (dp, sp) = r["macs"], r["params"]
        cells = [r["model"], shape, f"{dm / 1e9:.3f} → {sm / 1e9:.3f}", f"{sm / dm:.2f}", f"{sp / dp:.2f}"]
        cells += [f"{d:.2f} → {p:.2f} ({p / d:.2f})" for d, p in r["times"].values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def doc_block(text, args, argv):
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, "
               f"Keras {keras.__version__}")
    command = " ".join(["python benchmarks/structured_speedup.py", *argv])
    return "\n".join([
        BEGIN,
        f"Measured on {machine}; {args.threads} thread(s) for Keras and TFLite; median of {args.rounds} "
        f"interleaved rounds × {args.calls} calls.",
        "",
        text,
        "",
        f"{TORCH_PRUNING}.",
        "",
        "    " + command,
        END,
    ])


def write_doc(path, block):
    content = Path(path).read_text()
    if BEGIN in content:
        head, rest = content.split(BEGIN, 1)
        content = head + block + rest.split(END, 1)[1]
    else:
        content = content.rstrip() + "\n\n## Structured pruning: measured speed-up\n\n" + block + "\n"
    with files.replacing(path) as tmp:
        Path(tmp).write_text(content)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(name, args, folder) for name in args.models]
    text = table(rows, args)
    print(text)
    if args.doc:
        write_doc(args.doc, doc_block(text, args, argv))
        print(f"written to {args.doc}")


if __name__ == "__main__":
    main()
