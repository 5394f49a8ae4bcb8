"""The base install works without the optional extras, and a missing extra is named.

A fresh interpreter gets a ``sys.meta_path`` finder that makes every import fail of a module that
``pip install tfprune`` would not install: each installed distribution outside the dependency
closure of setup.cfg's ``install_requires`` (tf_keras, TF-MOT, tensorflow-datasets, matplotlib,
pytest, scikit-learn, …), as on a machine where only the base install ran
(``../shared/tools/fresh-install-check`` does the real thing with a new virtual environment).
"""

import configparser
import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from subprocess_util import run_python

from tfprune import _optional
from tfprune.sparsity.masks import kept_count

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def base_closure():
    """Canonical names of the distributions ``install_requires`` brings, recursively."""
    setup = configparser.ConfigParser()
    setup.read(SETUP_CFG)
    todo = [Requirement(line).name for line in setup["options"]["install_requires"].split("\n") if line.strip()]
    closure = set()
    while todo:
        name = _canonical(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return closure


def modules_outside_the_base_install():
    closure = base_closure()
    return sorted(module for module, distributions in importlib.metadata.packages_distributions().items()
                  if module != "tfprune" and not any(_canonical(d) in closure for d in distributions))


BLOCK = """
import importlib.abc, os, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)

BLOCKED = set(os.environ["BLOCKED_MODULES"].split(","))
sys.meta_path.insert(0, Blocker())
"""

WITHOUT_EXTRAS = BLOCK + """
import contextlib, io, json, os, tempfile
import keras, numpy as np
import tfprune
from tfprune.experiments import cli

out = {"loaded": sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)}
try:
    import matplotlib
    out["blocker"] = "matplotlib imported"
except ImportError:
    out["blocker"] = "works"

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.5, verbose=0)
plain = tfprune.strip(pruned)
out["nonzero_kernels"] = int(sum(np.count_nonzero(w.numpy()) for w in plain.weights if w.path.endswith("kernel")))
out["profile"] = {k: int(v) for k, v in tfprune.profile(pruned, verbose=0).to_dict()["total"].items()}
from tfprune.experiments import demo
rows = demo.run(sparsities=(0.5,), methods=["magnitude"], epochs=1, verbose=0)
out["demo_kept"] = [r["kept"] for r in rows]

def error(fn):
    try:
        fn()
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
    return "no error"

out["tfmot"] = error(lambda: __import__("tfprune.tfmot"))
empty = tempfile.mkdtemp()
out["data"] = error(lambda: tfprune.data.load("mnist", "train", data_dir=empty, download=False))
folder = os.path.join(empty, "sweep")
with contextlib.redirect_stderr(io.StringIO()) as err:
    out["sweep_exit"] = cli.main(["sweep", "--model", "lenet_300_100", "--data", "digits", "--criteria", "magnitude",
                                  "--compressions", "0:1:1", "--epochs", "1", "--out", folder])
out["sweep_error"] = err.getvalue()
out["sweep_folder_created"] = os.path.exists(folder)
out["loaded_at_end"] = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
print(json.dumps(out))
"""


def test_base_install_prunes_profiles_strips_and_names_missing_extras():
    blocked = modules_outside_the_base_install()
    # ai-edge-litert ([litert], in [all]) is the one extra a development machine may lack: export falls back to tf.lite
    missing = {m for m in _optional.EXTRAS if importlib.util.find_spec(m) is None}
    assert missing <= {"ai_edge_litert"}, f"the test environment lacks the extras of {sorted(missing)}"
    assert set(_optional.EXTRAS) - missing <= set(blocked) and {"pytest", "sklearn"} <= set(blocked)
    printed = run_python(WITHOUT_EXTRAS, timeout=300, env={"BLOCKED_MODULES": ",".join(blocked)})
    out = json.loads(printed.strip().splitlines()[-1])
    assert out["blocker"] == "works" and out["loaded"] == out["loaded_at_end"] == []
    weights = 8 * 16 + 16 * 4
    assert out["nonzero_kernels"] == kept_count(0.5, weights) == 96
    # biases start at zero, so the non-zeros are the kept kernel entries; Dense MACs are in · out
    assert out["profile"] == {"params": weights + 16 + 4, "nonzero": 96, "macs": weights, "effective_macs": 96}
    total = 64 * 300 + 300 * 100 + 100 * 10  # the demo's MLP on the 8×8 digits
    assert out["demo_kept"] == [total, kept_count(0.5, total)]
    assert out["tfmot"].startswith("MissingExtraError: tfprune.tfmot needs tensorflow_model_optimization")
    assert 'pip install "tfprune[tfmot]"' in out["tfmot"]
    assert out["data"].startswith("DataUnavailableError") and 'pip install "tfprune[datasets]"' in out["data"]
    assert out["sweep_exit"] == 1 and not out["sweep_folder_created"]
    assert out["sweep_error"].startswith("tfprune sweep: error: tfprune sweep (for sweep.png) needs matplotlib")
    assert 'pip install "tfprune[plots]"' in out["sweep_error"]


def test_require_names_the_extra_and_returns_the_module():
    import matplotlib

    assert _optional.require("matplotlib", "plots") is matplotlib
    with pytest.raises(_optional.MissingExtraError) as error:
        _optional.require("tf_keras.no_such_module", "a test")
    assert str(error.value).startswith("a test needs tf_keras, which could not be imported (No module named")
    assert str(error.value).endswith('install it with: pip install "tfprune[tfmot]"')
    assert isinstance(error.value, ImportError)


def test_setup_cfg_extras_hold_each_optional_module():
    """Every module of _optional.EXTRAS is installed by its extra; [all] and [test] include all."""
    setup = configparser.ConfigParser()
    setup.read(SETUP_CFG)
    extras = {k: v.split() for k, v in setup["options.extras_require"].items()}
    base = setup["options"]["install_requires"]
    distribution = {"tf_keras": "tf_keras", "tensorflow_model_optimization": "tensorflow-model-optimization",
                    "tensorflow_datasets": "tensorflow-datasets", "matplotlib": "matplotlib",
                    "ai_edge_litert": "ai-edge-litert"}
    for module, extra in _optional.EXTRAS.items():
        assert any(r.startswith(distribution[module]) for r in extras[extra]), (module, extra)
        assert distribution[module] not in base, f"{module} is optional, not a base requirement"
    assert extras["all"] == ["tfprune[" + ",".join(sorted(set(_optional.EXTRAS.values()))) + "]"]
    assert "tfprune[all]" in extras["test"] and any(r.startswith("pytest") for r in extras["test"])
