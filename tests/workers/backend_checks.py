"""Each mechanism of tfprune once, on the Keras backend of the process (``KERAS_BACKEND``), on models
built from the arrays of ``$BACKEND_CHECKS_DIR/inputs.npz``: the scores and masks of magnitude,
SNIP, GraSP and SynFlow on a small CNN, a small Transformer block and a float64-oracle MLP; the
masks of prune_at_init (and in the 2:4 pattern), get_masks/apply_masks, the pruned CNN's profile
and report, a wrapped CNN saved and loaded, random, FORCE and iterative SNIP, structured Taylor
scores, removal and ``structured.prune``'s loop on the CNN; the masks of every GradualPruning update
(with PruningSummaries' scalars) and after every DynamicSparse (RigL, SET) step in ``fit``;
AutoPrune's estimators and their gradients, and its layer and optimiser in ``fit``; Wanda and
SparseGPT on the Transformer block; on JAX, SNIP and GradualPruning under DataParallel, SNIP
under ModelParallel (and its masks' sharding), and the error for a model left on two devices; a pruned and stripped CNN saved as .keras with its
predictions; the errors of TensorFlow-only features. Writes ``results_<backend>.npz`` (and ``stripped_<backend>.keras``) there.

tests/test_backends.py runs it in a fresh interpreter per backend and calls :func:`results` in its
own (TensorFlow) process for the reference."""

import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import tfprune
from tfprune import autoprune
from tfprune.autodiff import engines
from tfprune.callbacks import DynamicSparse, GradualPruning
from tfprune.sparsity.schedules import PolynomialDecay

L = keras.layers
CRITERIA = ("magnitude", "snip", "grasp", "synflow")
# One round each; GraSP without the Glorot re-draw (a random draw differs across backends).
OPTIONS = {"magnitude": {}, "snip": {}, "grasp": {"reinit_dense": False}, "synflow": {}}
ROUNDS = {"synflow": 3}  # SynFlow iterates: three rounds, the masked network rescored in each
# Weights are set from arrays: drawing initial ones would cost JAX a compilation per shape.
ZEROS = "zeros"
GRADUAL = dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=6, frequency=2)


def _with_weights(model, weights):
    if weights is not None:
        model.set_weights(list(weights))
    return model


def cnn(weights=None):
    """Conv → batch norm → conv → dense, with ``weights`` (``get_weights()`` order) if given."""
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, activation="relu", kernel_initializer=ZEROS, name="conv1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(3, 3, activation="relu", kernel_initializer=ZEROS, name="conv2")(x)
    x = L.Flatten()(x)
    return _with_weights(keras.Model(inputs, L.Dense(4, kernel_initializer=ZEROS, name="logits")(x), name="cnn"),
                         weights)


def transformer(weights=None):
    """Embedding → self-attention with a residual → layer norm → ReLU MLP → pooled logits."""
    tokens = keras.Input((5,), dtype="int32")
    h = L.Embedding(11, 8, embeddings_initializer=ZEROS, name="embedding")(tokens)
    h = L.LayerNormalization(name="norm")(h + L.MultiHeadAttention(2, 4, kernel_initializer=ZEROS, name="attention")(h, h))
    h = L.Dense(8, activation="relu", kernel_initializer=ZEROS, name="mlp")(h)
    outputs = L.Dense(4, kernel_initializer=ZEROS, name="logits")(L.GlobalAveragePooling1D()(h))
    return _with_weights(keras.Model(tokens, outputs, name="transformer"), weights)


def mlp(weights=None):
    """A 5-7-3 tanh MLP: the network of the float64 oracles (tests/scores/numpy_mlp.py)."""
    inputs = keras.Input((5,))
    x = L.Dense(7, activation="tanh", kernel_initializer=ZEROS, name="d0")(inputs)
    x = L.Dense(3, kernel_initializer=ZEROS, name="d1")(x)
    return _with_weights(keras.Model(inputs, x, name="mlp"), weights)


