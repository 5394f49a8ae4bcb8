"""The collapse check after prune_at_init: emptied tensors named, input→output connectivity,
on_collapse="warn" | "raise" | "ignore", and --on-collapse on `tfprune prune`."""

import keras
import numpy as np
import pytest
from helpers import assert_unchanged, snapshot, subclassed_mlp

import tfprune
from tfprune.experiments import cli
from tfprune.analysis.connectivity import connected_outputs

L = keras.layers


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10)


def test_magnitude_empties_mobilenet_predictions_and_warns_naming_it(mobilenet):
    pruned = tfprune.prune_at_init(mobilenet, "magnitude", sparsity=0.9, verbose=0, on_collapse="ignore")
    names = [t.name for t in tfprune.prunable_weights(pruned)]
    emptied = [names[i] for i in tfprune.masks.collapsed_layers(tfprune.get_masks(pruned))]
    assert "predictions/kernel" in emptied
    with pytest.warns(tfprune.CollapseWarning) as caught:
        tfprune.prune_at_init(mobilenet, "magnitude", sparsity=0.9, verbose=0)
    [message] = [str(w.message) for w in caught if w.category is tfprune.CollapseWarning]
    assert f"emptied {len(emptied)} of {len(names)} prunable tensors" in message
    assert all(name in message for name in emptied)
    assert "disconnected" in message  # the softmax of the bias alone: no path from the input


def test_raise_leaves_every_variable_bit_identical(mobilenet):
    before = snapshot(mobilenet)
    with pytest.raises(tfprune.CollapseError, match="predictions/kernel"):
        tfprune.prune_at_init(mobilenet, "magnitude", sparsity=0.9, verbose=0, on_collapse="raise")
    assert_unchanged(mobilenet, before)


