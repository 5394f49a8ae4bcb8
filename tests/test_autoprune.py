"""AutoPrune: the custom-gradient op against its formulas, the layer, optimiser, callback, harden."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import L, batch, residual_cnn, subclassed_mlp
from subprocess_util import run_python

import tfprune
from tfprune import autoprune
from tfprune.base import walk

ALPHA, TAU = 0.05, 0.1


def numpy_slope(m, ste):
    """g′(m) in float64: sigmoid, LeakyReLU's (1 above τ, α below) or 1."""
    if ste == "softplus":
        return 1.0 / (1.0 + np.exp(-m))
    if ste == "leaky_relu":
        return np.where(m > TAU, 1.0, ALPHA)
    return np.ones_like(m)


def op_gradients(w, m, dy, **options):
    w, m = tf.constant(w, tf.float32), tf.constant(m, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([w, m])
        out = autoprune.masked_kernel(w, m, threshold=TAU, alpha=ALPHA, **options)
    dw, dm = tape.gradient(out, [w, m], output_gradients=tf.constant(dy, tf.float32))
    return out.numpy(), dw.numpy(), dm.numpy()


def random_case(mode, seed):
    rng = np.random.default_rng(seed)
    shape = (3, 3, 2, 5)
    w, dy = rng.normal(size=shape), rng.normal(size=shape)
    m = rng.normal(scale=0.5, size=shape if mode == "weight" else shape[-1:])
    return w, m, dy


@pytest.mark.parametrize("mode", ["weight", "neuron"])
@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("ste", autoprune.STES)
def test_masked_kernel_forward_and_gradients_match_the_formulas(ste, decoupled, mode):
    """W ⊙ h(m); ∂W = dy ⊙ h(m); ∂m = dy ⊙ sign(W) (or W) ⊙ g′(m), summed over a filter in neuron mode."""
    w, m, dy = random_case(mode, seed=1)
    out, dw, dm = op_gradients(w, m, dy, ste=ste, decoupled=decoupled)
    gate = (m > TAU).astype(np.float64)  # broadcasts over the kernel's last axis in neuron mode
    expected_dm = dy * (np.sign(w) if decoupled else w) * numpy_slope(m, ste)
    if mode == "neuron":
        expected_dm = expected_dm.sum(axis=(0, 1, 2))
    assert 0 < gate.sum() < gate.size  # both branches of h are exercised
    np.testing.assert_allclose(out, w * gate, rtol=1e-6)
    np.testing.assert_allclose(dw, dy * gate, rtol=1e-6)
    np.testing.assert_allclose(dm, expected_dm, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ste", autoprune.STES)
def test_decoupled_gradient_is_at_an_acute_angle_to_the_exact_one(ste):
    """⟨∂m_decoupled, ∂m_exact⟩ = Σ (dy·g′)²·|W| ≥ 0 in weight mode, on several random draws."""
    for seed in range(5):
        w, m, dy = random_case("weight", seed)
        _, _, decoupled = op_gradients(w, m, dy, ste=ste, decoupled=True)
        _, _, exact = op_gradients(w, m, dy, ste=ste, decoupled=False)
        inner = float(np.sum(decoupled.astype(np.float64) * exact))
        closed_form = float(np.sum((dy * numpy_slope(m, ste)) ** 2 * np.abs(w)))
        assert inner > 0
        np.testing.assert_allclose(inner, closed_form, rtol=1e-5)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("ste", autoprune.STES)
def test_aux_norm_counts_kept_entries_and_pushes_through_the_ste(ste, n):
    """R_n = #{m > τ}; ∂R_n/∂m = n·h(m)ⁿ⁻¹·g′(m) (n = 1: g′ on every entry, n = 2: kept ones only)."""
    m = np.random.default_rng(0).normal(size=(7, 4))
    m_t = tf.constant(m, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(m_t)
        value = autoprune.aux_norm(m_t, n, ste=ste, threshold=TAU, alpha=ALPHA)
    gate = (m > TAU).astype(np.float64)
    assert float(value) == gate.sum()
    expected = numpy_slope(m, ste) * (1.0 if n == 1 else n * gate)
    np.testing.assert_allclose(tape.gradient(value, m_t).numpy(), expected, rtol=1e-6)


def test_invalid_arguments_are_named():
    w = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match="ste must be one of 'softplus', 'leaky_relu', 'linear', got 'relu'$"):
        autoprune.masked_kernel(w, w, ste="relu")
    with pytest.raises(ValueError, match=r"fit neither the kernel's shape \(3, 4\)"):
        autoprune.masked_kernel(w, np.ones(3, "float32"))
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0$"):
        autoprune.aux_norm(w, 0)
    model = residual_cnn()
    with pytest.raises(ValueError, match="initial_aux must be above the threshold"):
        autoprune.wrap(model, initial_aux=0.0)
    with pytest.raises(ValueError, match=r"in layer 'depthwise' kernel \(depthwise\) is not"):
        autoprune.wrap(model, mode={"depthwise": "neuron"})
    with pytest.raises(ValueError, match=r"\['nope'\] that have no pruned weights"):
        autoprune.wrap(model, mode={"nope": "neuron"})
    with pytest.raises(ValueError, match="already wrapped"):
        autoprune.wrap(autoprune.wrap(model))
    with pytest.raises(ValueError, match=r"target_sparsity must be None or a number in \(0, 1\), got 1.0$"):
        autoprune.Monitor(target_sparsity=1.0)


def mlp(kernel_regularizer=None):
    inputs = keras.Input((6,))
    x = L.Dense(8, activation="relu", kernel_regularizer=kernel_regularizer, name="hidden")(inputs)
    return keras.Model(inputs, L.Dense(3, name="logits")(x), name="mlp")


def test_forward_uses_learned_masks_per_layer_mode():
    """hidden in neuron mode (one m per unit), logits in weight mode; output equals NumPy's."""
    model = autoprune.wrap(mlp(), mode={"hidden": "neuron"})
    hidden, logits = [layer for layer in model.layers if isinstance(layer, autoprune.AutoPruneLayer)]
    assert [m.shape for m in autoprune.aux_variables(model)] == [(8,), (8, 3)]
    rng = np.random.default_rng(0)
    for layer in (hidden, logits):
        layer.aux_variables[0].assign(rng.normal(size=layer.aux_variables[0].shape))
    x, _ = batch((6,))
    w1, b1 = hidden.layer.kernel.numpy(), hidden.layer.bias.numpy()
    w2, b2 = logits.layer.kernel.numpy(), logits.layer.bias.numpy()
    h1 = np.maximum(x @ (w1 * (hidden.aux_variables[0].numpy() > 0)) + b1, 0)
    expected = h1 @ (w2 * (logits.aux_variables[0].numpy() > 0)) + b2
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_losses_hold_the_penalty_and_weight_regularisers_see_only_weights():
    """model.losses = λ·#{m > 0} (per layer) + the kernel regulariser on W (not on m) + weight decay."""
    model = autoprune.wrap(mlp(keras.regularizers.L2(0.01)), penalty=0.5, weight_decay=0.2)
    layers = [layer for layer in model.layers if isinstance(layer, autoprune.AutoPruneLayer)]
    layers[0].aux_variables[0].assign(np.where(np.arange(48).reshape(6, 8) % 3 == 0, -1.0, 1.0))
    model(batch((6,))[0])
    kernels = [layer.layer.kernel.numpy() for layer in layers]
    kept = [np.sum(layer.aux_variables[0].numpy() > 0) for layer in layers]
    expected = 0.5 * sum(kept) + 0.01 * np.sum(kernels[0] ** 2) + 0.2 * sum(np.sum(k ** 2) for k in kernels)
    assert kept[0] == 48 - 16
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
    assert all(m.regularizer is None for m in autoprune.aux_variables(model))


def test_aux_weight_decay_adds_exactly_its_closed_form_gradient_on_m():
    """aux_weight_decay·Σ m² adds 2·aux_weight_decay·m to ∂loss/∂m (directly, not through the
    estimator) and nothing to ∂loss/∂W; without it the gradient on m is the penalty's alone."""
    x, y = batch((6,))
    m_values = np.where(np.arange(48).reshape(6, 8) % 3 == 0, -0.5, 0.75).astype("float32")
    grads = {}
    for decay in (0.0, 0.3):
        keras.utils.set_random_seed(0)
        model = autoprune.wrap(mlp(), penalty=0.5, aux_weight_decay=decay)
        hidden = next(layer for layer in model.layers if isinstance(layer, autoprune.AutoPruneLayer))
        hidden.aux_variables[0].assign(m_values)
        grads[decay] = loss_gradients(model, x, y)
        aux, kernel = hidden.aux_variables[0], hidden.layer.kernel
        grads[decay] = (grads[decay][id(aux)], grads[decay][id(kernel)])
    np.testing.assert_allclose(grads[0.3][0] - grads[0.0][0], 2 * 0.3 * m_values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grads[0.3][1], grads[0.0][1])
    with pytest.raises(ValueError, match="aux_weight_decay must be a finite number >= 0, got -1"):
        autoprune.wrap(mlp(), aux_weight_decay=-1)


def adam_first_step(lr, g, beta_2=0.999, epsilon=1e-7):
    """Keras Adam's first update, closed form: lr·g / (|g| + ε/√(1−β₂))."""
    return lr * g / (np.abs(g) + epsilon / np.sqrt(1 - beta_2))


def loss_gradients(model, x, y):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True)) + sum(model.losses)
    return {id(v): g.numpy() for v, g in zip(variables, tape.gradient(loss, [v.value for v in variables]))}


