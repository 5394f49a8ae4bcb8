"""Which of Keras' model.quantize modes keep the exact zeros of a pruned model (docs/quantization.md).

    python benchmarks/keras_quantize_zeros.py

An 80 %-sparse (magnitude or random masks, per layer) LeNet-300-100 and a token model (Embedding, EinsumDense, Dense),
untrained; each mode quantizes a copy of the stripped model; tfprune.profile counts the dequantized
non-zeros, tfprune.quantize the zeros lost. GPTQ (4 and 8 bits) and AWQ (4 bits; Keras' default groups of 128) quantize the Dense
and EinsumDense layers of a block model (Embedding → block → Dense) calibrated on 64 random token
sequences, once as the installed Keras runs them and once with their calibration running: in Keras
3.15.1 it does not (keras-team/keras#23512: the hooks patch ``layer.call``, which a layer switched to
a quantized mode no longer runs, so GPTQ is round-to-nearest and AWQ activation-blind), and the
second run sends those calls through ``layer.call``, as that fix does.
"""

import contextlib
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


def blocks():
    x = inputs = keras.Input((16,), dtype="int32")
    block = keras.Sequential([keras.Input((16, 64)), L.Dense(256), L.ReLU(), L.EinsumDense("btd,de->bte", (16, 64),
                                                                                           bias_axes="e")], name="block")
    return keras.Model(inputs, L.Dense(10)(L.Flatten()(block(L.Embedding(1000, 64)(x)))), name="blocks")


@contextlib.contextmanager
def calibration_running():
    """Calls of a gptq/awq layer not yet calibrated go through ``layer.call``, where Keras' hooks are."""
    originals = {cls: cls.quantized_call for cls in (L.Dense, L.EinsumDense)}

    def routed(original):
        def quantized_call(self, *args, **kwargs):
            mode = self.quantization_mode
            if mode in ("gptq", "awq") and not getattr(self, f"is_{mode}_calibrated"):
                return self.call(*args, **kwargs)
            return original(self, *args, **kwargs)
        return quantized_call

    for cls, original in originals.items():
        cls.quantized_call = routed(original)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.quantized_call = original


def quantized_copy(plain, mode, weight_bits=4):
    copy = keras.models.clone_model(plain)
    copy.set_weights(plain.get_weights())
    kwargs = {}
    if mode in ("gptq", "awq"):
        data = [np.random.default_rng(i).integers(0, 1000, 16) for i in range(64)]
        config_class = {"gptq": keras.quantizers.GPTQConfig, "awq": keras.quantizers.AWQConfig}[mode]
        bits = {"weight_bits": weight_bits} if mode == "gptq" else {}  # AWQ has 4 bits only
        kwargs["config"] = config_class(dataset=data, tokenizer=object(), num_samples=64, sequence_length=16, **bits,
                                        quantization_layer_structure={"pre_block_layers": [copy.layers[1]],
                                                                      "sequential_blocks": [copy.get_layer("block")]})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Layer .* does not have a `quantize` method")
        warnings.filterwarnings("ignore", "Invalid quantization mode")  # Embedding has no float8, gptq, awq
        warnings.filterwarnings("ignore", "quantize: mode")  # the LostZerosWarning: counted in the table
        lost = tfprune.quantize(copy, mode, **kwargs)
    return copy, lost


def main():
    print("| model | criterion | mode | params | non-zeros float | non-zeros quantized | zeros lost | rounded to zero | MACs float = quantized |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    runs = [(b, c, m, False, None) for b in (lenet, tokens) for c in ("magnitude", "random") for m in ("int8", "int4", "float8")]
    runs += [(blocks, c, m, calibrated, bits) for c in ("magnitude", "random") for m, bits in (("gptq", 4), ("gptq", 8), ("awq", 4))
             for calibrated in (False, True)]
    for build, criterion, mode, calibrated, bits in runs:
        keras.utils.set_random_seed(0)
        pruned = tfprune.prune_at_init(build(), criterion, sparsity=0.8, scope="local", include_bias=False,
                                       verbose=0, seed=0)
        plain = tfprune.strip(pruned)
        before = tfprune.profile(plain, verbose=0).total
        with calibration_running() if calibrated else contextlib.nullcontext():
            copy, lost = quantized_copy(plain, mode, bits)
        after = tfprune.profile(copy, verbose=0).total
        mode = f"{mode} ({bits} bits){', calibration running' if calibrated else ''}" if bits else mode
        rounded = before.nonzero - after.nonzero + lost  # non-zeros made zero (after = before - rounded + lost)
        print(f"| {plain.name} | {criterion} | {mode} | {after.params:,} | {before.nonzero:,} | {after.nonzero:,} | {lost:,} | "
              f"{rounded:,} | {before.macs == after.macs} ({after.macs:,}) |")


if __name__ == "__main__":
    main()
