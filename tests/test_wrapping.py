"""wrap / apply_masks / get_masks / strip, and saving and loading wrapped models."""

import json
import zipfile

import keras
import numpy as np
import pytest
from helpers import L, SubclassedMLP, batch, random_masks, residual_cnn, subclassed_mlp

import tfprune


def all_layers(model):
    return model._flatten_layers(include_self=False, recursive=True)


def test_wrap_shares_layers_with_the_original_functional_model():
    """The wrapped model holds the original layer objects; the original model is unchanged."""
    model = residual_cnn()
    wrapped = tfprune.wrap(model)
    inner = {id(layer.layer) for layer in wrapped.layers if isinstance(layer, tfprune.MaskedLayer)}
    prunable = {id(t.unit) for t in tfprune.prunable_weights(model)}
    assert inner == prunable and len(inner) == 5
    assert not tfprune.is_wrapped(model)
    x, _ = batch((8, 8, 3))
    np.testing.assert_array_equal(model(x), wrapped(x))  # all-ones masks: the same function


def test_wrap_nested_models():
    """A Sequential inside a functional model is wrapped too, in the same target order."""
    inner = keras.Sequential([keras.Input((4,)), L.Dense(6, name="inner_a"), L.Dense(5, name="inner_b")], name="inner")
    inputs = keras.Input((3,))
    x = L.Dense(4, name="outer_a")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="outer_b")(inner(x)))
    names = [t.name for t in tfprune.prunable_weights(model)]
    wrapped = tfprune.wrap(model)
    assert [t.name for t in tfprune.prunable_weights(wrapped)] == names
    assert [t.layer.name for t in tfprune.prunable_weights(wrapped)] == ["outer_a", "inner_a", "inner_b", "outer_b"]
    assert not tfprune.is_wrapped(inner)  # the nested model itself was cloned, not changed


def test_wrap_subclassed_replaces_tracked_sublayers_in_place():
    """Attributes, list items and nested Sequential layers of a subclassed model get wrapped."""
    model = subclassed_mlp()
    n_weights = len(model.weights)
    wrapped = tfprune.wrap(model)
    assert wrapped is model
    assert isinstance(model.first, tfprune.MaskedLayer)
    assert all(isinstance(b, tfprune.MaskedLayer) for b in model.blocks)
    assert isinstance(model.head.layers[0], tfprune.MaskedLayer)
    assert len(model.weights) == n_weights + 4  # four kernels gained a mask each; nothing duplicated
    assert len(model.trainable_weights) == n_weights


def test_wrap_twice_and_unwrapped_masks_are_errors():
    model = residual_cnn()
    with pytest.raises(ValueError, match="wrap it first"):
        tfprune.get_masks(model)
    wrapped = tfprune.wrap(model)
    with pytest.raises(ValueError, match="already wrapped"):
        tfprune.wrap(wrapped)


def test_apply_and_get_masks_round_trip_list_and_dict():
    """get_masks returns what apply_masks set, as booleans; a dict sets only the named weights."""
    wrapped = tfprune.wrap(residual_cnn())
    masks = random_masks(wrapped, 0.5)
    tfprune.apply_masks(wrapped, [m.astype("float32") for m in masks])
    got = tfprune.get_masks(wrapped)
    assert all(g.dtype == bool for g in got)
    for g, m in zip(got, masks):
        np.testing.assert_array_equal(g, m)
    first = tfprune.prunable_weights(wrapped)[0]
    tfprune.apply_masks(wrapped, {first.name: np.zeros(first.shape)})
    got = tfprune.get_masks(wrapped)
    assert not got[0].any()
    for g, m in zip(got[1:], masks[1:]):
        np.testing.assert_array_equal(g, m)


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda ms: ms[:-1], "masks for"),
        (lambda ms: ms[:-1] + [np.ones((2, 2))], "has shape"),
        (lambda ms: ms[:-1] + [np.full(ms[-1].shape, 0.5)], "other than 0 and 1"),
        (lambda ms: {"no/such/kernel": ms[0]}, "no masked weight named"),
    ],
    ids=["count", "shape", "values", "name"],
)
def test_bad_masks_are_rejected_and_change_nothing(make_bad, message):
    """A bad mask set raises a specific error and leaves every mask as it was."""
    wrapped = tfprune.wrap(residual_cnn())
    good = random_masks(wrapped, 0.5)
    tfprune.apply_masks(wrapped, good)
    with pytest.raises(ValueError, match=message):
        tfprune.apply_masks(wrapped, make_bad([np.zeros_like(m) for m in good]))
    for g, m in zip(tfprune.get_masks(wrapped), good):
        np.testing.assert_array_equal(g, m)


