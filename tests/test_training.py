"""The shared training recipe and the all-at-once output files."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import training
from tfprune.base.files import replacing

DIGITS = tfprune.data.load("digits", "train")


def small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.mark.parametrize("steps, batch", [(7, 32), (50, 64)])  # 50 × 64 > 1,437: more than one pass
def test_fit_steps_trains_exactly_that_many_batches(steps, batch):
    model = small_model()
    training.fit(model, DIGITS, training.Recipe(batch_size=batch, lr_schedule="constant"), steps=steps)
    assert int(model.optimizer.iterations.numpy()) == steps


def test_fit_epochs_and_cosine_schedule_reach_zero():
    model = small_model()
    recipe = training.Recipe(epochs=2, batch_size=500, learning_rate=0.3)
    training.fit(model, DIGITS, recipe)
    steps = 2 * -(-1437 // 500)
    assert int(model.optimizer.iterations.numpy()) == steps == 6
    rate = model.optimizer._learning_rate  # the schedule object (Keras keeps no public handle on it)
    assert isinstance(rate, keras.optimizers.schedules.CosineDecay)
    assert float(rate(0)) == pytest.approx(0.3) and float(rate(steps)) == pytest.approx(0.0, abs=1e-7)


def test_evaluate_matches_numpy():
    model = small_model()
    x, y = DIGITS
    accuracy, loss = training.evaluate(model, (x, y))
    logits = np.float64(model.predict(x, verbose=0))
    shifted = logits - logits.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    assert accuracy == pytest.approx(float((logits.argmax(1) == y).mean()))
    assert loss == pytest.approx(float(-log_softmax[np.arange(len(y)), y].mean()), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(optimizer="rmsprop"), "optimizer must be one of"),
        (dict(schedule="step"), "schedule must be one of"),
        (dict(epochs=1.5), "epochs must be an int >= 0, got 1.5"),
        (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
        (dict(learning_rate=-0.1), "learning_rate must be a finite number >= 0, got -0.1"),
    ],
)
def test_bad_recipes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.Recipe(**kwargs)


def test_adam_recipe_without_decay():
    optimizer = training.Recipe(optimizer="adam", learning_rate=1e-3, weight_decay=0.0,
                                schedule="constant").make_optimizer(10)
    assert isinstance(optimizer, keras.optimizers.AdamW) and float(optimizer.weight_decay) == 0.0


def test_replacing_writes_all_or_nothing(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with replacing(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with replacing(str(path)) as tmp:
        assert tmp.endswith("out.txt") and tmp != str(path)
        with open(tmp, "w") as f:
            f.write("new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with replacing(str(tmp_path / "missing" / "x.txt")):
            pass