def chain(widths=(4, 5, 5, 2), seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((widths[0],))
    x = inputs
    for i, width in enumerate(widths[1:]):
        x = L.Dense(width, activation="relu", name=f"d{i}")(x)
    return keras.Model(inputs, x)


def zero_for(name):
    """A scorer giving 0 to the named tensor and 1 elsewhere: pruning exactly that tensor's size empties it."""
    def scorer(model, targets, data):
        return [np.zeros(t.shape) if t.name == name else np.ones(t.shape) for t in targets]
    return scorer


def test_raise_on_an_already_wrapped_model_leaves_weights_and_masks_as_they_were():
    wrapped = tfprune.wrap(chain())
    rng = np.random.default_rng(0)
    masks = [rng.random(t.shape) < 0.7 for t in tfprune.prunable_weights(wrapped)]
    tfprune.apply_masks(wrapped, masks)
    before = snapshot(wrapped)
    kept_outside_d1 = int(masks[0].sum() + masks[2].sum())
    with pytest.raises(tfprune.CollapseError, match="d1/kernel"):
        tfprune.prune_at_init(wrapped, zero_for("d1/kernel"), sparsity=1 - kept_outside_d1 / 55, verbose=0,
                              on_collapse="raise")
    assert_unchanged(wrapped, before)


def test_an_emptied_layer_of_a_chain_disconnects_the_output():
    """d1 (5×5 of 4·5 + 5·5 + 5·2 = 55 weights) emptied: no path is left."""
    with pytest.warns(tfprune.CollapseWarning, match=r"emptied 1 of 3 .*: d1/kernel\. The output is disconnected"):
        pruned = tfprune.prune_at_init(chain(), zero_for("d1/kernel"), sparsity=25 / 55, verbose=0)
    assert connected_outputs(pruned) == [False]


def test_an_emptied_residual_branch_leaves_the_output_connected():
    inputs = keras.Input((4,))
    a = L.Dense(6, activation="relu", name="a")(inputs)
    branch = L.Dense(6, activation="relu", name="branch")(a)
    outputs = L.Dense(2, name="out")(L.Add()([a, branch]))
    model = keras.Model(inputs, outputs)
    with pytest.warns(tfprune.CollapseWarning, match=r"branch/kernel\. The output is still connected"):
        pruned = tfprune.prune_at_init(model, zero_for("branch/kernel"), sparsity=36 / 72, verbose=0)
    assert connected_outputs(pruned) == [True]


def test_connectivity_equals_boolean_path_counting_on_random_masks():
    """Oracle: the chain is connected iff the product of its 0/1 masks is non-zero (float64)."""
    wrapped = tfprune.wrap(chain())
    targets = tfprune.prunable_weights(wrapped)
    rng = np.random.default_rng(1)
    outcomes = []
    for _ in range(30):
        masks = [rng.random(t.shape) < 0.3 for t in targets]
        tfprune.apply_masks(wrapped, masks)
        paths = np.linalg.multi_dot([m.astype(np.float64) for m in masks])
        outcomes.append(bool(paths.any()))
        assert connected_outputs(wrapped) == [outcomes[-1]]
    assert 0 < sum(outcomes) < len(outcomes)  # both cases were tried


def test_disconnected_without_an_emptied_tensor_still_warns():
    """d0 keeps only units 0-1, d1 reads only units 2-4: no tensor is empty, no path is left."""
    wrapped = tfprune.wrap(chain())
    masks = [np.ones(t.shape, bool) for t in tfprune.prunable_weights(wrapped)]
    masks[0][:, 2:] = False
    masks[1][:2, :] = False
    tfprune.apply_masks(wrapped, masks)
    with pytest.warns(tfprune.CollapseWarning, match="^The output is disconnected") as record:
        tfprune.prune_at_init(wrapped, "magnitude", sparsity=1 - sum(m.sum() for m in masks) / 55, verbose=0)
    collapse = [w for w in record if issubclass(w.category, tfprune.CollapseWarning)]
    assert len(collapse) == 1 and "emptied" not in str(collapse[0].message)  # no tensor is named as empty
    assert connected_outputs(wrapped) == [False]
    assert [int(m.sum()) for m in tfprune.get_masks(wrapped)] == [int(m.sum()) for m in masks]


def test_a_subclassed_model_is_checked_at_the_shape_it_was_built_with():
    model = subclassed_mlp()
    second = tfprune.prunable_weights(model)[1].name
    with pytest.warns(tfprune.CollapseWarning, match=f"{second}. The output is disconnected from the input"):
        tfprune.prune_at_init(model, zero_for(second), sparsity=16 * 16 / (10 * 16 + 16 * 16 + 16 * 12 + 12 * 3),
                              verbose=0)


def test_a_bad_on_collapse_raises_before_anything_runs():
    def never(model, targets, data):
        raise AssertionError("scored")

    model = chain()
    before = snapshot(model)
    with pytest.raises(ValueError, match="on_collapse must be one of 'warn', 'raise', 'ignore', got 'loud'$"):
        tfprune.prune_at_init(model, never, sparsity=0.5, verbose=0, on_collapse="loud")
    assert_unchanged(model, before)


def test_cli_on_collapse(tmp_path, capsys):
    """A chain whose middle kernel is tiny: magnitude at 0.4 empties it (25 of 55 weights)."""
    model = chain()
    model.get_layer("d1").kernel.assign(np.full((5, 5), 1e-4, "float32"))
    path = str(tmp_path / "m.keras")
    model.save(path)
    argv = ["prune", path, "--criterion", "magnitude", "--sparsity", str(25 / 55), "--quiet"]
    code = cli.main([*argv, "--on-collapse", "raise", "--out", str(tmp_path / "raised.keras")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "d1/kernel" in err[0] and "disconnected" in err[0]
    assert not (tmp_path / "raised.keras").exists()
    with pytest.warns(tfprune.CollapseWarning, match="d1/kernel"):
        assert cli.main([*argv, "--out", str(tmp_path / "warned.keras")]) == 0
    assert cli.main([*argv, "--on-collapse", "ignore", "--out", str(tmp_path / "ignored.keras")]) == 0
    saved = keras.models.load_model(tmp_path / "ignored.keras")
    assert [int(m.sum()) for m in tfprune.get_masks(saved)] == [20, 0, 10]