def _scores_and_masks(out, prefix, model, data):
    """Each criterion's scores of ``model`` and the masks that keep the highest half of them."""
    for criterion in CRITERIA:
        scores = tfprune.scores.get(criterion)(model, tfprune.prunable_weights(model), data, **OPTIONS[criterion])
        for i, s in enumerate(scores):
            out[f"{prefix}/{criterion}/score/{i}"] = keras.ops.convert_to_numpy(s)
        for i, m in enumerate(tfprune.masks.from_scores(scores, sparsity=0.5)):
            out[f"{prefix}/{criterion}/mask/{i}"] = np.asarray(m)


def _more_criteria(out, model, data):
    """Random (seeded), FORCE's and iterative SNIP's scores (batch norm on batch statistics),
    Taylor's unit scores, and the predictions of the model with two of conv1's filters removed."""
    for i, s in enumerate(tfprune.scores.get("random")(model, tfprune.prunable_weights(model), seed=3)):
        out[f"cnn/random/score/{i}"] = keras.ops.convert_to_numpy(s)
    for criterion in ("force", "iter_snip"):
        scores = tfprune.scores.get(criterion)(model, tfprune.prunable_weights(model), data)
        for i, s in enumerate(scores):
            out[f"cnn/{criterion}/score/{i}"] = keras.ops.convert_to_numpy(s)
    for layer, scores in tfprune.structured.criteria.taylor(model, data=data).items():
        out[f"structured/taylor/{layer}"] = np.asarray(scores)
    smaller = tfprune.structured.remove(model, {"conv1": [0, 2]})
    out["structured/removed/predictions"] = keras.ops.convert_to_numpy(smaller(data[0], training=False))


def _pruned(out, model, data, criteria=("snip", "synflow"), prefix="pruned"):
    """The masks of ``prune_at_init`` by SNIP and by SynFlow (iterative: three rounds, the masked
    network rescored in each); each pruned model is a new model sharing ``model``'s layers. Returns
    the last one."""
    for criterion in criteria:
        pruned = tfprune.prune_at_init(model, criterion, sparsity=0.5, data=data, rounds=ROUNDS.get(criterion, 1),
                                       verbose=0)
        for i, m in enumerate(tfprune.get_masks(pruned)):
            out[f"{prefix}/{criterion}/{i}"] = np.asarray(m)
    return pruned


class _MaskRecorder(keras.callbacks.Callback):
    """After GradualPruning in the callbacks: at each new update, the dense weights it ranked (read
    before the update's step trains them) and the masks before and after it."""

    def __init__(self, pruning):
        super().__init__()
        self.pruning, self.records, self.before = pruning, [], None

    def _state(self):
        targets = tfprune.prunable_weights(self.model)
        return ([keras.ops.convert_to_numpy(t.variable.value) for t in targets],
                [keras.ops.convert_to_numpy(t.mask.value) for t in targets])

    def on_train_batch_begin(self, batch, logs=None):
        if len(self.pruning.updates) > len(self.records):
            update = self.pruning.updates[-1]
            weights, masks = self.before
            self.records.append((update.step, update.target_sparsity, weights, masks, self._state()[1]))

    def on_train_batch_end(self, batch, logs=None):
        self.before = self._state()

    def on_train_begin(self, logs=None):
        self.before = self._state()


