"""The API speaks one vocabulary (docs/api.md): every public argument is named there, every old
spelling still runs with one DeprecationWarning that names the new one, and old and new together
are refused before any work."""

import ast
import importlib
import inspect
import re
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import tfprune
from tfprune.base import deprecation
from tfprune.experiments import cli, collapse, sweep

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.md").read_text()
L = keras.layers


def _table(heading):
    """The rows of the first Markdown table under ``heading`` (header left out), as lists of cells."""
    lines = API.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not set(line) <= set("|- "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]


def _names(cell):
    """Argument names in a cell: `name`, `**name`, `name=` or `name=value`."""
    return set(re.findall(r"`\**([a-z_]+)(?:=[^`]*)?`", cell))


def _vocabulary():
    names = set()
    for row in _table("## Arguments"):
        names |= _names(row[0])
    for row in _table("are listed here:"):
        names |= _names(row[1])
    return names


ENTRY_POINTS = [
    tfprune.prune_at_init, tfprune.wrap, tfprune.unwrap, tfprune.strip, tfprune.apply_masks, tfprune.get_masks,
    tfprune.prunable_weights, tfprune.profile, tfprune.report, tfprune.masks.from_scores,
    tfprune.callbacks.GradualPruning, tfprune.callbacks.DynamicSparse, tfprune.callbacks.PruningSummaries,
    tfprune.structured.prune, tfprune.structured.remove, tfprune.autoprune.wrap, tfprune.export.tflite,
    tfprune.training.Recipe, sweep.accuracy_sweep, collapse.collapse_sweep, tfprune.quantize, tfprune.fake_quantize,
    tfprune.posttraining.prune,
]


def _parameters(entry):
    target = entry.__init__ if inspect.isclass(entry) else entry
    return [p.name for p in inspect.signature(target).parameters.values() if p.name != "self"]


def _tfmot_parameters():
    """The bridge's arguments, read from its source: importing it would point tf.keras at tf_keras."""
    tree = ast.parse((ROOT / "tfprune" / "interop" / "tfmot.py").read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in ("prune_at_init", "__init__"):
            args = node.args
            names = [a.arg for a in args.args + args.kwonlyargs if a.arg != "self"]
            names += [args.kwarg.arg] if args.kwarg else []
            found.setdefault(node.name, []).append(names)
    return [n for group in found.values() for names in group for n in names]


def test_every_public_argument_is_in_the_vocabulary():
    vocabulary = _vocabulary()
    assert {"criterion", "criterion_options", "sparsity", "allocation", "policy", "round_schedule"} <= vocabulary
    outside = {}
    for entry in ENTRY_POINTS:
        unknown = [n for n in _parameters(entry) if n not in vocabulary]
        if unknown:
            outside[entry.__qualname__] = unknown
    unknown = [n for n in _tfmot_parameters() if n not in vocabulary]
    if unknown:
        outside["tfmot"] = unknown
    assert not outside, f"arguments outside docs/api.md's vocabulary: {outside}"


def test_the_vocabulary_check_catches_a_stray_name():
    def stray(model, method=None):
        """A 0.1-style argument."""
    assert "method" not in _vocabulary()
    assert [n for n in _parameters(stray) if n not in _vocabulary()] == ["method"]


def test_every_renamed_argument_is_documented_as_an_old_spelling():
    documented = {(old, new) for row in _table("## Old spellings") for old in _names(row[0])
                  for new in _names(row[1])}
    for entry in ENTRY_POINTS:
        target = entry.__init__ if inspect.isclass(entry) else entry
        for old, (new, _) in getattr(target, "renamed_arguments", {}).items():
            assert (old, new.lstrip("*")) in documented, (entry.__qualname__, old, new)


def test_cli_shows_only_the_new_spellings():
    text = cli._parser().format_help() + "".join(
        action.choices[name].format_help()
        for action in cli._parser()._subparsers._group_actions for name in action.choices)
    for new in ("--criterion", "--criteria", "--lr-schedule", "--pattern"):
        assert new in text
    for old in ("--method ", "--methods", "--schedule", "--block"):
        assert old not in text


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), L.Dense(8, name="a"), L.Dense(3, name="b")])


