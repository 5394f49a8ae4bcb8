"""Keras 3 on JAX and PyTorch: tests/workers/backend_checks.py runs once per backend in a fresh
interpreter (Keras reads KERAS_BACKEND at import) on models built from the same arrays, and here
on TensorFlow for the reference; its numbers are checked against float64 NumPy oracles and the
TensorFlow run, and a model pruned and stripped on another backend is loaded and run here."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest
from subprocess_util import run_python
from test_autoprune import ALPHA, TAU, numpy_slope, random_case
from test_callbacks import read_scalars

import tfprune

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "workers" / "backend_checks.py"


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECKS = _load(WORKER)
NUMPY_MLP = _load(TESTS / "scores" / "numpy_mlp.py")
# A score tensor agrees across backends when max |a − b| ≤ this × max |b| (float32 summation order).
SCORE_TOLERANCE = 1e-5


def _normal(rng, shape, scale=1.0):
    return (rng.normal(size=shape) * scale).astype("float32")


def _inputs(folder):
    """Writes the weights and data every backend builds from (``inputs.npz``)."""
    rng = np.random.default_rng(0)
    weights = {name: [_normal(rng, w.shape, 0.5) for w in build().get_weights()]
               for name, build in (("cnn", CHECKS.cnn), ("transformer", CHECKS.transformer))}
    # the MLP as tests/scores/test_snip_force.py draws it: N(0, 1) kernels, N(0, 0.1²) biases
    weights["mlp"] = [_normal(rng, (5, 7)), _normal(rng, 7, 0.1), _normal(rng, (7, 3)), _normal(rng, 3, 0.1)]
    gamma, variance = weights["cnn"][2], weights["cnn"][5]  # batch norm, after conv1's kernel and bias
    gamma += 1.0
    variance[:] = 0.5 + np.abs(variance)
    data = {"cnn": (_normal(rng, (16, 6, 6, 2)), rng.integers(0, 4, 16)),
            "transformer": (rng.integers(0, 11, (16, 5)).astype("int32"), rng.integers(0, 4, 16)),
            "mlp": (_normal(rng, (12, 5)), rng.integers(0, 3, 12))}
    arrays = {f"{name}/weights/{i}": w for name, ws in weights.items() for i, w in enumerate(ws)}
    for name, (x, y) in data.items():
        arrays[f"{name}/x"], arrays[f"{name}/y"] = x, y
    w, m, dy = random_case("weight", seed=1)
    arrays.update({"autoprune/w": w, "autoprune/m_weight": m, "autoprune/m_neuron": random_case("neuron", 1)[1],
                   "autoprune/dy": dy, "autoprune/tau": TAU, "autoprune/alpha": ALPHA})
    arrays = {k: np.asarray(v, "float32") if np.asarray(v).dtype == np.float64 else v for k, v in arrays.items()}
    np.savez(folder / "inputs.npz", **arrays)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("backends")
    _inputs(path)
    return path


@pytest.fixture(scope="module", params=["jax", "torch"])
def backend(request, folder):
    """``(name, results)`` of the worker run under ``KERAS_BACKEND=name``; skipped if not installed."""
    pytest.importorskip(request.param)
    env = {"KERAS_BACKEND": request.param, "BACKEND_CHECKS_DIR": str(folder)}
    if request.param == "jax":  # two host devices, for keras.distribution.DataParallel
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    run_python(WORKER.read_text(), timeout=400, env=env)
    return request.param, dict(np.load(folder / f"results_{request.param}.npz"))


def _agree(got, expected, tolerance):
    return float(np.abs(got - expected).max()) <= tolerance * float(np.abs(expected).max())


@pytest.fixture(scope="module")
def tensorflow(folder):
    """The checks run in this (TensorFlow) process: the reference. GraSP through the Transformer
    block's ``LayerNormalization`` agrees only because the TensorFlow engine differentiates the
    moments exactly (``tf.nn.moments`` alone is 5 % off there)."""
    return CHECKS.results(folder)


@pytest.mark.parametrize("prefix", [f"{model}/{criterion}" for model in ("cnn", "transformer", "mlp")
                                    for criterion in CHECKS.CRITERIA]
                         + ["cnn/random", "cnn/force", "cnn/iter_snip", "pruned/snip", "pruned/synflow",
                            "pattern/snip", "applied", "structured/taylor", "structured/removed"])
def test_scores_and_masks_equal_tensorflows(backend, tensorflow, prefix):
    """Magnitude, SNIP, GraSP (batch norm on batch statistics) and SynFlow on a CNN, a Transformer
    block and an MLP built from the same arrays, and FORCE, iterative SNIP and the structured
    Taylor criterion on the CNN: every score tensor within 1e-5 of TensorFlow's (relative to its
    largest entry), the masks keeping the highest half identical, and so are the masks of
    ``prune_at_init`` by SNIP and by SynFlow (three rounds) on the CNN; the CNN without two of
    conv1's filters (``structured.remove``) predicts as on TensorFlow to 1e-5."""
    name, results = backend
    keys = sorted(k for k in tensorflow if k.startswith(prefix + "/"))
    assert keys and keys == sorted(k for k in results if k.startswith(prefix + "/"))
    for key in keys:
        if np.issubdtype(tensorflow[key].dtype, np.floating) and "/mask/" not in key:
            assert _agree(results[key], tensorflow[key], SCORE_TOLERANCE), (name, key)
        else:
            np.testing.assert_array_equal(results[key], tensorflow[key], err_msg=f"{name} {key}")


