"""Sweeps that fail: a bad grid refused before the first network, a failure before the first network
leaves nothing it created, a resumable sweep keeps its files, a damaged CSV names its file and line."""

import os

import keras
import numpy as np
import pytest

import tfprune
from tfprune.experiments import cli, sweep
from tfprune import training
from tfprune.experiments.grid import check_grid

RECIPE = training.Recipe(epochs=1, batch_size=16, optimizer="adam", learning_rate=1e-3, weight_decay=0.0,
                         schedule="constant")


def tiny():
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype("float32")
    return x, rng.integers(0, 3, 48)


def run_sweep(data, csv_path, compressions=(10,)):
    return sweep.accuracy_sweep(tiny, data, data, ["random"], compressions, recipe=RECIPE, include_dense=False,
                                csv_path=str(csv_path), verbose=0)


def failing_fit(*args, **kwargs):
    raise RuntimeError("training failed")


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished one-network sweep: the bytes of its CSV and JSON."""
    path = tmp_path_factory.mktemp("finished") / "s.csv"
    run_sweep(data, path)
    return path.read_bytes(), (path.parent / "s.csv.json").read_bytes()


def write_finished(folder, finished, csv=None):
    (folder / "s.csv").write_bytes(finished[0] if csv is None else csv)
    (folder / "s.csv.json").write_bytes(finished[1])


@pytest.mark.parametrize(
    "methods, compressions, seeds, message",
    [
        ([], [10], [0], "methods is empty: give at least one"),
        (["snip", "snip"], [10], [0], "methods repeats 'snip': give each once"),
        (["snip"], [], [0], "compressions is empty: give at least one"),
        (["snip"], [10, 100, 10.0], [0], "compressions repeats 10.0: give each once"),
        (["snip"], [10], [], "seeds is empty: give at least one"),
        (["snip"], [10], [-1, 3], r"seeds must be an int in \[0, 2\*\*32 - 1\], got -1"),
        (["snip"], [10], [2 ** 32], r"got 4294967296"),
        (["snip"], [10], [1.5], r"got 1.5"),
        (["snip"], [0.5], [0], r"compression must be .*>= 1, got 0.5"),
    ],
)
def test_bad_grids_are_refused_before_any_network(methods, compressions, seeds, message, data, tmp_path):
    def no_model():
        raise AssertionError("a network was built")

    with pytest.raises(ValueError, match=message):
        check_grid(methods, compressions, seeds)
    with pytest.raises(ValueError, match=message):
        sweep.accuracy_sweep(no_model, data, data, methods, compressions, recipe=RECIPE, seeds=seeds,
                             csv_path=str(tmp_path / "s.csv"), verbose=0)
    with pytest.raises(ValueError, match=message):
        tfprune.collapse_sweep(no_model, methods, compressions, data=data, seeds=seeds, verbose=0)
    assert os.listdir(tmp_path) == []


def test_check_grid_sorts_compressions_and_keeps_callables(data):
    def mine(model, targets, data):
        return None

    assert check_grid(["snip", mine], [100, 10], (3, 0)) == (["snip", mine], [10.0, 100.0], [3, 0])
    with pytest.raises(ValueError, match="samples must be None or an int >= 1, got 0"):
        sweep.accuracy_sweep(tiny, data, data, ["snip"], [10], recipe=RECIPE, samples=0)


def test_a_sweep_that_fails_before_its_first_network_leaves_nothing(data, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "fit", failing_fit)
    with pytest.raises(RuntimeError, match="training failed"):
        run_sweep(data, tmp_path / "s.csv")
    assert os.listdir(tmp_path) == []


def test_a_failed_resumed_sweep_keeps_its_files_unchanged(data, finished, tmp_path, monkeypatch):
    write_finished(tmp_path, finished)
    monkeypatch.setattr(training, "fit", failing_fit)
    with pytest.raises(RuntimeError, match="training failed"):
        run_sweep(data, tmp_path / "s.csv", compressions=(10, 100))  # 10 is done, 100 fails
    assert (tmp_path / "s.csv").read_bytes() == finished[0]
    assert (tmp_path / "s.csv.json").read_bytes() == finished[1]


def test_the_command_leaves_no_folder_when_the_first_network_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "fit", failing_fit)
    out = tmp_path / "runs" / "sweep"
    code = cli.main(["sweep", "--model", "lenet_300_100", "--input-shape", "8,8,1", "--data", "digits",
                     "--criteria", "random", "--compressions", "10", "--no-dense", "--train-samples", "64",
                     "--test-samples", "32", "--quiet", "--out", str(out)])
    assert code == 1 and capsys.readouterr().err.strip() == "tfprune sweep: error: training failed"
    assert os.listdir(tmp_path) == []


def test_a_csv_cut_mid_row_names_its_file_and_line(data, finished, tmp_path, monkeypatch):
    header, row = finished[0].decode().splitlines()
    assert row.split(",")[:3] == ["random", "0", "10.0"] and len(row.split(",")) == len(sweep.COLUMNS)
    cut = f"{header}\n{row}\n{row[:len(row) // 2]}".encode()  # a second row, cut in its middle
    write_finished(tmp_path, finished, cut)
    monkeypatch.setattr(training, "fit", failing_fit)
    path = str(tmp_path / "s.csv")
    message = (f"{path}, line 3: not 12 comma-separated values (a row cut short, e.g. by an interrupted copy): "
               "delete that line, and a resumed sweep trains that network again")
    with pytest.raises(ValueError) as error:
        sweep.AccuracySweep.from_csv(path)
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        run_sweep(data, path)
    assert str(error.value) == message
    assert (tmp_path / "s.csv").read_bytes() == cut and sorted(os.listdir(tmp_path)) == ["s.csv", "s.csv.json"]
    joined = f"{header}\n{row},{row}\n".encode()  # two rows on one line
    write_finished(tmp_path, finished, joined)
    with pytest.raises(ValueError, match=r"s\.csv, line 2: not 12 comma-separated values"):
        sweep.AccuracySweep.from_csv(path)


def test_a_csv_value_that_is_not_a_number_names_the_column(finished, tmp_path):
    header, row = finished[0].decode().splitlines()
    values = row.split(",")
    values[sweep.COLUMNS.index("test_accuracy")] = "0.9x"
    write_finished(tmp_path, finished, f"{header}\n{','.join(values)}\n".encode())
    with pytest.raises(ValueError) as error:
        sweep.AccuracySweep.from_csv(str(tmp_path / "s.csv"))
    assert str(error.value).startswith(f"{tmp_path / 's.csv'}, line 2: column 'test_accuracy' holds '0.9x', "
                                       "not a number")


def test_a_damaged_configuration_names_its_file(data, finished, tmp_path, monkeypatch):
    write_finished(tmp_path, finished)
    (tmp_path / "s.csv.json").write_bytes(finished[1][:10])
    monkeypatch.setattr(training, "fit", failing_fit)
    with pytest.raises(ValueError) as error:
        run_sweep(data, tmp_path / "s.csv")
    assert str(error.value) == (f"{tmp_path / 's.csv.json'} (the configuration of {tmp_path / 's.csv'}) is not valid "
                                "JSON: Unterminated string starting at: line 2 column 2 (char 3): move both away or "
                                "choose another output")
    assert (tmp_path / "s.csv").read_bytes() == finished[0]


def test_test_labels_the_model_cannot_take_are_refused_before_training(data, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("a network was trained"))
    x, y = data
    with pytest.raises(ValueError, match=r"test: labels must be class ids in \[0, 3\)"):
        sweep.accuracy_sweep(tiny, data, (x, y + 1), ["random"], [10], recipe=RECIPE, csv_path=str(tmp_path / "s.csv"),
                             verbose=0)
    assert os.listdir(tmp_path) == []
