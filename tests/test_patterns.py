"""Sparsity patterns: N:M groups and 1×b blocks along the reduction axis, strings, errors, and N:M
through prune_at_init, fit, strip, TFLite and the command line."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import ArgumentError
from tfprune.experiments import cli
from tfprune import export
from tfprune.sparsity import masks, patterns
from tfprune.sparsity.patterns import Block, NByM, Unstructured

L = keras.layers
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")


def nm_reference(scores, n, m, axis, candidates=None):
    """Loop re-derivation in float64: along ``axis`` (None: the flattened entries) every ``m``
    consecutive entries keep their ``n`` highest candidates, ties to the lower index; a short last
    group of r entries keeps min(n, r)."""
    s = np.asarray(scores, np.float64)
    c = np.ones(s.shape, bool) if candidates is None else np.asarray(candidates, bool)
    lines = s.reshape(1, -1) if axis is None else np.moveaxis(s, axis, -1)
    allowed = c.reshape(1, -1) if axis is None else np.moveaxis(c, axis, -1)
    keep = np.zeros(lines.shape, bool)
    for idx in np.ndindex(lines.shape[:-1]):
        line, ok = lines[idx], allowed[idx]
        for start in range(0, len(line), m):
            group = [j for j in range(start, min(start + m, len(line))) if ok[j]]
            for j in sorted(group, key=lambda j: (-line[j], j))[:n]:
                keep[idx + (j,)] = True
    return keep.reshape(s.shape) if axis is None else np.moveaxis(keep, -1, axis)


def kept_per_group(mask, m, axis):
    """Kept entries of every group of m along ``axis`` (which must be a multiple of m)."""
    lines = np.moveaxis(mask, axis, -1)
    return lines.reshape(lines.shape[:-1] + (-1, m)).sum(axis=-1)


SHAPES = [(8, 5), (3, 3, 8, 4), (10, 3), (9, 2), (3, 3, 3, 6), (6,), (7,)]


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 8), (1, 2), (4, 4)])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
def test_n_by_m_matches_the_loop_reference(n, m, ties):
    """Dense (in, out), conv (kh, kw, in, out), ragged inputs (10, 9, 3 rows), 1-D tensors; tied scores."""
    rng = np.random.default_rng(0)
    scores = [rng.integers(0, 3, s).astype(float) if ties else rng.random(s) for s in SHAPES]
    got = masks.from_scores(scores, pattern=NByM(n, m))
    for g, s in zip(got, scores):
        axis = s.ndim - 2 if s.ndim >= 2 else None
        np.testing.assert_array_equal(g, nm_reference(s, n, m, axis))


def test_n_by_m_density_is_exactly_n_over_m_and_ignores_scope():
    rng = np.random.default_rng(1)
    scores = [rng.random((32, 12)), rng.random((3, 3, 8, 16)), rng.random((12,))]
    got = masks.from_scores(scores, sparsity=0.5, pattern="2:4", scope="global")
    assert masks.density(got) == 0.5 and masks.densities(got) == [0.5, 0.5, 0.5]
    assert np.all(kept_per_group(got[0], 4, 0) == 2) and np.all(kept_per_group(got[1], 4, 2) == 2)
    local = masks.from_scores(scores, pattern="2:4", scope="local")  # the amount may be left out
    for a, b in zip(got, local):
        np.testing.assert_array_equal(a, b)


def test_a_short_last_group_keeps_min_n_and_its_length():
    """2:4 along 10 inputs: groups of 4, 4, 2 keep 2, 2, 2; along 9: 2, 2, 1; along 3: 2."""
    for rows, expected in [(10, [2, 2, 2]), (9, [2, 2, 1]), (3, [2])]:
        mask = masks.from_scores([np.random.default_rng(rows).random((rows, 5))], pattern="2:4")[0]
        counts = [int(mask[start:start + 4, col].sum()) for col in range(5) for start in range(0, rows, 4)]
        assert counts == expected * 5


def test_one_d_weights_are_grouped_along_their_only_axis():
    mask = masks.from_scores([np.array([5., 1., 4., 2., 0., 9., 3.])], pattern="2:4")[0]
    assert mask.tolist() == [True, False, True, False, False, True, True]


def test_reduction_axes_choose_the_grouped_axis():
    rng = np.random.default_rng(2)
    s = rng.random((6, 8))
    got = masks.from_scores([s, s], pattern="2:4", reduction_axes=[1, -1])
    np.testing.assert_array_equal(got[0], nm_reference(s, 2, 4, 1))
    np.testing.assert_array_equal(got[1], got[0])
    flat = masks.from_scores([s], pattern="2:4", reduction_axes=[None])[0]
    np.testing.assert_array_equal(flat, nm_reference(s, 2, 4, None))
    # blocks follow the axis too: blocks along axis 1 of s are blocks along axis 0 of s.T
    by_axis = masks.from_scores([s], sparsity=0.5, pattern="1x4", reduction_axes=[1])[0]
    np.testing.assert_array_equal(by_axis, masks.from_scores([s.T], sparsity=0.5, pattern="1x4")[0].T)


def test_n_by_m_keeps_the_best_candidates():
    rng = np.random.default_rng(3)
    s = rng.random((8, 6))
    candidates = np.ones((8, 6), bool)
    candidates[np.argmax(s, axis=0), np.arange(6)] = False  # every column loses its best entry
    got = masks.from_scores([s], pattern="2:4", candidates=[candidates])[0]
    np.testing.assert_array_equal(got, nm_reference(s, 2, 4, 0, candidates))
    assert not np.any(got & ~candidates) and np.all(kept_per_group(got, 4, 0) == 2)


def test_too_few_candidates_in_a_group_raise():
    candidates = np.ones((8, 3), bool)
    candidates[4:7, 1] = False  # the second group of column 1 keeps one candidate
    with pytest.raises(ValueError, match=r"cannot keep 2 of every 4 weights of fc/kernel: 1 group\(s\)"):
        masks.from_scores([np.ones((8, 3))], pattern="2:4", candidates=[candidates], names=["fc/kernel"])


@pytest.mark.parametrize("text, expected", [
    ("2:4", NByM(2, 4)), (" 1:8 ", NByM(1, 8)), ("1x4", Block(1, 4)), ("1X16", Block(1, 16)),
    ("unstructured", Unstructured()), (None, Unstructured()), ((1, 4), Block(1, 4)), ([1, 16], Block(1, 16)),
])
def test_get_parses_strings_and_pairs(text, expected):
    assert patterns.get(text) == expected
    assert patterns.get(expected) is expected


@pytest.mark.parametrize("pattern, text, representation", [
    (NByM(2, 4), "2:4", "NByM(2, 4)"), (Block(1, 4), "1x4", "Block(1, 4)"),
    (Unstructured(), "unstructured", "Unstructured()"),
])
def test_str_round_trips_and_configs_serialise(pattern, text, representation):
    assert str(pattern) == text and repr(pattern) == representation and patterns.get(text) == pattern
    assert type(pattern).from_config(pattern.get_config()) == pattern
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pattern))
    assert type(again) is type(pattern) and again == pattern and hash(again) == hash(pattern)


@pytest.mark.parametrize("make, message", [
    (lambda: NByM(3, 2), r"n of NByM\(n, m\) must be an int in \[1, 2\], got 3$"),
    (lambda: NByM(1, 0), r"m of NByM\(n, m\) must be an int >= 1, got 0$"),
    (lambda: NByM(-1, 4), r"n of NByM\(n, m\) must be an int in \[1, 4\], got -1$"),
    (lambda: NByM(0, 4), r"n of NByM\(n, m\) must be an int in \[1, 4\], got 0$"),
    (lambda: NByM(2.0, 4), r"n of NByM\(n, m\) must be an int in \[1, 4\], got 2.0$"),
    (lambda: patterns.get("3:2"), r"n of NByM\(n, m\) must be an int in \[1, 2\], got 3$"),
    (lambda: patterns.get("abc"), "unknown sparsity pattern 'abc'"),
    (lambda: patterns.get("2:"), "unknown sparsity pattern"),
    (lambda: patterns.get(0.5), "unknown sparsity pattern 0.5"),
    (lambda: patterns.get("2x2"), "block must be"),
    (lambda: patterns.get((1, 4, 1)), "block must be"),
    (lambda: Block(1, 0), r"b of block \(1, b\) must be an int >= 1, got 0$"),
])
def test_bad_patterns_raise(make, message):
    with pytest.raises(ArgumentError, match=message):
        make()


@pytest.mark.parametrize("options, message", [
    (dict(pattern="2:4", sparsity=0.6), r"sparsity 0.5, but sparsity 0.6 was asked"),
    (dict(pattern="2:4", compression=3), r"sparsity 0.5, but sparsity 0.666667"),
    (dict(pattern="2:4", sparsity=0.5, scope="local", allocation="erk"), "leave allocation='uniform'"),
    (dict(pattern="1x4"), "give the amount"),
    (dict(pattern="2:4", reduction_axes=[0]), "reduction_axes has 1 entries for 2 tensors"),
    (dict(pattern="2:4", reduction_axes=[0, 2]),
     r"reduction_axes\[1\] \(tensor of shape \(4, 4\)\) must be None or an int in \[-2, 1\], got 2"),
])
def test_bad_from_scores_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        masks.from_scores([np.ones((4, 4)), np.ones((4, 4))], **options)


def test_check_sparsity_allows_float32_rounding_only():
    NByM(1, 3).check_sparsity(float(np.float32(2 / 3)))  # what a float32 schedule returns
    with pytest.raises(ValueError, match="sparsity 0.666667"):
        NByM(1, 3).check_sparsity(2 / 3 + 1e-5)
    Unstructured().check_sparsity(0.9)  # no fixed density: any sparsity
    Block(1, 4).check_sparsity(0.9)


# --- through prune_at_init, fit, strip, TFLite, the command line ------------------------------

def dense_conv_model():
    """Conv2D (3,3,4,8) → Conv2D (3,3,8,8) → Dense (32,12) → Dense (12,3): every input axis a multiple of 4."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    x = L.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = L.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = L.Dense(12, activation="relu", name="fc1")(L.Flatten()(x))
    return keras.Model(inputs, L.Dense(3, name="fc2")(x))


