"""Tests of tfprune.masks: exact top-k counts, tie-breaking, scopes, ERK, errors and helpers.

Every expected value is computed independently of tfprune: kept counts with exact rational
arithmetic (``fractions.Fraction`` from the decimal sparsity), kept sets with a float64 NumPy
reference ranking ``np.lexsort((index, -score))`` (highest score first, lower flat index wins ties).
"""

import math
import re
import warnings
from fractions import Fraction

import numpy as np
import pytest

from ranking import KINDS, assert_masks_equal, reference_global, reference_keep, score_tensors

from tfprune.sparsity import masks as M

SPARSITIES = [0.0, 0.1, 0.5, 0.9, 0.99, 0.999]


def _exact_kept(sparsity, n):
    """floor(d·n + 1/2) with d = 1 - sparsity in exact decimal arithmetic."""
    d = 1 - Fraction(str(sparsity))
    return math.floor(d * n + Fraction(1, 2))


def _ref_local(scores, counts, candidates=None):
    return [
        reference_keep(np.ravel(s), k, None if candidates is None else np.ravel(candidates[i]).astype(bool)).reshape(
            np.shape(s)
        )
        for i, (s, k) in enumerate(zip(scores, counts))
    ]


# --------------------------------------------------------------------------- from_scores: counts


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("s", SPARSITIES)
def test_global_count_and_kept_set_match_reference(s, kind):
    """Global scope keeps exactly floor(d·N+1/2) weights: the reference ranking over the concatenation."""
    scores = score_tensors(kind)
    n = sum(np.size(x) for x in scores)
    k = _exact_kept(s, n)
    got = M.from_scores(scores, sparsity=s, scope="global")
    assert sum(int(m.sum()) for m in got) == k
    assert_masks_equal(got, reference_global(scores, k))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("s", SPARSITIES)
def test_local_uniform_count_and_kept_set_match_reference(s, kind):
    """Local uniform scope keeps floor(d·N_l+1/2) per tensor: the reference ranking inside each tensor."""
    scores = score_tensors(kind)
    counts = [_exact_kept(s, np.size(x)) for x in scores]
    got = M.from_scores(scores, sparsity=s, scope="local", allocation="uniform")
    assert [int(m.sum()) for m in got] == counts
    assert_masks_equal(got, _ref_local(scores, counts))


def test_global_ties_go_to_lower_flat_index_across_tensors():
    """With all scores tied, global scope keeps the first k entries of the row-major concatenation."""
    scores = [np.zeros((2, 3)), np.zeros(4)]
    got = M.from_scores(scores, sparsity=0.3)  # keeps 7 of 10
    assert got[0].tolist() == [[True] * 3, [True] * 3]
    assert got[1].tolist() == [True, False, False, False]


def test_global_ranks_across_tensors_not_per_tensor():
    """Global scope may empty one tensor when its scores are all lower than another's."""
    scores = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([10.0, 20.0, 30.0, 40.0])]
    got = M.from_scores(scores, sparsity=0.5)
    assert not got[0].any() and got[1].all()


# The two cases below are exact half-way points of floor(d·N + 1/2) with d = 1 - sparsity:
# 1 - 0.9 in binary float is 0.09999999999999998, so d·N lands just below the half and one weight
# too few is kept (a 5-weight tensor at sparsity 0.9 collapses to 0 weights).
FLOAT_HALF_CASES = [
    (0.9, [(5,)], "global"),
    (0.9, [(5,)], "local"),
    (0.9, [(15,)], "local"),
    (0.9, [(2,), (3,)], "global"),
    (0.9, [(4, 4), (5,)], "local"),
    (0.3, [(45,)], "global"),
    (0.3, [(5, 9)], "local"),
]


@pytest.mark.parametrize("s,shapes,scope", FLOAT_HALF_CASES)
def test_kept_count_exact_at_half_way_points(s, shapes, scope):
    """At an exact half-way point d·N = j + 1/2, sparsity s keeps j + 1 weights (rounds half up)."""
    scores = score_tensors("random", shapes)
    got = M.from_scores(scores, sparsity=s, scope=scope)
    if scope == "global":
        expected = [_exact_kept(s, sum(np.size(x) for x in scores))]
        got_counts = [sum(int(m.sum()) for m in got)]
    else:
        expected = [_exact_kept(s, np.size(x)) for x in scores]
        got_counts = [int(m.sum()) for m in got]
    assert got_counts == expected


# --------------------------------------------------------------------------- amount: sparsity/compression


