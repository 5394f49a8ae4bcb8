"""Every ```python block of the README runs as written.

Blocks are fragments of one story (``model``, ``x``, ``y``, ``pruned`` come from the text around
them), so each runs in a fresh namespace of small stand-ins: a 28×28×1 MLP ``model``, 128 random
MNIST-shaped examples ``x, y`` (and ``x_val, y_val``), a pruned ``pruned``, a tf_keras
``tf_keras_model``, a custom layer ``MyDense``. A few blocks get smaller sizes (a listed, exact
text replacement that must still match the README) where the written sizes take minutes; a
block that needs MNIST reads the shared copy and is skipped where it is absent. A new block needs
nothing here unless it needs other stand-ins. After some blocks, the numbers they produce are
checked against counts re-derived with NumPy.
"""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SHARED_DATA
from subprocess_util import run_python

import tfprune
from tfprune.sparsity.masks import kept_count

pytestmark = pytest.mark.docs  # executed documentation: `pytest -m docs`

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    """``(section heading + ordinal, code)`` of each ```python block of the README."""
    blocks, heading, count = [], "top", {}
    for match in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", README.read_text(), re.M | re.S):
        if match.group(1):
            heading = match.group(1).lstrip("# ").strip()
        elif match.group(2) == "python":
            count[heading] = count.get(heading, 0) + 1
            blocks.append((f"{heading} #{count[heading]}", match.group(3)))
    return blocks


def _kernels(model):
    return [w.numpy() for w in model.weights if w.path.endswith("kernel")]


def _check_block_0(ns):
    """Global magnitude at sparsity 0.9: exactly kept_count(0.1, N) non-zero kernel entries."""
    kernels = _kernels(ns["plain"])
    n = sum(k.size for k in kernels)
    assert sum(np.count_nonzero(k) for k in kernels) == kept_count(0.1, n)


def _check_mnist_block(ns):
    n = sum(k.size for k in _kernels(ns["model"]))
    for name, density in (("snip", 0.02), ("synflow", 1 / 1000), ("grasp", 0.1)):
        assert sum(int(m.sum()) for m in tfprune.get_masks(ns[name])) == kept_count(density, n), name


def _check_masks_by_hand(ns):
    n = sum(m.size for m in ns["masks"])
    assert sum(int(m.sum()) for m in ns["masks"]) == kept_count(0.2, n)
    assert ns["masks"][0].dtype == bool


def _check_profile(ns):
    total = tfprune.profile(ns["pruned"], verbose=0).to_dict()["total"]
    plain = tfprune.strip(ns["pruned"])
    assert total["params"] == sum(w.numpy().size for w in plain.weights)
    assert total["nonzero"] == sum(np.count_nonzero(w.numpy()) for w in plain.weights)
    assert total["macs"] == 28 * 28 * 32 + 32 * 16 + 16 * 10  # Dense MACs are in · out


def _check_per_layer(ns):
    masks = {t.layer.name: m for t, m in zip(tfprune.prunable_weights(ns["wrapped"]), tfprune.get_masks(ns["wrapped"]))}
    assert sorted(masks) == ["conv1", "conv2", "logits"]
    assert all(m.mean() == 0.5 for m in masks.values())
    assert (masks["conv2"].reshape(-1, 2, 4, 8).sum(axis=2) == 2).all()  # (3·3, Cin=8, Cout) in groups of 4


# Blocks that need something beyond the default stand-ins, keyed by text that identifies them.
#   shrink: (README text, replacement) pairs, each of which must occur in the block;
#   mnist:  reads the real MNIST (TFPRUNE_DATA_DIR); model: "conv" for a model with "conv1";
#   images: the input shape of x; check: a function of the namespace after the block ran.
SPECIAL = {
    'tfprune.prune_at_init(model, "magnitude", sparsity=0.9)': dict(check=_check_block_0),
    'data.load("mnist"': dict(mnist=True, check=_check_mnist_block),
    "collapse_sweep(": dict(images=(32, 32, 3), shrink=[
        ("tfprune.models.vgg(16)", "tfprune.models.vgg(11, width=0.125)"),
        ("10 ** np.arange(1, 6.25, 0.5)", "10 ** np.arange(1, 1.75, 0.5)"),
        ("seeds=(0, 1, 2)", "seeds=(0,)")]),
    "structured.prune(": dict(model="conv", shrink=[
        ("kept_macs=0.5", "kept_macs=0.8"),
        ("finetune_steps=50, final_finetune_epochs=2", "finetune_steps=2, final_finetune_epochs=1")]),
    "autoprune.wrap(": dict(shrink=[("epochs=10", "epochs=2")]),
    'pattern="2:4",\n': dict(model="conv", shrink=[('"dense1"', '"logits"')],
                            check=_check_per_layer),
    "tfprune.get_masks(wrapped)": dict(check=_check_masks_by_hand),
    "tfprune.profile(pruned)": dict(check=_check_profile),
}