def _mlp_oracles(arrays):
    """Float64 scores of the tanh MLP: magnitude, SNIP (one batch), GraSP (T = 200; Hg by central
    differences of the float64 gradient along g) and SynFlow (tanh → identity, |·| everywhere, on
    ones: closed form)."""
    weights = [w.astype(np.float64) for w in CHECKS.listed(arrays, "mlp/weights")]
    kernels, biases = weights[0::2], weights[1::2]
    x, y = arrays["mlp/x"], arrays["mlp/y"]

    def grads(ks, temperature=1.0):
        return NUMPY_MLP.grads(ks, biases, x, y, "tanh", temperature)

    snip = [np.abs(k * g) for k, g in zip(kernels, grads(kernels))]
    g, eps = grads(kernels, 200.0), 1e-4
    plus = grads([k + eps * d for k, d in zip(kernels, g)], 200.0)
    minus = grads([k - eps * d for k, d in zip(kernels, g)], 200.0)
    grasp = [k * (p - m) / (2 * eps) for k, p, m in zip(kernels, plus, minus)]
    hidden = np.ones(kernels[0].shape[0]) @ np.abs(kernels[0]) + np.abs(biases[0])
    synflow = [np.abs(kernels[0]) * np.outer(np.ones(kernels[0].shape[0]), np.abs(kernels[1]).sum(axis=1)),
               np.abs(kernels[1]) * hidden[:, None]]
    return {"magnitude": [np.abs(k) for k in kernels], "snip": [s / sum(t.sum() for t in snip) for s in snip],
            "grasp": [s / (abs(sum(t.sum() for t in grasp)) + 1e-10) for s in grasp], "synflow": synflow}


@pytest.mark.parametrize("criterion", CHECKS.CRITERIA)
def test_mlp_scores_equal_float64_oracles(backend, tensorflow, folder, criterion):
    """The MLP's scores on each backend equal a float64 NumPy re-derivation to 1e-5 (relative to
    the tensor's largest score), GraSP's to 5e-5: T = 200 makes its Hessian term a difference of
    nearly equal float32 sums, 1.4e-5 from the oracle here on every backend, TensorFlow included."""
    name, results = backend
    tolerance = 5e-5 if criterion == "grasp" else SCORE_TOLERANCE
    expected = _mlp_oracles(dict(np.load(folder / "inputs.npz")))[criterion]
    for i, e in enumerate(expected):
        assert _agree(results[f"mlp/{criterion}/score/{i}"], e, tolerance), (name, criterion, i)
        assert _agree(tensorflow[f"mlp/{criterion}/score/{i}"], e, tolerance), ("tensorflow", criterion, i)