@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("c", [1, 1.25, 2, 4, 8, 100])
def test_compression_equals_sparsity_one_minus_inverse(c, scope):
    """compression=c gives the same masks as sparsity=1-1/c, and keeps floor(N/c+1/2) weights."""
    scores = score_tensors("int_repeats")
    a = M.from_scores(scores, compression=c, scope=scope)
    b = M.from_scores(scores, sparsity=1 - 1 / c, scope=scope)
    assert_masks_equal(a, b)
    if scope == "global":
        n = sum(np.size(x) for x in scores)
        assert sum(int(m.sum()) for m in a) == math.floor(Fraction(n) / Fraction(c) + Fraction(1, 2))


def test_compression_10_equals_sparsity_09_on_five_weights():
    """compression=10 and sparsity=0.9 keep the same (one) weight of five."""
    scores = [np.array([5.0, 4.0, 3.0, 2.0, 1.0])]
    a = M.from_scores(scores, compression=10)
    b = M.from_scores(scores, sparsity=0.9)
    assert a[0].tolist() == [True, False, False, False, False]
    assert_masks_equal(b, a)


def test_both_or_neither_amount_raises():
    """Giving both sparsity and compression, or neither, raises ValueError."""
    scores = score_tensors("random")
    with pytest.raises(ValueError, match="not both"):
        M.from_scores(scores, sparsity=0.5, compression=2)
    with pytest.raises(ValueError):
        M.from_scores(scores)
    with pytest.raises(ValueError):
        M.resolve_density()


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.2, float("nan"), float("inf")])
def test_bad_sparsity_raises_with_value(s):
    """A sparsity outside [0, 1) raises ValueError quoting the value."""
    with pytest.raises(ValueError, match=re.escape(str(s))):
        M.from_scores(score_tensors("random"), sparsity=s)
    with pytest.raises(ValueError, match=re.escape(str(s))):
        M.resolve_density(sparsity=s)


@pytest.mark.parametrize("c", [0.5, 0.999, 0, -2, float("inf"), float("nan")])
def test_bad_compression_raises_with_value(c):
    """A compression below 1, infinite or NaN raises ValueError quoting the value."""
    with pytest.raises(ValueError, match=re.escape(str(c))):
        M.from_scores(score_tensors("random"), compression=c)
    with pytest.raises(ValueError, match=re.escape(str(c))):
        M.resolve_density(compression=c)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"sparsity": 0.0}, 1.0),
        ({"sparsity": 0.75}, 0.25),
        ({"sparsity": 0.9}, 0.1),
        ({"compression": 1}, 1.0),
        ({"compression": 4}, 0.25),
        ({"compression": 100}, 0.01),
        ({"compression": 1e6}, 1e-6),
    ],
)
def test_resolve_density_closed_form(kwargs, expected):
    """resolve_density returns 1 - sparsity or 1 / compression."""
    got = M.resolve_density(**kwargs)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize(
    "d,n,expected",
    [
        (0.25, 10, 3),
        (0.5, 3, 2),
        (0.5, 1, 1),
        (0.2, 7, 1),
        (0.35, 10, 4),
        (0.34, 10, 3),
        (0.0, 7, 0),
        (1.0, 7, 7),
        (0.001, 2201, 2),
        (1.5, 4, 4),
        (-0.1, 4, 0),
    ],
)
def test_kept_count_closed_form(d, n, expected):
    """kept_count is floor(d·n + 1/2), clipped to [0, n], as an int."""
    got = M.kept_count(d, n)
    assert type(got) is int and got == expected


# --------------------------------------------------------------------------- bad scores


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("scope", ["global", "local"])
def test_non_finite_scores_raise_naming_tensor(bad, scope):
    """NaN or ±inf in a score tensor raises ValueError naming that tensor and mentioning NaN."""
    scores = score_tensors("random", [(3, 4), (5,)])
    scores[1][2] = bad
    with pytest.raises(ValueError, match="NaN") as info:
        M.from_scores(scores, sparsity=0.5, scope=scope, names=["dense/kernel", "dense_1/kernel"])
    assert "dense_1/kernel" in str(info.value) and "dense/kernel" not in str(info.value)


def test_non_finite_scores_without_names_give_index():
    """Without names, the error for NaN scores names the tensor by its index."""
    scores = [np.ones(3), np.ones(4), np.array([1.0, np.nan, np.nan])]
    with pytest.raises(ValueError, match=r"score tensor 2 contain 2 NaN"):
        M.from_scores(scores, sparsity=0.5)