def test_save_and_load_gives_identical_masks_and_predictions(tmp_path):
    """model.save → keras.models.load_model: same masks, same dense weights, same outputs."""
    wrapped = tfprune.wrap(residual_cnn())
    tfprune.apply_masks(wrapped, random_masks(wrapped, 0.3))
    x, _ = batch((8, 8, 3))
    path = tmp_path / "wrapped.keras"
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    assert sum(isinstance(layer, tfprune.MaskedLayer) for layer in loaded.layers) == 5
    for a, b in zip(tfprune.get_masks(wrapped), tfprune.get_masks(loaded)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(tfprune.prunable_weights(wrapped), tfprune.prunable_weights(loaded)):
        np.testing.assert_array_equal(a.variable.numpy(), b.variable.numpy())
    np.testing.assert_array_equal(wrapped.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_subclassed_weights_round_trip_through_a_fresh_wrap(tmp_path):
    """A wrapped subclassed model's weights file loads into a freshly wrapped instance."""
    model = tfprune.wrap(subclassed_mlp())
    tfprune.apply_masks(model, random_masks(model, 0.3))
    path = tmp_path / "sub.weights.h5"
    model.save_weights(path)
    fresh = tfprune.wrap(subclassed_mlp())
    fresh.load_weights(path)
    for a, b in zip(tfprune.get_masks(model), tfprune.get_masks(fresh)):
        np.testing.assert_array_equal(a, b)
    x, _ = batch((10,))
    np.testing.assert_array_equal(model(x), fresh(x))


def test_strip_functional_gives_an_independent_plain_model(tmp_path):
    """strip: no tfprune layer left, zeros where pruned, same outputs; the wrapped model keeps
    its dense weights; the stripped model saves and loads as plain Keras."""
    wrapped = tfprune.wrap(residual_cnn())
    masks = random_masks(wrapped, 0.3)
    tfprune.apply_masks(wrapped, masks)
    dense_before = [t.variable.numpy().copy() for t in tfprune.prunable_weights(wrapped)]
    plain = tfprune.strip(wrapped)
    assert not any(type(layer).__module__.startswith("tfprune") for layer in all_layers(plain))
    assert [layer.name for layer in plain.layers] == [layer.layer.name if isinstance(layer, tfprune.MaskedLayer) else layer.name for layer in wrapped.layers]
    for t, m, w in zip(tfprune.prunable_weights(plain), masks, dense_before):
        np.testing.assert_array_equal(t.variable.numpy(), w * m)
    for t, w in zip(tfprune.prunable_weights(wrapped), dense_before):
        np.testing.assert_array_equal(t.variable.numpy(), w)  # wrapped model untouched
    x, _ = batch((8, 8, 3))
    np.testing.assert_allclose(plain.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    plain.save(tmp_path / "plain.keras")
    reloaded = keras.models.load_model(tmp_path / "plain.keras")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), plain.predict(x, verbose=0))


def test_strip_subclassed_unwraps_in_place():
    """strip on a subclassed model: same object, plain layers back, zeros written, same outputs."""
    model = tfprune.wrap(subclassed_mlp())
    masks = random_masks(model, 0.3)
    tfprune.apply_masks(model, masks)
    x, _ = batch((10,))
    expected = model(x).numpy()
    plain = tfprune.strip(model)
    assert plain is model
    assert isinstance(model.first, L.Dense) and isinstance(model.blocks[1], L.Dense)
    assert not tfprune.is_wrapped(model)
    assert len(model.weights) == 8  # four kernels and four biases, no masks
    for t, m in zip(tfprune.prunable_weights(model), masks):
        assert np.all(t.variable.numpy()[~m] == 0.0)
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-6, atol=1e-6)


class DictHeld(keras.Model):
    """Sub-layers held in a dict and a tuple."""

    def __init__(self):
        super().__init__()
        self.parts = {"a": L.Dense(4), "b": L.Dense(3)}
        self.pair = (L.Dense(5), L.Dense(2))

    def call(self, x):
        return self.pair[1](self.pair[0](self.parts["b"](self.parts["a"](x))))