def _patterns_masks_and_reports(out, model, data, folder):
    """SNIP's masks in the 2:4 pattern; ``get_masks``/``apply_masks`` (the masks turned around);
    ``report``'s table; a wrapped model saved as .keras and loaded on this backend: its masks and
    predictions."""
    pruned = tfprune.prune_at_init(model, "snip", pattern="2:4", data=data, verbose=0,  # conv1 has 2 inputs
                                   policy=tfprune.policies.ExcludeLayers(names=["conv1"]))
    for i, m in enumerate(tfprune.get_masks(pruned)):
        out[f"pattern/snip/{i}"] = np.asarray(m)
    tfprune.apply_masks(pruned, [m[::-1] for m in tfprune.get_masks(pruned)])
    for i, m in enumerate(tfprune.get_masks(pruned)):
        out[f"applied/{i}"] = np.asarray(m)
    out["report"] = np.asarray(str(tfprune.report(pruned, verbose=0)))
    path = folder / f"wrapped_{keras.backend.backend()}.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    out["reloaded/masks_equal"] = np.asarray([np.array_equal(a, b) for a, b in
                                             zip(tfprune.get_masks(loaded), tfprune.get_masks(pruned))])
    out["reloaded/predictions"] = keras.ops.convert_to_numpy(loaded(data[0], training=False))
    out["reloaded/expected"] = keras.ops.convert_to_numpy(pruned(data[0], training=False))


def _gradual(out, arrays, prefix="gradual", log_dir=None):
    """The masks of every GradualPruning update in ``fit`` (and, with ``log_dir``, PruningSummaries'
    event files written there)."""
    model = tfprune.wrap(cnn(listed(arrays, "cnn/weights")))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruning = GradualPruning(PolynomialDecay(**GRADUAL))
    recorder = _MaskRecorder(pruning)
    summaries = [] if log_dir is None else [tfprune.callbacks.PruningSummaries(log_dir)]
    model.fit(arrays["cnn/x"], arrays["cnn/y"], batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[pruning, recorder, *summaries])
    for r, (step, sparsity, weights, before, after) in enumerate(recorder.records):
        out[f"{prefix}/{r}/step"] = np.asarray(step)
        out[f"{prefix}/{r}/sparsity"] = np.asarray(sparsity)
        for i, (w, b, a) in enumerate(zip(weights, before, after)):
            out[f"{prefix}/{r}/{i}/weights"], out[f"{prefix}/{r}/{i}/before"], out[f"{prefix}/{r}/{i}/after"] = w, b, a