def test_finite_scores_select_exactly_as_a_plain_list():
    """FiniteScores skip the NaN/inf pass only: integer scores still become floats, and the masks
    are the reference ranking's."""
    scores = score_tensors("int_repeats", [(3, 4), (5,)])
    scores[1] = np.arange(5)  # integers, converted as for a plain list
    got = M.from_scores(M.FiniteScores(scores), sparsity=0.5)
    assert_masks_equal(got, reference_global(scores, M.kept_count(0.5, 17)))
    assert_masks_equal(got, M.from_scores(scores, sparsity=0.5))


# --------------------------------------------------------------------------- candidates


@pytest.mark.parametrize("kind", ["random", "int_repeats", "all_equal"])
@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("s", [0.6, 0.8, 0.9])
def test_candidates_restrict_and_match_reference(s, scope, kind):
    """Weights outside the candidates are never kept; the kept set is the reference top-k among candidates."""
    scores = score_tensors(kind, seed=1)
    rng = np.random.default_rng(2)
    cands = [rng.random(x.shape) < 0.45 for x in scores]
    got = M.from_scores(scores, sparsity=s, scope=scope, candidates=cands)
    for g, c in zip(got, cands):
        assert not (g & ~c).any()
    if scope == "global":
        k = _exact_kept(s, sum(x.size for x in scores))
        expected = reference_global(scores, k, cands)
    else:
        expected = _ref_local(scores, [_exact_kept(s, x.size) for x in scores], cands)
    assert_masks_equal(got, expected)


def test_candidates_accept_0_1_arrays():
    """Candidates given as 0/1 float arrays act like boolean masks."""
    scores = [np.array([4.0, 3.0, 2.0, 1.0])]
    got = M.from_scores(scores, sparsity=0.5, candidates=[np.array([0.0, 1.0, 0.0, 1.0])])
    assert got[0].tolist() == [False, True, False, True]


@pytest.mark.parametrize("scope", ["global", "local"])
def test_candidates_too_few_raise(scope):
    """Asking to keep more weights than the candidates allow raises ValueError."""
    scores = [np.arange(10.0), np.arange(10.0)]
    cands = [np.arange(10) < 3, np.arange(10) < 3]  # 3 + 3 candidates, 5 + 5 asked
    with pytest.raises(ValueError, match="cannot keep"):
        M.from_scores(scores, sparsity=0.5, scope=scope, candidates=cands)


@pytest.mark.parametrize(
    "cands",
    [
        [np.ones((3, 4), bool), np.ones(6, bool)],  # wrong shape
        [np.ones(12, bool), np.ones(5, bool)],  # same size, wrong shape
        [np.ones((3, 4), bool)],  # too few
        [np.ones((3, 4), bool), np.ones(5, bool), np.ones(5, bool)],  # too many
    ],
)
def test_candidates_mismatch_raises(cands):
    """Candidates with the wrong number of tensors or wrong shapes raise ValueError."""
    with pytest.raises(ValueError, match="candidates"):
        M.from_scores(score_tensors("random", [(3, 4), (5,)]), sparsity=0.5, candidates=cands)


# --------------------------------------------------------------------------- ERK


def test_erk_densities_hand_example():
    """ERK on (100,10),(10,10) at 0.5: ε = 550/130, densities 0.11·ε and 0.2·ε."""
    got = M.erk_densities([(100, 10), (10, 10)], 0.5)
    eps = 550 / 130
    assert got == pytest.approx([0.11 * eps, 0.2 * eps], rel=1e-12)
    assert got[0] * 1000 + got[1] * 100 == pytest.approx(550, rel=1e-12)


def test_erk_densities_single_cap():
    """A layer that would exceed density 1 is kept dense and the rest get the remaining budget."""
    # (100,100): raw 0.02; (10,2): raw 0.6. d=0.1 of 10020 → 1002; ε0 = 1002/212 → 0.6·ε0 > 1,
    # so (10,2) is capped and ε = (1002 - 20)/200 = 4.91 → 0.0982.
    got = M.erk_densities([(100, 100), (10, 2)], 0.1)
    assert got[1] == 1.0
    assert got[0] == pytest.approx(0.0982, rel=1e-12)
    assert got[0] * 10000 + got[1] * 20 == pytest.approx(0.1 * 10020, rel=1e-12)