def _polynomial_sparsity(step):
    """PolynomialDecay(0, final, 0, end, power=3) in closed form, float64."""
    schedule = CHECKS.GRADUAL
    progress = min(1.0, step / schedule["end_step"])
    return schedule["final_sparsity"] * (1.0 - (1.0 - progress) ** 3)


def _top_k_mask(weights, previous, k):
    """The ``k`` largest |weights| among the entries ``previous`` keeps, ties to the lower flat index."""
    flat = np.where(previous.ravel() != 0, np.abs(weights.ravel()).astype(np.float64), -np.inf)
    keep = np.zeros(flat.size, bool)
    keep[np.lexsort((np.arange(flat.size), -flat))[:k]] = True
    return keep.reshape(weights.shape)


def test_gradual_pruning_in_fit_keeps_exact_counts_at_every_update(backend):
    """GradualPruning(PolynomialDecay(0 → 0.8, steps 0–6, every 2)) in ``fit``: updates at steps 0,
    2, 4, 6, each keeping exactly floor((1 − s)·N + ½) weights per tensor, the largest |w| among
    those kept so far."""
    name, results = backend
    steps = [int(results[f"gradual/{r}/step"]) for r in range(4)]
    assert steps == [0, 2, 4, 6] and "gradual/4/step" not in results, name
    for r, step in enumerate(steps):
        sparsity = float(results[f"gradual/{r}/sparsity"])
        assert sparsity == pytest.approx(_polynomial_sparsity(step), abs=1e-6)
        for i in range(3):
            weights, before, after = (results[f"gradual/{r}/{i}/{part}"] for part in ("weights", "before", "after"))
            kept = int(np.floor((1.0 - sparsity) * weights.size + 0.5))
            assert np.count_nonzero(after) == kept, (name, step, i)
            np.testing.assert_array_equal(after != 0, _top_k_mask(weights, before, kept), err_msg=f"{name} {step} {i}")


def test_a_model_pruned_and_stripped_on_each_backend_loads_and_predicts_the_same_on_tensorflow(backend, tensorflow,
                                                                                                folder):
    """Magnitude-pruned (60 %) and stripped on JAX or PyTorch, saved as .keras: loaded here it has
    the same zeros and predicts as the other backend did, and as the same pruning done here, to 1e-5;
    the one from JAX exports to TFLite here, its file predicting as Keras to 1e-5."""
    name, results = backend
    loaded = keras.models.load_model(folder / f"stripped_{name}.keras")
    np.testing.assert_array_equal([np.count_nonzero(w == 0) for w in loaded.get_weights()], results["stripped/zeros"])
    np.testing.assert_array_equal(results["stripped/zeros"], tensorflow["stripped/zeros"])
    x = np.load(folder / "inputs.npz")["cnn/x"]
    predictions = keras.ops.convert_to_numpy(loaded(x, training=False))
    assert _agree(predictions, results["stripped/predictions"], 1e-5)
    assert _agree(predictions, tensorflow["stripped/predictions"], 1e-5)
    if name == "jax":  # and it exports to TFLite here (once: a conversion takes seconds)
        report = tfprune.export.tflite(loaded, folder / "from_jax.tflite", check_data=x)
        assert report.examples == len(x) and report.max_abs_diff <= 1e-5 * float(np.abs(predictions).max())