class _MasksPerStep(keras.callbacks.Callback):
    """The masks after every training step."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def on_train_batch_end(self, batch, logs=None):
        self.masks.append([keras.ops.convert_to_numpy(t.mask.value) for t in tfprune.prunable_weights(self.model)])


def _dynamic(out, arrays):
    """The masks after each step of DynamicSparse (RigL, SET) updating every 2 steps in ``fit``."""
    x, y = arrays["cnn/x"], arrays["cnn/y"]
    for criterion in ("rigl", "set"):
        model = tfprune.wrap(cnn(listed(arrays, "cnn/weights")))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        recorder = _MasksPerStep()
        dynamic = DynamicSparse(criterion, 0.8, update_frequency=2, end_step=6, seed=1,
                                data=(x, y) if criterion == "rigl" else None)
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[dynamic, recorder])
        for step, masks in enumerate(recorder.masks):
            for i, m in enumerate(masks):
                out[f"dynamic/{criterion}/{step}/{i}"] = m


def _stripped(out, arrays, folder):
    pruned = tfprune.prune_at_init(cnn(listed(arrays, "cnn/weights")), "magnitude", sparsity=0.6)
    stripped = tfprune.strip(pruned)
    stripped.save(folder / f"stripped_{keras.backend.backend()}.keras")
    out["stripped/predictions"] = keras.ops.convert_to_numpy(stripped(arrays["cnn/x"], training=False))
    out["stripped/zeros"] = np.asarray([np.count_nonzero(w == 0) for w in stripped.get_weights()])


def _structured_loop(out, model, data):
    """``structured.prune``'s loop by Taylor on the CNN to 60 % of its MACs in steps of a quarter
    of the removable units, without fine-tuning: the filters each layer keeps, MACs and parameters."""
    result = tfprune.structured.prune(model, "taylor", data=data, kept_macs=0.6, step_fraction=0.25, finetune_steps=0,
                                      final_finetune_epochs=0, samples=len(data[0]), seed=0, verbose=0)
    for layer in result.model.layers:
        if layer.weights:
            out[f"structured/prune/shape/{layer.name}"] = np.asarray(layer.weights[0].shape)
    out["structured/prune/counts"] = np.asarray([[step.macs, step.params] for step in result.steps])


def _autoprune_fit(out, arrays):
    """AutoPrune's layer and AuxOptimizer in ``fit`` (Adam on W, Adam at 0.1 on m, λ = 1e-2, two
    epochs of 4 batches): the auxiliary parameters after training and the masks ``harden`` gives."""
    model = autoprune.wrap(cnn(listed(arrays, "cnn/weights")), penalty=1e-2, initial_aux=0.2)
    model.compile(autoprune.AuxOptimizer(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-1)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(arrays["cnn/x"], arrays["cnn/y"], batch_size=4, epochs=2, shuffle=False, verbose=0)
    for i, m in enumerate(autoprune.aux_variables(model)):
        out[f"autoprune/fit/aux/{i}"] = keras.ops.convert_to_numpy(m.value)
    for i, m in enumerate(tfprune.get_masks(autoprune.harden(model))):
        out[f"autoprune/fit/mask/{i}"] = np.asarray(m)


def _posttraining(out, arrays):
    """Wanda and SparseGPT (50 %) on the Transformer block's Dense and EinsumDense layers, block by
    block on its 16 sequences: every pruned weight after."""
    for criterion in ("wanda", "sparsegpt"):
        model = transformer(listed(arrays, "transformer/weights"))
        tfprune.posttraining.prune(model, criterion, data=arrays["transformer/x"], sparsity=0.5, samples=16,
                                   batch_size=8, verbose=0)
        for t in tfprune.prunable_weights(model):
            out[f"posttraining/{criterion}/{t.variable.path}"] = keras.ops.convert_to_numpy(t.variable.value)


def listed(arrays, name):
    """The arrays stored as ``name/0``, ``name/1``, … in order."""
    count = sum(1 for key in arrays if key.rsplit("/", 1)[0] == name)
    return [arrays[f"{name}/{i}"] for i in range(count)]


def _estimators(out, arrays):
    """AutoPrune's masked kernel and penalty with their gradients (through the backend's autodiff)
    for each straight-through estimator: weight mode decoupled, neuron mode exact, and R₂."""
    engine = engines.current()
    tau, alpha = float(arrays["autoprune/tau"]), float(arrays["autoprune/alpha"])
    cases = {"weight": (arrays["autoprune/w"], arrays["autoprune/m_weight"], True),
             "neuron": (arrays["autoprune/w"], arrays["autoprune/m_neuron"], False)}
    dy = keras.ops.convert_to_tensor(arrays["autoprune/dy"])
    for ste in autoprune.STES:
        for mode, (w, m, decoupled) in cases.items():
            def projected(values):
                kernel = autoprune.masked_kernel(values[0], values[1], ste=ste, decoupled=decoupled, threshold=tau,
                                                 alpha=alpha)
                return keras.ops.sum(kernel * dy), kernel

            _, kernel, (d_w, d_m) = engine.value_and_gradients(projected, [keras.ops.convert_to_tensor(w),
                                                                          keras.ops.convert_to_tensor(m)])
            for part, value in (("out", kernel), ("dw", d_w), ("dm", d_m)):
                out[f"autoprune/{ste}/{mode}/{part}"] = keras.ops.convert_to_numpy(value)
        norm, _, (d_norm,) = engine.value_and_gradients(
            lambda values: (autoprune.aux_norm(values[0], 2, ste=ste, threshold=tau, alpha=alpha), None),
            [keras.ops.convert_to_tensor(arrays["autoprune/m_weight"])])
        out[f"autoprune/{ste}/norm"], out[f"autoprune/{ste}/dnorm"] = (keras.ops.convert_to_numpy(norm),
                                                                       keras.ops.convert_to_numpy(d_norm))


def _data_parallel(out, arrays):
    """SNIP's masks and GradualPruning in ``fit`` under ``keras.distribution.DataParallel`` over
    every JAX device (the test starts JAX with two host devices); then, the distribution unset,
    the error of wrapping the model built under it."""
    import jax

    with keras.distribution.DataParallel(devices=jax.devices()).scope():
        out["data_parallel/devices"] = np.asarray(len(jax.devices()))
        model = cnn(listed(arrays, "cnn/weights"))
        _pruned(out, model, (arrays["cnn/x"], arrays["cnn/y"]), ("snip",), "data_parallel/pruned")
        _gradual(out, arrays, "data_parallel/gradual")
    layers = [layer.name for layer in model.layers]
    try:  # the model's variables are replicated on both devices, and no distribution is set now
        tfprune.wrap(model)
    except Exception as error:  # the test checks which
        out["errors/placement"] = np.asarray(f"{type(error).__name__}: {error}")
    out["errors/placement/unchanged"] = np.asarray([layer.name for layer in model.layers] == layers)


def _model_parallel(out, arrays):
    """SNIP's masks under ``keras.distribution.ModelParallel`` over the two JAX devices, conv1's and
    the logits' kernels sharded on their outputs, and the sharding of every mask and its kernel."""
    import jax

    layout_map = keras.distribution.LayoutMap(keras.distribution.DeviceMesh((2,), ["model"], jax.devices()))
    layout_map["conv1/kernel"] = (None, None, None, "model")
    layout_map["logits/kernel"] = (None, "model")
    with keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name=None).scope():
        pruned = _pruned(out, cnn(listed(arrays, "cnn/weights")), (arrays["cnn/x"], arrays["cnn/y"]), ("snip",),
                         "model_parallel/pruned")
        out["model_parallel/specs"] = np.asarray([[str(t.variable.value.sharding.spec), str(t.mask.value.sharding.spec)]
                                                  for t in tfprune.prunable_weights(pruned)])