def test_erk_densities_cascading_caps():
    """Capping one layer raises ε so far that a second layer must be capped in the next pass."""
    # raw·N: 200, 25, 1001; budget 0.2·11100 = 2220. ε0 = 2220/1226 caps (1,1000) only;
    # ε1 = 1220/225 caps (5,20) too (0.25·ε1 > 1); ε2 = (2220 - 1100)/200 = 5.6 → 0.112.
    shapes = [(100, 100), (5, 20), (1, 1000)]
    got = M.erk_densities(shapes, 0.2)
    assert got[1] == 1.0 and got[2] == 1.0
    assert got[0] == pytest.approx(0.112, rel=1e-12)
    assert sum(d * np.prod(s) for d, s in zip(got, shapes)) == pytest.approx(2220, rel=1e-12)


@pytest.mark.parametrize("d", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_erk_densities_budget_and_proportionality(d):
    """ERK densities lie in [0,1], sum to d·N, and are ∝ sum(shape)/prod(shape) among uncapped layers."""
    shapes = [(3, 3, 16, 32), (3, 3, 3, 16), (512, 10), (10,), (64, 64)]
    got = np.array(M.erk_densities(shapes, d))
    sizes = np.array([np.prod(s) for s in shapes], dtype=np.float64)
    raw = np.array([np.sum(s) for s in shapes], dtype=np.float64) / sizes
    assert ((got >= 0) & (got <= 1)).all()
    assert (got * sizes).sum() == pytest.approx(d * sizes.sum(), rel=1e-12)
    free = got < 1
    assert free.any()
    ratio = got[free] / raw[free]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)
    # a capped layer would have exceeded 1 at the common ε
    assert (raw[~free] * ratio[0] >= 1 - 1e-12).all()