@pytest.mark.parametrize("criterion", ["rigl", "set"])
def test_dynamic_sparse_moves_connections_and_keeps_counts(backend, criterion):
    """DynamicSparse at 80 % sparsity (ERK), updating every 2 steps in ``fit``: every tensor keeps
    the same number of weights after every step, the total is floor(0.2·N + ½), and updates move
    connections (masks change between steps)."""
    name, results = backend
    steps = sorted({int(k.split("/")[2]) for k in results if k.startswith(f"dynamic/{criterion}/")})
    masks = [[results[f"dynamic/{criterion}/{step}/{i}"] for i in range(3)] for step in steps]
    assert len(steps) == 8, name
    counts = [[int(np.count_nonzero(m)) for m in step] for step in masks]
    assert all(c == counts[0] for c in counts), (name, counts)
    total = sum(m.size for m in masks[0])
    assert sum(counts[0]) == int(np.floor(0.2 * total + 0.5)), name
    moved = [sum(int(np.count_nonzero(a != b)) for a, b in zip(before, after)) for before, after in zip(masks, masks[1:])]
    assert sum(moved) > 0, (name, moved)


def test_profile_and_report_of_a_pruned_model_equal_tensorflows(backend, tensorflow):
    """``tfprune.profile`` of the CNN pruned by SynFlow and ``report`` of the one pruned by SNIP
    in the 2:4 pattern: the same parameters, non-zeros and MACs."""
    name, results = backend
    assert str(results["profile"]) == str(tensorflow["profile"]), name
    assert str(results["report"]) == str(tensorflow["report"]), name


def test_patterns_apply_masks_and_wrapped_reload(backend):
    """SNIP in the 2:4 pattern keeps 2 of every 4 consecutive inputs of each output of conv2 and
    the logits (conv1, with 2 input channels, is left out by policy); apply_masks
    sets the masks given; a wrapped model saved as .keras on the backend reloads there with its
    masks and predictions (to 1e-6)."""
    name, results = backend
    for i in range(2):  # conv2's and the logits' kernels: conv1 has groups of 2 inputs
        mask = results[f"pattern/snip/{i}"]
        groups = np.moveaxis(mask.reshape(-1, mask.shape[-1]), -1, 0).reshape(mask.shape[-1], -1, 4)
        assert (groups.sum(axis=-1) == 2).all(), (name, i)
        np.testing.assert_array_equal(results[f"applied/{i}"], mask[::-1])
    assert results["reloaded/masks_equal"].all(), name
    assert _agree(results["reloaded/predictions"], results["reloaded/expected"], 1e-6), name


def test_tensorflow_only_features_raise_naming_the_backend_before_any_work(backend, folder):
    """TFLite export of a Keras 3 model and a ``tf.distribute`` strategy on JAX or PyTorch: a
    BackendError naming the backend and what to do instead; no file written."""
    name, results = backend
    assert str(results["errors/tflite"]) == (
        f"BackendError: TFLite export needs the TensorFlow backend, but Keras runs on {name!r} "
        f"(KERAS_BACKEND={name}): save the stripped model with model.save('model.keras'), then load it and "
        "export it in a process started with KERAS_BACKEND=tensorflow")
    assert not (folder / "refused.tflite").exists()
    assert str(results["errors/strategy"]) == (
        f"BackendError: strategy= needs the TensorFlow backend, but Keras runs on {name!r} (KERAS_BACKEND={name}): "
        "leave strategy out (scores on JAX and PyTorch run on one device)")