def test_wrap_and_strip_layers_held_in_dicts_and_tuples():
    model = DictHeld()
    x, _ = batch((6,), n=4)
    model(x)
    tfprune.apply_masks(tfprune.wrap(model), [np.zeros(s, bool) for s in [(6, 4), (4, 3), (3, 5), (5, 2)]])
    assert all(isinstance(layer, tfprune.MaskedLayer) for layer in [*model.parts.values(), *model.pair])
    biases_only = model(x).numpy()
    np.testing.assert_allclose(biases_only, np.zeros_like(biases_only))  # zero kernels, zero biases
    tfprune.strip(model)
    assert all(type(layer) is L.Dense for layer in [*model.parts.values(), *model.pair])
    assert all(np.all(layer.kernel.numpy() == 0) for layer in [*model.parts.values(), *model.pair])


class _Scorer(keras.Model):
    """A functional model of a class of its own, with a method a plain copy would lose."""

    def scaled(self, x):
        return 2 * self(x)


def test_strip_returns_the_original_model_of_a_class_of_its_own_with_zeros_written():
    inputs = keras.Input((6,))
    model = _Scorer(inputs, keras.layers.Dense(3, name="out")(keras.layers.Dense(5, name="hidden")(inputs)))
    wrapped = tfprune.prune_at_init(model, "magnitude", sparsity=0.5, verbose=0)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    expected = np.asarray(wrapped(x))
    masks = tfprune.get_masks(wrapped)
    stripped = tfprune.strip(wrapped)
    assert stripped is model and type(stripped) is _Scorer
    np.testing.assert_allclose(stripped.scaled(x), 2 * expected, rtol=1e-6)
    for layer, mask in zip(["hidden", "out"], masks):
        kernel = model.get_layer(layer).kernel.numpy()
        assert np.count_nonzero(kernel[~mask]) == 0 and np.all(kernel[mask] != 0)


def test_a_wrapped_subclassed_model_saves_and_loads_with_its_masks(tmp_path):
    """model.save → keras.models.load_model on a subclassed model wrapped in place: the original
    class, wrapped the same way, bit-identical predictions, masks, dense weights and compile config;
    it trains with its masks, saves again, and strips to a plain SubclassedMLP."""
    model = tfprune.wrap(subclassed_mlp())
    masks = random_masks(model, 0.3)
    tfprune.apply_masks(model, masks)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = batch((10,))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "sub.keras")
    loaded = keras.models.load_model(tmp_path / "sub.keras")
    assert isinstance(loaded, SubclassedMLP) and type(loaded).__name__ == "SubclassedMLP"
    assert isinstance(loaded.first, tfprune.MaskedLayer) and isinstance(loaded.head.layers[0], tfprune.MaskedLayer)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    for a, b in zip(tfprune.get_masks(loaded), masks):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(tfprune.prunable_weights(loaded), tfprune.prunable_weights(model)):
        np.testing.assert_array_equal(a.variable.numpy(), b.variable.numpy())
    assert loaded.compiled and loaded.loss.get_config() == model.loss.get_config()

    loaded.fit(x, y, epochs=1, verbose=0)
    effective = [t.variable.numpy() * m for t, m in zip(tfprune.prunable_weights(loaded), masks)]
    loaded.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(loaded(x)))

    plain = tfprune.strip(again)
    assert type(plain) is SubclassedMLP and not tfprune.layers.targets.is_wrapped(plain)
    for t, e in zip(tfprune.prunable_weights(plain), effective):
        np.testing.assert_array_equal(t.variable.numpy(), e)


def test_a_subclassed_model_whose_layers_changed_since_saving_is_a_clear_error(tmp_path):
    model = tfprune.wrap(subclassed_mlp())
    model.save(tmp_path / "sub.keras")
    with zipfile.ZipFile(tmp_path / "sub.keras") as source:
        files = {name: source.read(name) for name in source.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["wrappers"][0]["position"] = [7]  # a position SubclassedMLP's __init__ never fills
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "changed.keras", "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    with pytest.raises(ValueError, match=r"MaskedLayer around a Dense at layer position \[7\], where SubclassedMLP's "
                                         r"__init__ now makes nothing; load it with the code that saved it"):
        keras.models.load_model(tmp_path / "changed.keras")


def test_a_wrapped_subclassed_model_keras_cannot_remake_is_a_clear_error(tmp_path):
    """A class Keras cannot find (defined in a function, not registered) saves; loading names why."""

    class Local(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = L.Dense(4), L.Dense(2)

        def call(self, x):
            return self.out(self.hidden(x))

    model = Local()
    model(np.zeros((1, 3), "float32"))
    tfprune.wrap(model).save(tmp_path / "local.keras")
    with pytest.raises(ValueError, match=r"cannot load the wrapped 'Local': Keras could not make it from its config "
                                         r"\(TypeError: Could not locate class 'Local'.*needs a get_config\(\)"):
        keras.models.load_model(tmp_path / "local.keras")
