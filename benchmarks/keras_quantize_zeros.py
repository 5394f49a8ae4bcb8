"""Which of Keras' model.quantize modes keep the exact zeros of a pruned model (docs/quantization.md).

    python benchmarks/keras_quantize_zeros.py

An 80 %-sparse (magnitude or random masks, per layer) LeNet-300-100 and a token model (Embedding, EinsumDense, Dense),
untrained; each mode quantizes a copy of the stripped model; tfprune.profile counts the dequantized
non-zeros, tfprune.quantize the zeros lost.
"""

import warnings

import keras
import numpy as np

import tfprune

L = keras.layers


def lenet():
    return keras.Sequential([keras.Input((784,)), L.Dense(300, activation="relu"), L.Dense(100, activation="relu"),
                             L.Dense(10)], name="lenet_300_100")


def tokens():
    x = inputs = keras.Input((16,), dtype="int32")
    x = L.Embedding(1000, 64)(x)
    x = L.EinsumDense("btd,de->bte", output_shape=(16, 128), bias_axes="e", activation="relu")(x)
    return keras.Model(inputs, L.Dense(10)(L.Flatten()(x)), name="tokens")


def main():
    print("| model | criterion | mode | params | non-zeros float | non-zeros quantized | zeros lost | rounded to zero | MACs float = quantized |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for build, criterion in [(b, c) for b in (lenet, tokens) for c in ("magnitude", "random")]:
        keras.utils.set_random_seed(0)
        pruned = tfprune.prune_at_init(build(), criterion, sparsity=0.8, scope="local", include_bias=False,
                                       verbose=0, seed=0)
        plain = tfprune.strip(pruned)
        before = tfprune.profile(plain, verbose=0).total
        for mode in ("int8", "int4", "float8"):
            copy = keras.models.clone_model(plain)
            copy.set_weights(plain.get_weights())
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Layer .* does not have a `quantize` method")
                warnings.filterwarnings("ignore", "Invalid quantization mode")  # Embedding has no float8
                lost = tfprune.quantize(copy, mode)
            after = tfprune.profile(copy, verbose=0).total
            print(f"| {plain.name} | {criterion} | {mode} | {after.params:,} | {before.nonzero:,} | {after.nonzero:,} | {lost} | "
                  f"{before.nonzero - after.nonzero:,} | {before.macs == after.macs} ({after.macs:,}) |")


if __name__ == "__main__":
    main()