def _tensorflow_only(out, arrays, folder):
    """The errors of TFLite export and of ``strategy=`` (a backend other than TensorFlow only)."""
    model, data = cnn(listed(arrays, "cnn/weights")), (arrays["cnn/x"], arrays["cnn/y"])
    calls = {"tflite": lambda: tfprune.export.tflite(model, folder / "refused.tflite"),
             "strategy": lambda: tfprune.scores.snip(model, tfprune.prunable_weights(model), data,
                                                     strategy=tf.distribute.get_strategy())}
    for name, call in calls.items():
        try:
            call()
        except Exception as error:  # the test checks which
            out[f"errors/{name}"] = np.asarray(f"{type(error).__name__}: {error}")


def results(folder):
    """Every check's numbers, as a dict of arrays (see the module docstring)."""
    folder = Path(folder)
    arrays = dict(np.load(folder / "inputs.npz"))
    out = {}
    for name, build in (("cnn", cnn), ("transformer", transformer), ("mlp", mlp)):
        model, data = build(listed(arrays, f"{name}/weights")), (arrays[f"{name}/x"], arrays[f"{name}/y"])
        _scores_and_masks(out, name, model, data)
        if name == "cnn":
            _more_criteria(out, model, data)
            pruned = _pruned(out, model, data)
            out["profile"] = np.asarray(json.dumps(tfprune.profile(pruned, verbose=0).to_dict(), sort_keys=True))
            _structured_loop(out, model, data)
            _patterns_masks_and_reports(out, model, data, folder)
    _gradual(out, arrays, log_dir=folder / f"summaries_{keras.backend.backend()}")
    _autoprune_fit(out, arrays)
    _posttraining(out, arrays)
    _dynamic(out, arrays)
    _estimators(out, arrays)
    _stripped(out, arrays, folder)
    if keras.backend.backend() != "tensorflow":
        _tensorflow_only(out, arrays, folder)
    if keras.backend.backend() == "jax":
        _data_parallel(out, arrays)
        _model_parallel(out, arrays)
    return out


if __name__ == "__main__":
    directory = Path(os.environ["BACKEND_CHECKS_DIR"])
    np.savez(directory / f"results_{keras.backend.backend()}.npz", **results(directory))