def _mlp():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])


def _conv():
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(h))
    h = keras.layers.Conv2D(8, 3, strides=2, name="conv2")(h)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn2")(h))
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))


def _my_dense_class():
    class MyDense(keras.layers.Layer):
        """A custom Dense with weights ``w`` and ``b``."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

        def call(self, x):
            return x @ self.w + self.b

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return MyDense


def namespace(code, options):
    rng = np.random.default_rng(0)
    images = options.get("images", (28, 28, 1))
    x, x_val = (rng.random((n, *images), dtype=np.float32) for n in (128, 32))
    y, y_val = rng.integers(0, 10, 128), rng.integers(0, 10, 32)
    model = _conv() if options.get("model") == "conv" else _mlp()
    ns = dict(keras=keras, tfprune=tfprune, np=np, x=x, y=y, x_val=x_val, y_val=y_val, model=model,
              trained_model=_mlp(), MyDense=_my_dense_class(),
              pruned=tfprune.prune_at_init(_mlp(), "magnitude", sparsity=0.9, verbose=0))
    if "tf_keras_model" in code:
        tf_keras = pytest.importorskip("tf_keras")
        pytest.importorskip("tensorflow_model_optimization")
        ns["tf_keras_model"] = tf_keras.Sequential([
            tf_keras.Input((28, 28, 1)), tf_keras.layers.Flatten(), tf_keras.layers.Dense(32, activation="relu"),
            tf_keras.layers.Dense(16, activation="relu"), tf_keras.layers.Dense(10)])
    return ns


def test_the_readme_has_python_blocks_and_every_special_one_exists():
    codes = [code for _, code in python_blocks()]
    assert len(codes) >= 10
    for key in SPECIAL:
        assert sum(key in code for code in codes) == 1, f"no single README block contains {key!r}"


def test_every_dotted_tfprune_name_in_the_readme_exists_after_import_tfprune():
    """Inline code too (``tfprune.sweep.accuracy_sweep``); ``tfprune.tfmot`` is imported on use."""
    names = sorted(n for n in set(re.findall(r"\btfprune(?:\.[A-Za-z_]\w*)+", README.read_text()))
                   if not n.startswith("tfprune.tfmot"))
    check = f"""
import functools, tfprune
print([n for n in {names!r} if functools.reduce(lambda v, p: getattr(v, p, None), n.split(".")[1:], tfprune) is None])
"""
    assert len(names) > 30
    assert run_python(check, timeout=120).strip() == "[]"  # a fresh process: no other test imported a submodule


@pytest.mark.parametrize("name, code", python_blocks(), ids=[name for name, _ in python_blocks()])
def test_readme_block_runs(name, code, tmp_path, monkeypatch):
    options = next((o for key, o in SPECIAL.items() if key in code), {})
    for written, smaller in options.get("shrink", ()):
        assert written in code, f"README block {name!r} no longer contains {written!r}: update SPECIAL"
        code = code.replace(written, smaller)
    if options.get("mnist"):
        if not (SHARED_DATA / "mnist.npz").exists():
            pytest.skip(f"needs MNIST (a download); no copy in {SHARED_DATA}")
        monkeypatch.setenv("TFPRUNE_DATA_DIR", str(SHARED_DATA.resolve()))
    monkeypatch.chdir(tmp_path)  # blocks write logs/, model.tflite, collapse.csv
    ns = namespace(code, options)
    exec(compile(code, f"README.md: {name}", "exec"), ns)
    if "check" in options:
        options["check"](ns)
