"""Post-training pruning of a small language model: dense, magnitude, Wanda and SparseGPT, offline.

A GPT-2-style KerasHub model (``keras_hub.models.GPT2CausalLM``, built from a config: nothing
downloads) is trained on bytes of the Python standard library's source, then pruned without
retraining by :func:`tfprune.posttraining.prune` at 50 % unstructured and 2:4, each method from the
same dense weights and with the same calibration sequences (from the training files). Prints the
perplexity per byte on held-out files (other files of the standard library, in non-overlapping
windows as the papers evaluate WikiText), the time of each method and the peak memory NumPy
allocated while pruning (``tracemalloc``; TensorFlow's own buffers are not counted), as a
markdown table. The cores may be shared: each method is timed ``--repeats`` times and the fastest
time shown.

    python examples/posttraining_lm.py --steps 800              # about 15 minutes on 2 cores
    python examples/posttraining_lm.py --steps 200 --eval-windows 64   # a quick check

The papers' figures (LLaMA-7B, WikiText-2, 128 calibration sequences of 2048 tokens: dense 5.68,
magnitude 17.29, Wanda 7.26, SparseGPT 7.22 at 50 %) come from a 7-billion-parameter model; this
CPU trains a model of under a million parameters, so compare the methods' order, not the values.
"""

import argparse
import os
import sys
import sysconfig
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402

SETTINGS = (("50 %", {"sparsity": 0.5}), ("2:4", {"pattern": "2:4"}))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=8.0, help="bytes of standard-library source to read")
    parser.add_argument("--held-out", type=float, default=0.1, help="fraction of the files (the last ones) held out")
    parser.add_argument("--sequence", type=int, default=128, help="tokens (bytes) per sequence")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=800, help="training steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--samples", type=int, default=128, help="calibration sequences (the papers' 128)")
    parser.add_argument("--eval-windows", type=int, default=256, help="held-out windows for the perplexity")
    parser.add_argument("--methods", default="magnitude,wanda,sparsegpt")
    parser.add_argument("--repeats", type=int, default=2, help="prunings timed per method (the fastest is shown)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def corpus(megabytes, held_out):
    """The standard library's ``.py`` files in sorted order, as bytes: ``(training, held-out)``,
    split between files."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    texts, size = [], 0
    for path in files:
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        data = path.read_bytes()
        texts.append(data)
        size += len(data)
        if size >= megabytes * 1e6:
            break
    cut = int(len(texts) * (1.0 - held_out))
    return (np.frombuffer(b"".join(texts[:cut]), np.uint8).astype("int32"),
            np.frombuffer(b"".join(texts[cut:]), np.uint8).astype("int32"))


def windows(tokens, starts, length):
    """``(x, y)`` for causal language modelling: ``length`` tokens from each start, and the next ones."""
    idx = starts[:, None] + np.arange(length + 1)[None, :]
    seq = tokens[idx]
    x = {"token_ids": seq[:, :-1], "padding_mask": np.ones((len(starts), length), "int32")}
    return x, seq[:, 1:]


def build(args):
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=256, num_layers=args.layers, num_heads=args.heads,
                                             hidden_dim=args.hidden, intermediate_dim=4 * args.hidden,
                                             max_sequence_length=args.sequence, dropout=0.0)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def perplexity(model, x, y):
    """``exp`` of the mean negative log-likelihood per token (per byte)."""
    logits = model.predict(x, batch_size=64, verbose=0).astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(np.exp(-np.take_along_axis(log_probs, y[..., None], axis=-1).mean()))


def zeros(model):
    kernels = [t.variable.numpy() for t in tfprune.prunable_weights(model)
               if tfprune.posttraining.linear.is_linear(t)]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train, held_out = corpus(args.megabytes, args.held_out)
    print(f"corpus: {len(train):,} training bytes, {len(held_out):,} held-out bytes")

    model = build(args)
    model.compile(optimizer=keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(0.0, args.steps, 0.0,
                                                                                         warmup_target=args.lr,
                                                                                         warmup_steps=args.steps // 20)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = windows(train, rng.integers(0, len(train) - args.sequence - 1, args.steps * args.batch_size), args.sequence)
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=2)
    train_seconds = time.perf_counter() - start
    dense = model.get_weights()

    starts = np.arange(0, len(held_out) - args.sequence - 1, args.sequence)[:args.eval_windows]
    test = windows(held_out, starts, args.sequence)
    calibration = windows(train, rng.integers(0, len(train) - args.sequence - 1, args.samples), args.sequence)[0]
    rows = [("dense", "", perplexity(model, *test), zeros(model), None, None)]
    for setting, amount in SETTINGS:
        for criterion in args.methods.split(","):
            seconds, peak = [], 0.0
            for _ in range(args.repeats):  # from the dense weights each time; the fastest is reported
                model.set_weights(dense)
                tracemalloc.start()
                start = time.perf_counter()
                tfprune.posttraining.prune(model, criterion, data=calibration, samples=args.samples, verbose=0,
                                           **amount)
                seconds.append(time.perf_counter() - start)
                peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
                tracemalloc.stop()
            seconds = min(seconds)
            rows.append((criterion, setting, perplexity(model, *test), zeros(model), seconds, peak))
            print(rows[-1], flush=True)

    params = sum(int(np.prod(w.shape)) for w in dense)
    print(f"\nGPT-2-style byte model: {args.layers} layers, hidden {args.hidden}, {params:,} parameters, "
          f"sequence {args.sequence}; trained {args.steps} steps of {args.batch_size} ({train_seconds:.0f} s); "
          f"{args.samples} calibration sequences; perplexity per byte on {len(starts)} held-out windows "
          f"({len(starts) * args.sequence:,} bytes).\n")
    print("| method | sparsity | held-out perplexity | linear weights zero | prune time (s) | peak NumPy memory (MiB) |")
    print("|---|---|---|---|---|---|")
    for criterion, setting, ppl, zero, seconds, peak in rows:
        timing = "" if seconds is None else f"{seconds:.1f}"
        memory = "" if peak is None else f"{peak:.1f}"
        print(f"| {criterion} | {setting} | {ppl:.3f} | {zero:.3f} | {timing} | {memory} |")


if __name__ == "__main__":
    main()
