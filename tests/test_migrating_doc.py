"""Every code snippet of docs/migrating-from-tfmot.md runs as printed: tfprune's (Keras 3) here,
TF-MOT's (tf_keras) in a fresh process, each after the setup block of its side."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from subprocess_util import run_python

from tfprune.sparsity.masks import kept_count

pytestmark = pytest.mark.docs  # executed documentation: `pytest -m docs`

DOC = Path(__file__).resolve().parents[1] / "docs" / "migrating-from-tfmot.md"


def snippets(side):
    """The setup block and the snippets of one side (``"tfprune"`` or ``"TF-MOT"``) of the doc."""
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    setup = [block for block in code if block.startswith(f"# {side}: setup\n")]
    assert len(setup) == 1, side
    return setup[0], [block for block in code if block.startswith(f"# {side}\n")]


TFPRUNE_SETUP, TFPRUNE_SNIPPETS = snippets("tfprune")
TFMOT_SETUP, TFMOT_SNIPPETS = snippets("TF-MOT")


def test_every_symbol_has_a_pair():
    assert len(TFPRUNE_SNIPPETS) == 12 and len(TFMOT_SNIPPETS) == 10  # 10 symbols; 2 with a second tfprune way
    text = DOC.read_text()
    for symbol in ["prune_low_magnitude", "ConstantSparsity", "PolynomialDecay", "UpdatePruningStep",
                   "PruningSummaries", "strip_pruning", "sparsity_m_by_n", "block_size", "PruningPolicy",
                   "PrunableLayer"]:
        assert f"\n## {symbol}\n" in text, symbol


def _kept(ns, name):
    return [int(m.sum()) for m in ns["tfprune"].get_masks(ns[name])]


def _local(ns, name, sparsity):
    """Each masked tensor of ``ns[name]`` keeps exactly kept_count(1 - sparsity, size)."""
    sizes = [t.size for t in ns["tfprune"].prunable_weights(ns[name])]
    assert _kept(ns, name) == [kept_count(1 - sparsity, n) for n in sizes]


def _global(ns, name, sparsity):
    sizes = [t.size for t in ns["tfprune"].prunable_weights(ns[name])]
    assert sum(_kept(ns, name)) == kept_count(1 - sparsity, sum(sizes))


# What each tfprune snippet must leave behind, in the doc's order (8 steps of 4 batches a epoch;
# GradualPruning's last update in snippet 0 is at step 6).
CHECKS = [
    lambda ns: _local(ns, "pruned", ns["schedule"](6)[1]),
    lambda ns: _local(ns, "pruned", 0.8),
    lambda ns: ns["pruning"].schedule(2) == (True, pytest.approx(0.75)) and ns["pruning"].schedule(3)[0] is False,
    lambda ns: ns["schedule"](0) == (True, 0.0),
    lambda ns: isinstance(ns["callbacks"][0], ns["tfprune"].callbacks.GradualPruning),
    lambda ns: _local(ns, "pruned", 0.5) or (Path("logs/tfprune").is_dir() and any(Path("logs/tfprune").rglob("*tfevents*"))),
    lambda ns: all(np.count_nonzero(w) == kept for w, kept in zip(
        [w.numpy() for w in ns["plain"].weights if w.ndim > 1], _kept(ns, "pruned"))) and Path("pruned.keras").is_file(),
    lambda ns: _kept(ns, "pruned")[-1] == ns["tfprune"].prunable_weights(ns["pruned"])[-1].size // 2,
    lambda ns: _global(ns, "once", 0.5) or [t.kind for t in ns["tfprune"].prunable_weights(ns["pruned"])] == ["dense"],
    lambda ns: [t.kind for t in ns["tfprune"].prunable_weights(ns["pruned"])] == ["conv"],
    lambda ns: _global(ns, "pruned", 0.5),
    lambda ns: _global(ns, "pruned", 0.5),
]


@pytest.mark.parametrize("index", range(len(TFPRUNE_SNIPPETS)))
def test_tfprune_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets write logs/ and pruned.keras
    namespace = {}
    exec(compile(TFPRUNE_SETUP + TFPRUNE_SNIPPETS[index], f"{DOC.name}[tfprune {index}]", "exec"), namespace)
    assert CHECKS[index](namespace) in (None, True)


@pytest.mark.slow
def test_tfmot_snippets_run(tmp_path):
    code = f"""
import json, os
os.chdir({str(tmp_path)!r})
setup, snippets = {TFMOT_SETUP!r}, {TFMOT_SNIPPETS!r}
for i, snippet in enumerate(snippets):
    exec(compile(setup + snippet, f"TF-MOT {{i}}", "exec"), {{}})
print(json.dumps(len(snippets)))
"""
    assert json.loads(run_python(code, timeout=400).strip().splitlines()[-1]) == len(TFMOT_SNIPPETS)
