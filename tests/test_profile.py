"""report: per-weight parameters, kept entries and density, and the totals."""

import numpy as np
from helpers import random_masks, residual_cnn

import tfprune


def test_report_counts_masks_of_a_wrapped_model(capsys):
    model = residual_cnn()
    wrapped = tfprune.wrap(model)
    masks = random_masks(wrapped, 0.4)
    tfprune.apply_masks(wrapped, masks)
    r = tfprune.report(wrapped)
    shapes = [(3, 3, 3, 8), (3, 3, 8, 1), (3, 3, 8, 1), (1, 1, 8, 8), (8, 16), (16, 3)]
    assert [row.params for row in r.rows] == [int(np.prod(s)) for s in shapes]
    assert [row.kept for row in r.rows] == [int(m.sum()) for m in masks]
    assert r.total.params == 216 + 72 + 72 + 64 + 128 + 48
    assert r.total.kept == sum(int(m.sum()) for m in masks)
    assert abs(r.total.density - r.total.kept / r.total.params) < 1e-15
    assert r.other_params == model.count_params() - r.total.params  # biases and BN, not masks
    out = capsys.readouterr().out
    assert "conv/kernel" in out and "TOTAL" in out and f"{r.total.kept:,}" in out
    assert "MACs" not in out  # the column appears once MAC counts exist


def test_report_counts_nonzeros_of_a_stripped_model():
    wrapped = tfprune.prune_at_init(residual_cnn(), "magnitude", sparsity=0.75, verbose=0)
    r = tfprune.report(tfprune.strip(wrapped), verbose=0)
    assert r.total.kept == int(np.floor(0.25 * r.total.params + 0.5))
    assert str(r).splitlines()[0].split() == ["weight", "kind", "shape", "params", "kept", "density"]
