"""The command's bad inputs: unreadable model files, things that are not models, counts that
would silently become defaults, and outputs checked before the work. Each exits 1 with one line
naming the argument or file and the value, and leaves nothing new behind."""

import json
import os
import zipfile

import keras
import pytest

import tfprune
from tfprune.experiments import cli

MLP = ["--model", "lenet_300_100", "--input-shape", "8,8,1", "--data", "digits"]
SWEEP = ["sweep", *MLP, "--criteria", "random", "--compressions", "10", "--seeds", "1", "--no-dense", "--epochs", "1",
         "--train-samples", "64", "--test-samples", "32", "--quiet"]


def error_of(argv, capsys):
    """The one error line of a failed command (exit 1)."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, (code, err)
    return err[0]


def listing(folder):
    return sorted(os.listdir(folder))


@pytest.fixture
def no_work(monkeypatch):
    """Makes pruning and export fail loudly: a test using it proves the error came before the work."""
    def fail(*args, **kwargs):
        raise AssertionError("the work ran before the arguments were checked")

    monkeypatch.setattr(tfprune, "prune_at_init", fail)
    monkeypatch.setattr(tfprune.export.tflite_export, "_convert", fail)


@pytest.fixture(scope="module")
def bad_model_files(tmp_path_factory):
    """Files that are not readable Keras 3 models, beside one good model, and the reason each gives."""
    folder = tmp_path_factory.mktemp("models")
    good = folder / "good.keras"
    keras.Sequential([keras.Input((64,)), keras.layers.Dense(4)]).save(good)
    (folder / "random.keras").write_bytes(os.urandom(2000))
    (folder / "truncated.keras").write_bytes(good.read_bytes()[:1500])
    with zipfile.ZipFile(folder / "noconfig.keras", "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    layer = keras.layers.Dense(3)
    layer.build((None, 64))
    keras.saving.save_model(layer, folder / "layer.keras")
    (folder / "folder.keras").mkdir()
    not_zip = "is not a readable Keras 3 model: it is not a zip archive, as a .keras file is"
    return folder, {
        "random.keras": not_zip,
        "truncated.keras": not_zip,
        "noconfig.keras": "is not a readable Keras 3 model: the archive has no config.json",
        "layer.keras": "holds a Dense, not a keras.Model: save the whole model",
        "folder.keras": "is a folder, not a model file",
        "missing.keras": "no model file",
    }


@pytest.mark.parametrize("command", ["prune", "profile", "export"])
def test_every_subcommand_names_the_unreadable_model_file(command, bad_model_files, tmp_path, capsys, no_work):
    folder, reasons = bad_model_files
    before = listing(folder)
    for name, reason in reasons.items():
        path = str(folder / name)
        argv = {"prune": ["prune", path, "--criterion", "magnitude", "--sparsity", "0.5", "--out",
                          str(tmp_path / "p.keras")],
                "profile": ["profile", path],
                "export": ["export", path, "--tflite", str(tmp_path / "p.tflite")]}[command]
        line = error_of(argv, capsys)
        assert line.startswith(f"tfprune {command}: error: ") and f"{path}" in line and reason in line, line
    assert listing(tmp_path) == [] and listing(folder) == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prune", *MLP, "--classes", "0", "--criterion", "magnitude", "--sparsity", "0.5"],
         "--classes must be an int >= 1, got 0"),
        (["prune", *MLP, "--classes", "5", "--criterion", "magnitude", "--sparsity", "0.5"],
         "--classes 5 is fewer than the 10 classes of --data digits"),
        (["prune", *MLP, "--samples", "0", "--criterion", "snip", "--sparsity", "0.5"],
         "--samples must be an int >= 1, got 0"),
        (["prune", *MLP, "--rounds", "0", "--criterion", "synflow", "--sparsity", "0.5"],
         "--rounds must be an int >= 1, got 0"),
        (["prune", *MLP, "--seed", "-1", "--criterion", "random", "--sparsity", "0.5"],
         "--seed must be an int in [0, 2**32 - 1], got -1"),
    ],
)
def test_prune_counts_of_zero_are_refused(argv, message, tmp_path, capsys, no_work):
    line = error_of([*argv, "--out", str(tmp_path / "p.keras")], capsys)
    assert line.startswith(f"tfprune prune: error: {message}"), line
    assert listing(tmp_path) == []


def test_export_samples_zero_is_refused_not_256(bad_model_files, tmp_path, capsys, no_work):
    folder, _ = bad_model_files
    line = error_of(["export", str(folder / "good.keras"), "--tflite", str(tmp_path / "p.tflite"),
                     "--data", "digits", "--samples", "0"], capsys)
    assert line == "tfprune export: error: --samples must be an int >= 1, got 0"
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--criteria", ""], "--criteria '' names no criterion: give comma-separated criteria"),
        (["--criteria", " , "], "--criteria ' , ' names no criterion"),
        (["--seeds=-1,3"], "seeds must be an int in [0, 2**32 - 1], got -1"),
        (["--seeds", "4,4"], "seeds repeats 4: give each once"),
        (["--compressions", "10,10"], "compressions repeats 10.0: give each once"),
        (["--classes", "0"], "--classes must be an int >= 1, got 0"),
        (["--test-samples", "0"], "--test-samples must be an int >= 1, got 0"),
    ],
)
def test_sweep_bad_grid_or_counts_exit_1_and_create_no_folder(argv, message, tmp_path, capsys, monkeypatch):
    from tfprune import training

    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("a network was trained"))
    out = tmp_path / "runs" / "sweep"
    line = error_of([*SWEEP, *argv, "--out", str(out)], capsys)
    assert line.startswith("tfprune sweep: error: ") and message in line, line
    assert listing(tmp_path) == []


def test_collapse_empty_methods_and_negative_seed_create_no_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "collapse"
    collapse = ["collapse", "--model", "conv", "--input-shape", "8,8,1", "--compressions", "0:1:1", "--out", str(out)]
    assert error_of([*collapse, "--criteria", ""], capsys).endswith("--criteria '' names no criterion: give "
                                                                   "comma-separated criteria such as snip,synflow")
    assert "seeds must be an int in [0, 2**32 - 1], got -1" in error_of(
        [*collapse, "--criteria", "magnitude", "--seeds=-1,2"], capsys)
    assert listing(tmp_path) == []


def test_out_naming_a_folder_is_refused_before_pruning(tmp_path, capsys, no_work):
    (tmp_path / "taken.keras").mkdir()
    line = error_of(["prune", *MLP, "--criterion", "magnitude", "--sparsity", "0.5", "--out",
                     str(tmp_path / "taken.keras")], capsys)
    assert line == f"tfprune prune: error: --out '{tmp_path / 'taken.keras'}' is a folder: give a file name inside it"
    line = error_of(["prune", *MLP, "--criterion", "magnitude", "--sparsity", "0.5", "--out",
                     str(tmp_path / "missing" / "p.keras")], capsys)
    assert f"the folder of --out '{tmp_path / 'missing' / 'p.keras'}' does not exist" in line
    assert listing(tmp_path) == ["taken.keras"] and listing(tmp_path / "taken.keras") == []


def test_tflite_into_a_missing_folder_or_onto_a_folder_is_refused_before_converting(bad_model_files, tmp_path,
                                                                                    capsys, no_work):
    folder, _ = bad_model_files
    good = str(folder / "good.keras")
    line = error_of(["export", good, "--tflite", str(tmp_path / "missing" / "m.tflite")], capsys)
    assert f"the folder of --tflite '{tmp_path / 'missing' / 'm.tflite'}' does not exist" in line
    (tmp_path / "m.tflite").mkdir()
    line = error_of(["export", good, "--tflite", str(tmp_path / "m.tflite")], capsys)
    assert f"--tflite '{tmp_path / 'm.tflite'}' is a folder" in line
    assert listing(tmp_path) == ["m.tflite"] and listing(tmp_path / "m.tflite") == []


def test_sweep_out_folder_with_an_output_name_taken_by_a_folder(tmp_path, capsys, monkeypatch):
    from tfprune import training

    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("a network was trained"))
    (tmp_path / "sweep.png").mkdir()
    line = error_of([*SWEEP, "--out", str(tmp_path)], capsys)
    assert f"--out file '{tmp_path / 'sweep.png'}' is a folder" in line
    assert listing(tmp_path) == ["sweep.png"]


def test_labels_the_model_file_cannot_take_are_one_line_before_scoring(tmp_path, capsys, no_work):
    five = tmp_path / "five.keras"
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(5)]).save(five)
    line = error_of(["prune", str(five), "--data", "digits", "--criterion", "snip", "--sparsity", "0.5",
                     "--out", str(tmp_path / "p.keras")], capsys)
    assert line.startswith("tfprune prune: error: --data digits (train): labels must be class ids in [0, 5)"), line
    assert listing(tmp_path) == ["five.keras"]