def test_erk_densities_density_one_is_dense_without_warnings():
    """ERK at density 1 makes every layer dense, without numerical warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = M.erk_densities([(8,), (25, 10)], 1.0)
    assert got == [1.0, 1.0]


@pytest.mark.parametrize("kind", ["random", "int_repeats"])
@pytest.mark.parametrize("s", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_local_erk_total_exact_and_per_tensor_within_one(s, kind):
    """Local ERK keeps exactly floor(d·N+1/2) in total, each tensor within 1 of d_l·N_l, its top-k."""
    shapes = [(100, 10), (10, 10), (3, 3, 4, 8), (5,), (7, 9)]
    scores = score_tensors(kind, shapes, seed=3)
    n = sum(np.prod(x) for x in shapes)
    got = M.from_scores(scores, sparsity=s, scope="local", allocation="erk")
    counts = [int(m.sum()) for m in got]
    assert sum(counts) == _exact_kept(s, n)
    dl = M.erk_densities(shapes, 1 - s)
    for c, d, shape in zip(counts, dl, shapes):
        assert abs(c - d * np.prod(shape)) < 1
    assert_masks_equal(got, _ref_local(scores, counts))


def test_local_erk_cascading_caps_counts():
    """Local ERK on the cascading-cap example keeps exactly 1120, 100 and 1000 weights."""
    shapes = [(100, 100), (5, 20), (1, 1000)]
    got = M.from_scores(score_tensors("random", shapes), sparsity=0.8, scope="local", allocation="erk")
    assert [int(m.sum()) for m in got] == [1120, 100, 1000]
    assert got[1].all() and got[2].all()


# --------------------------------------------------------------------------- per-tensor allocation


@pytest.mark.parametrize("kind", ["random", "all_equal", "int_repeats"])
def test_per_tensor_allocation(kind):
    """allocation=[d_l] with local scope keeps floor(d_l·N_l+1/2) per tensor, the reference top-k."""
    scores = score_tensors(kind)
    dl = [0.5, 0.1, 1.0, 0.0]
    got = M.from_scores(scores, scope="local", allocation=dl)
    counts = [math.floor(Fraction(str(d)) * x.size + Fraction(1, 2)) for d, x in zip(dl, scores)]
    assert counts == [46, 5, 60, 0]
    assert [int(m.sum()) for m in got] == counts
    assert_masks_equal(got, _ref_local(scores, counts))


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"sparsity": 0.5, "scope": "global", "allocation": "erk"}, "local"),
        ({"scope": "global", "allocation": [0.5, 0.5]}, "local"),
        ({"scope": "local", "allocation": [0.5]}, "1 densities for 2"),
        ({"scope": "local", "allocation": [0.5, 0.5, 0.5]}, "3 densities for 2"),
        ({"scope": "local", "allocation": [0.5, 1.5]}, "1.5"),
        ({"scope": "local", "allocation": [-0.1, 0.5]}, "-0.1"),
        ({"sparsity": 0.5, "scope": "local", "allocation": [0.5, 0.5]}, "sparsity"),
        ({"sparsity": 0.5, "scope": "layer"}, "scope"),
        ({"sparsity": 0.5, "scope": "Global"}, "scope"),
        ({"sparsity": 0.5, "scope": "local", "allocation": "snip"}, "allocation"),
        ({"sparsity": 0.5, "scope": "local", "allocation": "ERK"}, "allocation"),
    ],
)
def test_bad_scope_or_allocation_raises(kwargs, pattern):
    """Invalid scope/allocation combinations, lengths and strings raise ValueError."""
    with pytest.raises(ValueError, match=re.escape(pattern)):
        M.from_scores(score_tensors("random", [(3, 4), (5,)]), **kwargs)


# --------------------------------------------------------------------------- determinism, types


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sparsity": 0.7},
        {"sparsity": 0.7, "scope": "local"},
        {"compression": 3, "scope": "local", "allocation": "erk"},
    ],
)
def test_deterministic_bool_masks_with_score_shapes(kwargs):
    """Same scores twice give identical bool masks shaped like the scores; inputs are left unchanged."""
    scores = score_tensors("int_repeats", seed=5)
    copies = [x.copy() for x in scores]
    a = M.from_scores(scores, **kwargs)
    b = M.from_scores([x.copy() for x in scores], **kwargs)
    for x, y, s in zip(a, b, scores):
        assert x.dtype == np.bool_ and y.dtype == np.bool_
        assert x.shape == s.shape
        np.testing.assert_array_equal(x, y)
    for x, c in zip(scores, copies):
        np.testing.assert_array_equal(x, c)


def test_float32_and_list_scores_accepted():
    """Scores as float32 arrays or nested lists give the same masks as float64 arrays."""
    scores = score_tensors("int_repeats", [(4, 5), (6,)], seed=7)
    ref = M.from_scores(scores, sparsity=0.6)
    assert_masks_equal(M.from_scores([x.astype(np.float32) for x in scores], sparsity=0.6), ref)
    assert_masks_equal(M.from_scores([x.tolist() for x in scores], sparsity=0.6), ref)


def test_empty_scores_raise():
    """An empty list of score tensors raises ValueError."""
    with pytest.raises(ValueError):
        M.from_scores([], sparsity=0.5)


# --------------------------------------------------------------------------- helpers


def test_density_helpers_hand_values():
    """density, densities, sparsity and compression on [1,0,0,0],[1,1,1,1] are 0.625, [0.25,1], 0.375, 1.6."""
    masks = [np.array([1, 0, 0, 0]), np.array([True, True, True, True])]
    assert M.density(masks) == 0.625
    assert M.densities(masks) == [0.25, 1.0]
    assert M.sparsity(masks) == 0.375
    assert M.compression(masks) == pytest.approx(1.6, rel=1e-15)


def test_density_is_weighted_by_size():
    """density over masks of different sizes is the total kept over the total count."""
    masks = [np.ones((2, 3), bool), np.zeros(10, bool), np.eye(2, dtype=bool)]  # 6 + 0 + 2 of 20
    assert M.density(masks) == pytest.approx(0.4, rel=1e-15)
    assert M.densities(masks) == pytest.approx([1.0, 0.0, 0.5], rel=1e-15)
    assert M.compression(masks) == pytest.approx(2.5, rel=1e-15)


def test_compression_of_empty_masks_is_inf():
    """compression of all-zero masks is inf and sparsity is 1."""
    masks = [np.zeros((2, 2), bool), np.zeros(3)]
    assert M.compression(masks) == math.inf
    assert M.sparsity(masks) == 1.0
    assert M.density(masks) == 0.0


@pytest.mark.parametrize(
    "masks,expected",
    [
        ([np.ones(3), np.zeros(2), np.array([0, 1]), np.zeros((2, 2), bool)], [1, 3]),
        ([np.ones(3), np.array([[0, 0], [0, 1]])], []),
        ([np.zeros(1), np.zeros(4)], [0, 1]),
    ],
)
def test_collapsed_layers(masks, expected):
    """collapsed_layers lists the indices of all-zero masks, in order."""
    assert M.collapsed_layers(masks) == expected


def test_helpers_agree_with_from_scores_count():
    """density() of from_scores masks equals kept/N computed independently."""
    scores = score_tensors("half_zero")
    got = M.from_scores(scores, sparsity=0.9)
    n = sum(x.size for x in scores)
    assert M.density(got) == _exact_kept(0.9, n) / n