def test_aux_optimizer_routes_m_to_its_own_optimiser_inside_fit_without_weight_decay():
    """One fit step: W moves by SGD's −lr·g, m by AdamW's first step with no decay (closed forms)."""
    model = autoprune.wrap(mlp(), penalty=1e-2)
    x, y = batch((6,))
    before = {id(v): v.numpy().copy() for v in model.trainable_variables}
    grads = loss_gradients(model, x, y)
    optimizer = autoprune.AuxOptimizer(keras.optimizers.SGD(0.1), keras.optimizers.AdamW(0.05, weight_decay=0.5))
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    aux_ids = {id(m) for m in autoprune.aux_variables(model)}
    assert len(aux_ids) == 2 and len(model.trainable_variables) == 6
    for v in model.trainable_variables:
        if id(v) in aux_ids:
            expected = before[id(v)] - adam_first_step(0.05, grads[id(v)])
        else:
            expected = before[id(v)] - 0.1 * grads[id(v)]
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert int(optimizer.iterations) == 1 and optimizer.learning_rate.numpy() == pytest.approx(0.1)


def test_aux_variables_can_be_excluded_from_a_single_optimisers_weight_decay():
    """AdamW for everything, m excluded by var_list: m takes a plain Adam step, W a decayed one."""
    model = autoprune.wrap(mlp(), penalty=1e-2)
    x, y = batch((6,))
    before = {id(v): v.numpy().copy() for v in model.trainable_variables}
    grads = loss_gradients(model, x, y)
    optimizer = keras.optimizers.AdamW(0.05, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_list=autoprune.aux_variables(model))
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    aux_ids = {id(m) for m in autoprune.aux_variables(model)}
    for v in model.trainable_variables:
        decay = 1.0 if id(v) in aux_ids else 1 - 0.05 * 0.5
        expected = before[id(v)] * decay - adam_first_step(0.05, grads[id(v)])
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-4, atol=1e-6)


