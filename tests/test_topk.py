"""Tests of tfprune.topk: the exact top-k over several arrays, through the band and without it.

Expected sets come from the float64 NumPy reference ranking of tests/ranking.py.
"""

import numpy as np
import pytest

from ranking import KINDS, assert_masks_equal, reference_global, score_tensors

from tfprune.sparsity import masks as M
from tfprune.sparsity import topk


def _parts(kind, seed=0):
    """The mask tests' score tensors (2201 entries), flattened."""
    return [s.ravel() for s in score_tensors(kind, seed=seed)]



@pytest.fixture
def band_spy(monkeypatch):
    """Makes any input long enough for the band and the threads, and records what each band found."""
    monkeypatch.setattr(topk, "_PARTITION_BELOW", 1)
    monkeypatch.setattr(topk, "_SAMPLE", 64)
    found, band = [], topk._band_kth_highest

    def spy(*args):
        found.append(band(*args))
        return found[-1]

    monkeypatch.setattr(topk, "_band_kth_highest", spy)
    return found


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 22, 1100, 2180, 2201])
@pytest.mark.parametrize("with_candidates", [False, True])
def test_band_keeps_the_reference_set(band_spy, kind, k, with_candidates):
    """Narrowing to a band around a sampled threshold keeps exactly the reference ranking's set,
    ties to the lower index of the concatenation across arrays."""
    parts = _parts(kind)
    rng = np.random.default_rng(1)
    candidates = [rng.random(p.size) < 0.995 for p in parts] if with_candidates else None
    k = min(k, sum(int(c.sum()) for c in candidates)) if with_candidates else k
    got = topk.top_k(parts, k, candidates)
    assert_masks_equal(got, reference_global(parts, k, candidates))
    assert sum(int(g.sum()) for g in got) == k
    if kind == "random" and 0 < k < 2150:
        assert band_spy and band_spy[0] is not None  # the band held the threshold: no fallback


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [0, 1, 700, 2201])
def test_short_inputs_partition_directly(kind, k):
    parts = _parts(kind, seed=3)
    assert_masks_equal(topk.top_k(parts, k), reference_global(parts, k))


def test_band_that_misses_the_threshold_falls_back_to_an_exact_partition(band_spy):
    """A sample that misrepresents the scores (every sampled entry 0, the rest rising) gives a band
    without the threshold; the selection is still exact."""
    flat = np.arange(1.0, 6401.0)
    flat[::100] = 0.0  # the strided sample (stride 6400 // 64 = 100) sees only zeros
    got = topk.top_k([flat], 3200)
    assert band_spy == [None]
    assert_masks_equal(got, reference_global([flat], 3200))


def test_long_float32_scores_with_candidates_keep_the_reference_set():
    """Above the direct-partition length (2^20 entries, so threads and the band are used unpatched),
    float32 scores with candidates keep the reference set, through masks.from_scores."""
    rng = np.random.default_rng(2)
    scores = [rng.standard_normal(1_000_000).astype(np.float32), rng.standard_normal((300, 400)).astype(np.float32)]
    candidates = [rng.random(1_000_000) < 0.6, rng.random((300, 400)) < 0.6]
    k = M.kept_count(0.3, 1_120_000)
    got = M.from_scores(scores, sparsity=0.7, candidates=candidates)
    expected = reference_global([s.ravel() for s in scores], k, [c.ravel() for c in candidates])
    assert_masks_equal([g.ravel() for g in got], expected)


def test_a_forked_child_selects_with_threads_of_its_own():
    """The thread pool of a parent is useless after fork (its threads are not copied); a child
    process makes its own and selects the same set."""
    import multiprocessing

    rng = np.random.default_rng(4)
    parts = [rng.standard_normal(700_000), rng.standard_normal(600_000)]
    expected = topk.top_k(parts, 1000)  # the parent's pool now exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(topk.top_k, (parts, 1000)).get(timeout=60)
    assert_masks_equal(got, expected)
    assert_masks_equal(expected, reference_global(parts, 1000))
