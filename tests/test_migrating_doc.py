"""Every code snippet of docs/migrating-from-tfmot.md runs as printed: tfprune's (Keras 3) here,
TF-MOT's (tf_keras) in a fresh process, each after the setup block of its side."""

import json
import re
from pathlib import Path

import pytest
from subprocess_util import run_python

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


@pytest.mark.parametrize("index", range(len(TFPRUNE_SNIPPETS)))
def test_tfprune_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets write logs/ and pruned.keras
    exec(compile(TFPRUNE_SETUP + TFPRUNE_SNIPPETS[index], f"{DOC.name}[tfprune {index}]", "exec"), {})


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