def _fresh(monkeypatch):
    monkeypatch.setattr(deprecation, "_warned", set())


def _deprecations(record):
    return [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]


def test_old_argument_runs_warns_once_and_names_the_new_one(monkeypatch):
    _fresh(monkeypatch)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        old = tfprune.prune_at_init(_mlp(), method="magnitude", sparsity=0.5, block=(1, 2), verbose=0)
        tfprune.prune_at_init(_mlp(), method="magnitude", sparsity=0.5, verbose=0)
    messages = _deprecations(record)
    about_method = [m for m in messages if "'method'" in m]
    assert len(about_method) == 1 and "use 'criterion'" in about_method[0]
    assert any("'block'" in m and "use 'pattern'" in m for m in messages)
    new = tfprune.prune_at_init(_mlp(), criterion="magnitude", sparsity=0.5, pattern="1x2", verbose=0)
    for a, b in zip(tfprune.get_masks(old), tfprune.get_masks(new)):
        np.testing.assert_array_equal(a, b)


def test_old_and_new_spelling_together_are_refused_before_any_work():
    model = _mlp()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(TypeError, match="both 'method' \\(deprecated\\) and 'criterion'"):
        tfprune.prune_at_init(model, "magnitude", method="magnitude", sparsity=0.5)
    with pytest.raises(TypeError, match="both 'target_macs'"):
        tfprune.structured.prune(model, "l1", data=None, target_macs=0.5, kept_macs=0.5)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
    assert not tfprune.is_wrapped(model)


def test_criterion_options_dict_spreads_into_keywords(monkeypatch):
    _fresh(monkeypatch)
    seen = {}

    @deprecation.renamed(criterion_options="**criterion_options")
    def entry(model, criterion, **criterion_options):
        seen.update(criterion_options)

    with pytest.warns(DeprecationWarning, match="'criterion_options' is deprecated.*as keyword arguments"):
        entry(None, "singe", criterion_options={"steps": 4})
    assert seen == {"steps": 4}
    with pytest.raises(TypeError, match=r"\['steps'\] both in 'criterion_options'"):
        entry(None, "singe", criterion_options={"steps": 4}, steps=2)


def test_renamed_classes_and_report_order(monkeypatch):
    _fresh(monkeypatch)
    with pytest.warns(DeprecationWarning, match="Recipe\\(\\): 'schedule' is deprecated.*'lr_schedule'"):
        recipe = tfprune.training.Recipe(epochs=1, schedule="constant")
    assert recipe.lr_schedule == "constant"
    with pytest.warns(DeprecationWarning, match="'distribution' is deprecated.*'allocation'"):
        rigl = tfprune.callbacks.DynamicSparse("set", 0.5, distribution="uniform", end_step=10)
    assert rigl.allocation == "uniform"
    wrapped = tfprune.wrap(_mlp())
    with pytest.warns(DeprecationWarning, match="second argument is now input_shape"):
        old = tfprune.report(wrapped, 0)
    assert old.total.params == tfprune.report(wrapped, verbose=0).total.params == 6 * 8 + 8 * 3


def test_moved_modules_answer_at_their_old_path_with_a_warning(monkeypatch):
    _fresh(monkeypatch)
    with pytest.warns(DeprecationWarning, match="tfprune.layer_specs moved to tfprune.layers.specs"):
        old = tfprune.layer_specs
    assert old is tfprune.layers.specs
    with pytest.warns(DeprecationWarning, match="tfprune.scores.gradients moved to tfprune.autodiff.gradients"):
        from tfprune.scores.gradients import effective_gradients  # noqa: F401
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from tfprune.masks import kept_count  # public short paths stay, silently
        patterns = importlib.import_module("tfprune.patterns")
    assert kept_count(0.5, 4) == 2 and patterns is tfprune.sparsity.patterns