@pytest.mark.parametrize("ste", ["softplus", "leaky_relu", "linear"])
def test_autoprune_estimators_give_the_formulas_gradients(backend, folder, ste):
    """AutoPrune's custom-gradient ops (``keras.ops.custom_gradient``) through the backend's
    autodiff: W ⊙ h(m); ∂W = dy ⊙ h(m); ∂m = dy ⊙ sign(W) ⊙ g′(m) (weight mode, decoupled) or
    dy ⊙ W ⊙ g′(m) summed over a filter (neuron mode, exact); R₂ = #{m > τ}, ∂R₂/∂m = 2·h(m)·g′(m)."""
    name, results = backend
    arrays = dict(np.load(folder / "inputs.npz"))
    w, dy = arrays["autoprune/w"].astype(np.float64), arrays["autoprune/dy"].astype(np.float64)
    for mode, decoupled in (("weight", True), ("neuron", False)):
        m = arrays[f"autoprune/m_{mode}"].astype(np.float64)
        gate = (m > TAU).astype(np.float64)
        expected_dm = dy * (np.sign(w) if decoupled else w) * numpy_slope(m, ste)
        if mode == "neuron":
            expected_dm = expected_dm.sum(axis=(0, 1, 2))
        assert 0 < gate.sum() < gate.size
        got = {part: results[f"autoprune/{ste}/{mode}/{part}"] for part in ("out", "dw", "dm")}
        np.testing.assert_allclose(got["out"], w * gate, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(got["dw"], dy * gate, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(got["dm"], expected_dm, rtol=1e-5, atol=1e-5, err_msg=name)
    m = arrays["autoprune/m_weight"].astype(np.float64)
    gate = (m > TAU).astype(np.float64)
    assert float(results[f"autoprune/{ste}/norm"]) == gate.sum()
    np.testing.assert_allclose(results[f"autoprune/{ste}/dnorm"], 2 * gate * numpy_slope(m, ste), rtol=1e-6)


def test_jax_data_parallel_gives_the_masks_of_one_device(backend):
    """``keras.distribution.DataParallel`` over two host devices: SNIP's masks and every
    GradualPruning update's masks in ``fit`` equal those of one device."""
    name, results = backend
    if name != "jax":
        pytest.skip("keras.distribution runs on JAX")
    assert int(results["data_parallel/devices"]) == 2
    keys = [k for k in results if k.startswith("pruned/snip/") or (k.startswith("gradual/") and k.endswith("after"))]
    assert len(keys) == 3 + 4 * 3
    for key in keys:
        np.testing.assert_array_equal(results[f"data_parallel/{key}"], results[key], err_msg=key)


def test_jax_model_on_several_devices_without_a_distribution_is_refused(backend):
    """A model built under ``DataParallel`` (its variables replicated on both devices), wrapped once
    the distribution is unset: a BackendError naming the variable, its devices and what to do,
    and the model unchanged."""
    name, results = backend
    if name != "jax":
        pytest.skip("keras.distribution runs on JAX")
    message = str(results["errors/placement"])
    assert message.startswith("BackendError: the variable 'conv1/kernel' of 'cnn' lies on 2 devices (NamedSharding(")
    assert message.endswith("no keras.distribution is set, so tfprune's masks and scoring steps would sit whole on "
                            "one device: set the distribution the model was built under first (keras.distribution."
                            "set_distribution(distribution), or work inside `with distribution.scope():`)")
    assert bool(results["errors/placement/unchanged"])


def test_pruning_summaries_write_the_same_scalars_as_on_tensorflow(backend, tensorflow, folder):
    """PruningSummaries beside GradualPruning in ``fit``: the event files written on JAX or PyTorch
    hold the scalars written on TensorFlow, and at each update step the sparsity of each weight is
    1 − kept/N of the closed-form schedule."""
    name, results = backend
    scalars = sorted(read_scalars(folder / f"summaries_{name}"))
    assert scalars == sorted(read_scalars(folder / "summaries_tensorflow")), name
    sizes = {path: results[f"gradual/0/{i}/weights"].size
             for i, path in enumerate(("conv1/kernel", "conv2/kernel", "logits/kernel"))}
    for step in (0, 2, 4, 6):
        kept = {path: np.floor((1.0 - _polynomial_sparsity(step)) * n + 0.5) for path, n in sizes.items()}
        for path, n in sizes.items():
            assert (step, f"sparsity/{path}", pytest.approx(1.0 - kept[path] / n, abs=1e-6)) in scalars, (name, step)
        model = 1.0 - sum(kept.values()) / sum(sizes.values())
        assert (step, "model_sparsity", pytest.approx(model, abs=1e-6)) in scalars, (name, step)


def _cnn_macs(filters1, filters2):
    """MACs of the CNN (6×6×2 → conv 3×3 → 4×4×f1 → batch norm → conv 3×3 → 2×2×f2 → dense 4)
    with f1 and f2 filters, in closed form (batch norm, folded into conv1 at inference, costs none)."""
    return 16 * filters1 * 18 + 4 * filters2 * 9 * filters1 + 4 * filters2 * 4


def test_structured_prune_loop_equals_tensorflows(backend, tensorflow):
    """``structured.prune`` by Taylor to 60 % of the CNN's MACs, a quarter of the removable units
    per step, no fine-tuning: the same filters kept at every layer as on TensorFlow, and each
    step's MACs those of its filter counts in closed form."""
    name, results = backend
    keys = sorted(k for k in tensorflow if k.startswith("structured/prune/"))
    for key in keys:
        np.testing.assert_array_equal(results[key], tensorflow[key], err_msg=f"{name} {key}")
    counts = results["structured/prune/counts"]
    filters = results["structured/prune/shape/conv1"][-1], results["structured/prune/shape/conv2"][-1]
    assert counts[-1][0] == _cnn_macs(*filters) <= 0.6 * _cnn_macs(4, 3) < counts[-2][0], (name, counts, filters)


def test_autoprune_in_fit_learns_the_masks_learned_on_tensorflow(backend, tensorflow):
    """AutoPrune's layer with AuxOptimizer (Adam on W, Adam at 0.1 on m, λ = 1e-2) over 8 steps of
    ``fit``: the auxiliary parameters agree with TensorFlow's to 1e-4 (relative to the largest), the
    hardened masks are h(m) = [m > 0] and identical to TensorFlow's, and training switched some off."""
    name, results = backend
    for i in range(3):
        aux, reference = results[f"autoprune/fit/aux/{i}"], tensorflow[f"autoprune/fit/aux/{i}"]
        assert _agree(aux, reference, 1e-4), (name, i)
        assert np.abs(reference).min() > 10 * np.abs(aux - reference).max()  # no m near the threshold
        np.testing.assert_array_equal(results[f"autoprune/fit/mask/{i}"], (aux > 0).astype("float32"))
        np.testing.assert_array_equal(results[f"autoprune/fit/mask/{i}"], tensorflow[f"autoprune/fit/mask/{i}"])
    assert 0 < sum(int((results[f"autoprune/fit/aux/{i}"] <= 0).sum()) for i in range(3))


@pytest.mark.parametrize("criterion", ["wanda", "sparsegpt"])
def test_post_training_pruning_equals_tensorflows(backend, tensorflow, criterion):
    """Wanda and SparseGPT at 50 % on the Transformer block's Dense and EinsumDense layers: the same
    zeros as on TensorFlow, half of each layer's weights, and the same
    weights to 1e-5 (Wanda keeps them as they were; SparseGPT's updates to 1e-4)."""
    name, results = backend
    keys = sorted(k for k in tensorflow if k.startswith(f"posttraining/{criterion}/"))
    assert len(keys) == 7 and keys == sorted(k for k in results if k.startswith(f"posttraining/{criterion}/"))
    for key in keys:
        np.testing.assert_array_equal(results[key] == 0, tensorflow[key] == 0, err_msg=f"{name} {key}")
        assert _agree(results[key], tensorflow[key], 1e-5 if criterion == "wanda" else 1e-4), (name, key)
        if "embedding" not in key:
            assert np.count_nonzero(results[key] == 0) == results[key].size // 2, (name, key)


def test_jax_model_parallel_shards_each_mask_as_its_kernel_and_gives_the_masks_of_one_device(backend):
    """``keras.distribution.ModelParallel`` with conv1's and the logits' kernels sharded over two
    devices on their outputs: each mask is laid out as its kernel (the layout map names no mask),
    and SNIP's masks equal those of one device."""
    name, results = backend
    if name != "jax":
        pytest.skip("keras.distribution runs on JAX")
    specs = results["model_parallel/specs"].tolist()
    assert specs == [["P(None, None, None, 'model')"] * 2, ["P(None, None, None, None)"] * 2,
                     ["P(None, 'model')"] * 2], specs
    for i in range(3):
        np.testing.assert_array_equal(results[f"model_parallel/pruned/snip/{i}"], results[f"pruned/snip/{i}"])
