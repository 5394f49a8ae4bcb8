"""The tf_keras worker of ``benchmarks/masked_overhead.py``: TF-MOT's wrapper beside the same model unwrapped.

Started by ``masked_overhead.py`` in its own process (importing TF-MOT makes ``tf.keras`` mean
tf_keras); times ``tfmot`` (``prune_low_magnitude`` with ``ConstantSparsity(0.9, begin_step=0,
frequency=10000)``, ``UpdatePruningStep`` in every ``fit``) and ``tfmot_dense`` for the networks and
XLA settings it is given, on one device or under MirroredStrategy, checks that the timed steps
trained the pruned model and left its pruned weights zero, and prints one JSON line.

    python benchmarks/masked_overhead_tfmot.py --setup one --networks lenet_300_100 --xla off \
        --variants tfmot,tfmot_dense --steps 5 --blocks 1 --repeat 0
"""

import json

import masked_overhead as bench

FREQUENCY = 10_000  # no mask update during the timed steps (fewer than 10,000)


def pruning_wrappers(model):
    """The TF-MOT pruning wrappers of ``model``, those without prunable weights (Flatten's) included."""
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    return [layer for layer in model.layers if isinstance(layer, PruneLowMagnitude)]


def pruned_model(network, tf_keras, tfmot):
    """``network`` in tf_keras, every layer wrapped by TF-MOT at 90 % sparsity, pruned at its next step.

    TF-MOT prunes when its step counter, counted from 1, reaches a multiple of the frequency: the
    counter of every wrapper (``UpdatePruningStep`` resets them all to 0 if the first one is still
    at -1) is set to ``FREQUENCY - 1`` so that the first training step computes the masks.
    """
    schedule = tfmot.sparsity.keras.ConstantSparsity(bench.SPARSITY, begin_step=0, frequency=FREQUENCY)
    model = tfmot.sparsity.keras.prune_low_magnitude(bench.BUILDERS[network](tf_keras), pruning_schedule=schedule)
    for layer in pruning_wrappers(model):
        layer.pruning_step.assign(FREQUENCY - 1)
    return model


def tfmot_worker(args):
    """Times ``tfmot`` and ``tfmot_dense`` for every network and XLA setting; returns ``{group: result}``."""
    strategy = bench.strategy_for(args.setup)
    import tensorflow_model_optimization as tfmot
    import tf_keras

    results = {}
    for network in args.networks.split(","):
        dataset = bench.fixed_batches(network)
        for xla in args.xla.split(","):
            with strategy.scope():
                models, failed = {}, {}
                for variant in args.variants.split(","):
                    tf_keras.utils.set_random_seed(0)  # the same initial weights for both variants
                    prune = variant == "tfmot"
                    model = pruned_model(network, tf_keras, tfmot) if prune else bench.BUILDERS[network](tf_keras)
                    loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                    model.compile(tf_keras.optimizers.SGD(bench.LEARNING_RATE), loss, jit_compile=xla == "on")
                    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()] if prune else []
                    failure = bench.warm_up(model, dataset, callbacks)  # TF-MOT computes its masks here
                    if failure:
                        failed[variant] = failure
                    else:
                        models[variant] = (model, callbacks)
            wrappers = pruning_wrappers(models["tfmot"][0]) if "tfmot" in models else []
            before = {w.layer.name: w.layer.kernel.numpy() for w in wrappers if w.pruning_vars}
            ms = bench.time_in_alternating_blocks(models, dataset, args.steps, args.repeat,
                                                  tf_keras.callbacks.LambdaCallback, args.blocks)
            result = {"ms": ms, "failed": failed, "sparsity": {}}
            if wrappers:
                steps_run = 2 + args.blocks * (args.steps + 2)  # warm-up, then the timed fits
                for w in wrappers:
                    step = int(w.pruning_step.numpy())
                    assert step == FREQUENCY - 1 + steps_run, f"TF-MOT: {w.name} is at step {step}, ran {steps_run}"
                stripped = tfmot.sparsity.keras.strip_pruning(models["tfmot"][0])
                kernels = {layer.name: layer.kernel.numpy() for layer in stripped.layers if hasattr(layer, "kernel")}
                result["sparsity"]["tfmot"] = bench.check_kept("TF-MOT after strip_pruning", kernels,
                                                               changed_from=before)
            results[bench.group_key(network, args.setup, xla)] = result
    return results


if __name__ == "__main__":
    print(json.dumps(tfmot_worker(bench.worker_args())))
