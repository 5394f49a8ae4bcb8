"""Block masks: whole 1×b blocks along the input axis, ranked by the sum of their scores."""

import numpy as np
import pytest
from helpers import residual_cnn

import tfprune
from tfprune import ArgumentError
from tfprune.sparsity import masks


def reference_blocks(scores, b, density):
    """NumPy reference: block sums along axis -2, global top-k over blocks, ties to lower index."""
    sums = []
    for s in scores:
        n = s.shape[-2]
        padded = np.concatenate([s, np.zeros(s.shape[:-2] + (-n % b,) + s.shape[-1:])], axis=-2)
        sums.append(padded.reshape(s.shape[:-2] + (padded.shape[-2] // b, b) + s.shape[-1:]).sum(axis=-2))
    flat = np.concatenate([x.ravel() for x in sums])
    k = int(np.floor(density * flat.size + 0.5))
    keep = np.zeros(flat.size, bool)
    keep[np.lexsort((np.arange(flat.size), -flat))[:k]] = True
    out, start = [], 0
    for s, x in zip(scores, sums):
        block = keep[start:start + x.size].reshape(x.shape)
        start += x.size
        out.append(np.repeat(block, b, axis=-2)[..., : s.shape[-2], :])
    return out


@pytest.mark.parametrize("b", [4, 16])
@pytest.mark.parametrize("density", [0.5, 0.1, 0.05])
def test_blocks_match_the_numpy_reference(b, density):
    rng = np.random.default_rng(0)
    scores = [rng.random((64, 10)), rng.random((3, 3, 20, 6)), rng.integers(0, 3, (32, 5)).astype(float)]
    got = masks.from_scores(scores, sparsity=1 - density, pattern=(1, b))
    for g, e in zip(got, reference_blocks(scores, b, density)):
        np.testing.assert_array_equal(g, e)


def test_every_block_is_all_kept_or_all_pruned_including_a_short_last_block():
    rng = np.random.default_rng(1)
    m = masks.from_scores([rng.random((10, 7))], sparsity=0.6, pattern=(1, 4))[0]
    blocks = [m[0:4], m[4:8], m[8:10]]
    for block in blocks:
        assert np.all(block.all(axis=0) | ~block.any(axis=0))
    assert sum(int(b.all(axis=0).sum()) for b in blocks) == masks.kept_count(0.4, 3 * 7)


def test_block_candidates_need_all_members():
    scores = [np.arange(16.0).reshape(8, 2)]
    candidates = [np.ones((8, 2), bool)]
    candidates[0][7, 1] = False  # the best block of column 1 loses one member
    m = masks.from_scores(scores, sparsity=0.5, pattern=(1, 4), candidates=candidates)[0]
    assert m[:, 1].tolist() == [True] * 4 + [False] * 4
    assert m[:, 0].tolist() == [False] * 4 + [True] * 4


@pytest.mark.parametrize("block, message", [((4, 1), "block must be"), ((1, 0), "b of block"), ((1, 2.5), "b of block"),
                                            ((1, 4, 1), "block must be")])
def test_bad_blocks(block, message):
    with pytest.raises(ArgumentError, match=message):
        masks.from_scores([np.ones((4, 4))], sparsity=0.5, pattern=block)


def test_prune_at_init_with_blocks_on_a_dense_model():
    model = tfprune.models.lenet_300_100((8, 8, 1), 10)
    pruned = tfprune.prune_at_init(model, "magnitude", sparsity=0.95, pattern=(1, 4), verbose=0)
    got = tfprune.get_masks(pruned)
    for m in got:
        grouped = m.reshape(m.shape[0] // 4, 4, m.shape[1])
        assert np.all(grouped.all(axis=1) | ~grouped.any(axis=1))
    blocks = sum(m.size // 4 for m in got)
    assert sum(int(m.sum()) for m in got) == 4 * masks.kept_count(0.05, blocks)


def test_prune_at_init_checks_the_block_before_any_work():
    model = residual_cnn()
    with pytest.raises(ValueError, match="block must be"):
        tfprune.prune_at_init(model, "synflow", sparsity=0.5, pattern=(2, 2), verbose=0)
    assert not tfprune.is_wrapped(model)
