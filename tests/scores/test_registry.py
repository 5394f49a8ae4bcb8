"""The scorer registry: names, user callables, options."""

import pytest

import tfprune
from tfprune.scores import registry


@pytest.fixture
def clean_registry():
    before = dict(registry._SCORERS.entries)
    yield
    registry._SCORERS.entries.clear()
    registry._SCORERS.entries.update(before)


def test_builtin_names():
    assert {"magnitude", "random"} <= set(tfprune.scores.available())
    assert tfprune.scores.get("magnitude").fn is tfprune.scores.magnitude


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown criterion 'snipp'; known criteria: .*magnitude.*random"):
        tfprune.scores.get("snipp")


def test_register_and_duplicate(clean_registry):
    @tfprune.scores.register("test_ones", needs_data=True)
    def ones(model, targets, data):
        return [1.0 for _ in targets]

    scorer = tfprune.scores.get("test_ones")
    assert scorer.needs_data and scorer.keeps_pruned and "test_ones" in tfprune.scores.available()
    with pytest.raises(ValueError, match="already registered"):
        tfprune.scores.register("test_ones")(lambda model, targets, data: [])


def test_options_are_checked_against_the_scorer_signature():
    scorer = tfprune.scores.get("random")
    assert scorer.accepts("seed") and not scorer.accepts("temperature")
    with pytest.raises(TypeError, match="takes no option \\['temperature'\\]"):
        scorer(None, [], None, temperature=3)
