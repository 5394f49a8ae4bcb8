"""Reference rankings for the mask tests: score tensors of several kinds, and the kept sets of a
float64 NumPy ranking ``np.lexsort((index, -score))`` (highest score first, lower flat index wins
ties), computed independently of tfprune."""

import numpy as np

SHAPES = [(7, 13), (50,), (3, 4, 5), (40, 50)]  # 91 + 50 + 60 + 2000 = 2201 weights
KINDS = ["random", "half_zero", "all_equal", "int_repeats"]


def score_tensors(kind, shapes=SHAPES, seed=0):
    """Score tensors of the given kind: continuous, half (signed) zeros, all equal, or small ints."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        n = int(np.prod(shape))
        if kind == "random":
            s = rng.standard_normal(n)
        elif kind == "half_zero":
            s = np.abs(rng.standard_normal(n))
            zero = rng.permutation(n)[: n // 2]
            s[zero] = np.where(rng.random(zero.size) < 0.5, 0.0, -0.0)
        elif kind == "all_equal":
            s = np.full(n, 0.25)
        elif kind == "int_repeats":
            s = rng.integers(-2, 3, n).astype(np.float64)
        else:
            raise AssertionError(kind)
        out.append(s.reshape(shape))
    return out


def reference_keep(flat, k, cand=None):
    """Reference mask: the k highest of flat (float64), ties to the lower index, only candidates."""
    s = np.asarray(flat, dtype=np.float64).copy()
    if cand is not None:
        s[~cand] = -np.inf
    order = np.lexsort((np.arange(s.size), -s))
    keep = np.zeros(s.size, dtype=bool)
    keep[order[:k]] = True
    if cand is not None:
        assert k <= cand.sum()
    return keep


def reference_global(scores, k, candidates=None):
    flat = np.concatenate([np.ravel(s) for s in scores])
    cand = None if candidates is None else np.concatenate([np.ravel(c) for c in candidates]).astype(bool)
    keep = reference_keep(flat, k, cand)
    sizes = [np.size(s) for s in scores]
    return [m.reshape(np.shape(s)) for m, s in zip(np.split(keep, np.cumsum(sizes)[:-1]), scores)]


def assert_masks_equal(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == bool and g.shape == e.shape
        np.testing.assert_array_equal(g, e)