REDUCTION_AXIS = {"conv1": 2, "conv2": 2, "fc1": 0, "fc2": 0}


@pytest.fixture(scope="module")
def two_four():
    """The model, its kernels before pruning, and the model pruned to 2:4 by magnitude."""
    model = dense_conv_model()
    kernels = {layer.name: layer.kernel.numpy().copy() for layer in model.layers if layer.weights}
    return model, kernels, tfprune.prune_at_init(model, "magnitude", sparsity=0.5, pattern="2:4", verbose=0)


def test_prune_at_init_2_4_keeps_the_two_largest_of_every_four(two_four):
    _, kernels, pruned = two_four
    targets = tfprune.prunable_weights(pruned)
    assert sorted(t.layer.name for t in targets) == sorted(REDUCTION_AXIS)
    for t, mask in zip(targets, tfprune.get_masks(pruned)):
        axis = REDUCTION_AXIS[t.layer.name]
        assert np.all(kept_per_group(mask, 4, axis) == 2)
        np.testing.assert_array_equal(mask, nm_reference(np.abs(kernels[t.layer.name]), 2, 4, axis))


def test_the_amount_may_be_left_out_but_not_contradicted(two_four):
    _, _, pruned = two_four
    again = tfprune.prune_at_init(dense_conv_model(), "magnitude", pattern=NByM(2, 4), verbose=0)
    for a, b in zip(tfprune.get_masks(again), tfprune.get_masks(pruned)):
        np.testing.assert_array_equal(a, b)
    fresh = dense_conv_model()
    before = [v.numpy().copy() for v in fresh.weights]
    for options, message in [(dict(sparsity=0.75), "sparsity 0.5, but sparsity 0.75"),
                             (dict(sparsity=0.5, rounds=3), "prunes in one round: pass rounds=1")]:
        with pytest.raises(ValueError, match=message):
            tfprune.prune_at_init(fresh, "magnitude", pattern="2:4", verbose=0, **options)
    assert not tfprune.is_wrapped(fresh)
    for v, b in zip(fresh.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_fit_strip_and_tflite_keep_the_2_4_zeros(tmp_path):
    pruned = tfprune.prune_at_init(dense_conv_model(), "magnitude", sparsity=0.5, pattern="2:4", verbose=0)
    expected = tfprune.get_masks(pruned)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6, 6, 4)).astype("float32"), rng.integers(0, 3, 16)
    pruned.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   jit_compile=False)
    before = {t.layer.name: t.variable.numpy().copy() for t in tfprune.prunable_weights(pruned)}
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0)  # one step
    for a, b in zip(tfprune.get_masks(pruned), expected):
        np.testing.assert_array_equal(a, b)
    plain = tfprune.strip(pruned)
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    stripped = {layer.name: layer.kernel.numpy() for layer in plain.layers if layer.weights}
    for t, mask in zip(tfprune.prunable_weights(pruned), expected):
        kernel = stripped[t.layer.name]
        assert np.all(kernel[~mask] == 0) and np.all(kernel[mask] != 0)
        assert np.any(kernel[mask] != before[t.layer.name][mask])  # the step trained the kept weights
        assert np.all(kept_per_group(kernel != 0, 4, REDUCTION_AXIS[t.layer.name]) == 2)

    report = export.tflite(plain, tmp_path / "nm.tflite", check_data=x)
    assert report.max_abs_diff <= 1e-5
    nonzeros = sorted(int(np.count_nonzero(k)) for k in stripped.values())
    assert sorted(t.stored for t in report.sparse_tensors) == nonzeros  # the file stores exactly the non-zeros


def test_command_line_pattern_and_errors(tmp_path, capsys):
    out = tmp_path / "nm.keras"
    model = ["--model", "lenet_300_100", "--input-shape", "8,8,1", "--classes", "10", "--criterion", "magnitude"]
    assert cli.main(["prune", *model, "--sparsity", "0.5", "--pattern", "2:4", "--quiet", "--out", str(out)]) == 0
    for mask in tfprune.get_masks(keras.models.load_model(out)):
        assert np.all(kept_per_group(mask, 4, 0) == 2)
    capsys.readouterr()
    for extra, message in [(["--sparsity", "0.9", "--pattern", "2:4"], "sparsity 0.5, but sparsity 0.9"),
                           (["--sparsity", "0.5", "--pattern", "3:2"], "n of NByM(n, m) must be an int in [1, 2]")]:
        assert cli.main(["prune", *model, *extra, "--out", str(tmp_path / "x.keras")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nm.keras"]