def regression_model(penalty, weight_decay=0.0):
    """y = Σ wᵢ xᵢ over 6 features, every w starting at 0.5, weight-mode masks (linear STE)."""
    inputs = keras.Input((6,))
    dense = L.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(0.5), name="linear")
    model = autoprune.wrap(keras.Model(inputs, dense(inputs)), ste="linear", initial_aux=0.3, penalty=penalty,
                           weight_decay=weight_decay)
    model.compile(autoprune.AuxOptimizer(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.05)), "mse",
                  jit_compile=False)
    return model


def features(seed=0, n=256):
    return np.random.default_rng(seed).normal(size=(n, 6)).astype("float32")


class GateRecorder(keras.callbacks.Callback):
    """h(m) after each epoch, read straight from the variable (independent of Monitor)."""

    def __init__(self, aux):
        super().__init__()
        self.aux, self.gates = aux, [aux.numpy()[:, 0] > 0]

    def on_epoch_end(self, epoch, logs=None):
        self.gates.append(self.aux.numpy()[:, 0] > 0)


def test_pruned_masks_recover_when_the_target_changes_and_the_monitor_counts_them():
    """Target x0+x1 under λ prunes features 2–5. Then the target becomes x4+x5: the data pushes
    m4 and m5 back above τ against a smaller λ (their frozen weights have the useful sign) and
    lets m0 and m1 fall. The monitor's per-epoch counts equal flips read from the variable."""
    model = regression_model(penalty=0.5)
    aux = autoprune.aux_variables(model)[0]
    x = features()
    monitor = autoprune.Monitor(verbose=0)
    model.fit(x, x[:, 0] + x[:, 1], batch_size=256, epochs=12, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(aux.numpy()[:, 0] > 0, [True, True, False, False, False, False])
    assert sum(r["recovered"] for r in monitor.history) == 0 and sum(r["pruned"] for r in monitor.history) == 4

    autoprune.set_penalty(model, 0.2)
    recorder = GateRecorder(aux)
    history = model.fit(x, x[:, 4] + x[:, 5], batch_size=256, epochs=20, verbose=0, callbacks=[monitor, recorder])
    np.testing.assert_array_equal(aux.numpy()[:, 0] > 0, [False, False, False, False, True, True])
    phase_b = monitor.history[12:]
    for record, old, new in zip(phase_b, recorder.gates, recorder.gates[1:]):
        assert record["recovered"] == np.sum(~old & new) and record["pruned"] == np.sum(old & ~new)
    assert sum(r["recovered"] for r in phase_b) == 2 and sum(r["pruned"] for r in phase_b) == 2
    assert history.history["recovered"] == [r["recovered"] for r in phase_b]
    assert phase_b[-1]["sparsity"] == pytest.approx(4 / 6)


def test_monitor_sets_the_penalty_to_zero_once_the_target_is_reached():
    model = regression_model(penalty=0.5)
    x = features()
    monitor = autoprune.Monitor(target_sparsity=0.5, verbose=0)
    model.fit(x, x[:, 0] + x[:, 1], batch_size=256, epochs=25, verbose=0, callbacks=[monitor])
    reached = monitor.target_epoch
    sparsities = [r["sparsity"] for r in monitor.history]
    assert reached is not None and sparsities[reached] >= 0.5 > max(sparsities[:reached], default=0)
    assert [r["penalty_off"] for r in monitor.history].count(True) == 1
    assert all(float(layer.penalty.numpy()) == 0.0 for layer in model.layers[1:])


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_weight_decay_shrinks_pruned_weights_which_otherwise_stay_put(weight_decay):
    """A pruned weight gets no data gradient: with SGD(lr) it stays exactly, or shrinks by (1 − 2·lr·wd) a step."""
    model = regression_model(penalty=0.0, weight_decay=weight_decay)
    aux = autoprune.aux_variables(model)[0]
    aux.assign(np.array([[1.0], [1.0], [-5.0], [-5.0], [-5.0], [-5.0]]))  # 2–5 pruned, far below τ
    kernel = model.layers[1].layer.kernel
    x = features()
    model.fit(x, x[:, 0], batch_size=64, epochs=2, shuffle=False, verbose=0)  # 8 steps
    np.testing.assert_allclose(kernel.numpy()[2:, 0], 0.5 * (1 - 2 * 0.1 * weight_decay) ** 8, rtol=1e-5)


def random_aux(model, seed=0):
    rng = np.random.default_rng(seed)
    for m in autoprune.aux_variables(model):
        m.assign(rng.normal(size=m.shape))


@pytest.mark.parametrize("build", [residual_cnn, subclassed_mlp])
def test_harden_then_strip_predicts_like_the_autoprune_model(build):
    """harden gives MaskedLayers with masks h(m) (expanded in neuron mode); strip and profile work on it."""
    model = build()
    modes = {"conv": "neuron", "hidden": "neuron"} if build is residual_cnn else "weight"
    wrapped = autoprune.wrap(model, mode=modes)
    random_aux(wrapped)
    x, _ = batch((8, 8, 3) if build is residual_cnn else (10,))
    expected_out = wrapped(x, training=False).numpy()
    expected_masks = {
        v.path: np.broadcast_to(m.numpy() > 0, v.shape)
        for layer in [u for u, _ in walk.units(wrapped) if isinstance(u, autoprune.AutoPruneLayer)]
        for v, m in layer.pruned_variables
    }
    hardened = autoprune.harden(wrapped)
    targets = tfprune.prunable_weights(hardened)
    assert {t.name for t in targets} == set(expected_masks)
    for t, mask in zip(targets, tfprune.get_masks(hardened)):
        np.testing.assert_array_equal(mask, expected_masks[t.name])
    kept = sum(int(m.sum()) for m in expected_masks.values())
    assert tfprune.report(hardened, verbose=0).total.kept == kept
    plain = tfprune.strip(hardened)
    np.testing.assert_array_equal(plain(x, training=False).numpy(), expected_out)


def test_hardened_stripped_model_exports_to_tflite(tmp_path):
    export = pytest.importorskip("tfprune.export.tflite_export")
    wrapped = autoprune.wrap(mlp())
    random_aux(wrapped)
    plain = tfprune.strip(autoprune.harden(wrapped))
    x, _ = batch((6,))
    report = export.tflite(plain, tmp_path / "m.tflite", check_data=x)
    assert report.max_abs_diff <= report.tolerance


def test_save_and_load_mid_training_keeps_weights_aux_and_optimizer_state(tmp_path):
    """Save after one epoch, load, train both one more epoch on the same batches: identical results."""
    model = autoprune.wrap(mlp(), mode={"hidden": "neuron"}, ste="leaky_relu", penalty=1e-2)
    model.compile(autoprune.AuxOptimizer(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(5e-2)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    x, y = batch((6,), n=64)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "mid.keras")
    loaded = keras.models.load_model(tmp_path / "mid.keras")
    assert isinstance(loaded.optimizer, autoprune.AuxOptimizer)
    assert [type(layer).__name__ for layer in loaded.layers[1:]] == ["AutoPruneLayer"] * 2
    assert loaded.layers[1].mode == "neuron" and loaded.layers[2].ste == "leaky_relu"
    for a, b in zip(model.weights, loaded.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables) > 2
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for m in (model, loaded):
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_fit_under_xla_matches_eager_fit():
    """The custom gradient compiles with jit_compile=True and gives the same training as without."""
    x, y = batch((6,), n=64)
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = autoprune.wrap(mlp(), mode={"hidden": "neuron"}, penalty=1e-2)
        model.compile(autoprune.AuxOptimizer(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(5e-2)),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        results.append([v.numpy() for v in model.weights])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


STRATEGY_CODE = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, tfprune
from tfprune import autoprune

def train(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        inputs = keras.Input((6,))
        x = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
        model = autoprune.wrap(keras.Model(inputs, keras.layers.Dense(3)(x)), mode={"hidden": "neuron"},
                               penalty=1e-2)
        model.compile(autoprune.AuxOptimizer(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.5)),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    return model

mirrored = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
single = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
print("replicas", mirrored.distribute_strategy.num_replicas_in_sync)
for a, b in zip(mirrored.weights, single.weights):
    copies = [v.numpy() for v in a.value.values]
    assert len(copies) == 2 and all(np.array_equal(c, copies[0]) for c in copies), a.path
    assert np.allclose(copies[0], b.numpy(), rtol=1e-4, atol=1e-6), a.path
aux = autoprune.aux_variables(mirrored)
assert any(np.any(m.numpy() != 1.0) for m in aux), "m did not train"
print("ok")
"""


def test_fit_under_mirrored_strategy_matches_one_device():
    """Two replicas train W and m exactly like one device on the global batch (λ counted once)."""
    out = run_python(STRATEGY_CODE, timeout=240)
    assert "replicas 2" in out and out.strip().endswith("ok")
