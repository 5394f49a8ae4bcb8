"""The `tfprune` subcommands: prune, sweep, collapse, profile and export, on tiny models."""

import csv
import json
import os

import keras
import matplotlib.image
import numpy as np
import pytest

import tfprune
from tfprune.experiments import cli, sweep
from tfprune.sparsity import masks
from tfprune import training

# LeNet-300-100 on the embedded 8x8 digits: kernels 64x300, 300x100, 100x10.
KERNELS = 64 * 300 + 300 * 100 + 100 * 10
BIASES = 300 + 100 + 10
MLP = ["--model", "lenet_300_100", "--input-shape", "8,8,1", "--data", "digits"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, message):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def assert_valid_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def only_files(folder):
    return sorted(os.listdir(folder))


# --- prune ------------------------------------------------------------------------------------

def test_prune_saves_a_wrapped_model_with_the_exact_kept_count(tmp_path, capsys):
    out = tmp_path / "p.keras"
    code, stdout, _ = run(["prune", *MLP, "--criterion", "snip", "--compression", "10", "--out", str(out)], capsys)
    assert code == 0 and "saved wrapped model" in stdout
    model = keras.models.load_model(out)
    kept = sum(int(m.sum()) for m in tfprune.get_masks(model))
    assert kept == masks.kept_count(0.1, KERNELS) == 5020
    assert only_files(tmp_path) == ["p.keras"]  # no temporary file left


def test_prune_strip_and_include_bias_save_a_plain_model_with_zeros(tmp_path, capsys):
    out = tmp_path / "p.keras"
    code, _, _ = run(["prune", *MLP, "--criterion", "magnitude", "--sparsity", "0.9", "--include-bias", "--strip",
                      "--quiet", "--out", str(out)], capsys)
    assert code == 0
    model = keras.models.load_model(out)
    assert not tfprune.is_wrapped(model)
    weights = [layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")]
    weights += [layer.bias.numpy() for layer in model.layers if hasattr(layer, "kernel")]
    nonzero = sum(int(np.count_nonzero(w)) for w in weights)
    assert nonzero == masks.kept_count(0.1, KERNELS + BIASES)


def test_prune_block_keeps_whole_blocks(tmp_path, capsys):
    out = tmp_path / "p.keras"
    assert run(["prune", *MLP, "--criterion", "magnitude", "--compression", "4", "--pattern", "1x4", "--quiet",
                "--out", str(out)], capsys)[0] == 0
    for m in tfprune.get_masks(keras.models.load_model(out)):
        rows = m.reshape(m.shape[0] // 4, 4, m.shape[1]) if m.shape[0] % 4 == 0 else None
        assert rows is not None and np.all(rows.all(axis=1) == rows.any(axis=1))  # each block all-or-nothing


def test_prune_from_a_saved_file(tmp_path, capsys):
    source = tmp_path / "m.keras"
    tfprune.models.lenet_300_100((8, 8, 1)).save(source)
    out = tmp_path / "p.keras"
    assert run(["prune", str(source), "--criterion", "random", "--compression", "100", "--quiet", "--out", str(out)],
               capsys)[0] == 0
    kept = sum(int(m.sum()) for m in tfprune.get_masks(keras.models.load_model(out)))
    assert kept == masks.kept_count(0.01, KERNELS) == 502


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--criterion", "nope", "--compression", "10"], "unknown criterion 'nope'"),
        (["--criterion", "snip", "--compression", "0.5"], "compression"),
        (["--criterion", "snip", "--compression", "10", "--data", "imagenet"], "imagenet"),
    ],
)
def test_prune_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    model = ["--model", "lenet_300_100", "--input-shape", "8,8,1"]
    code, _, err = run(["prune", *model, *argv, "--out", str(tmp_path / "p.keras")], capsys)
    assert_one_line_error(code, err, message)
    assert only_files(tmp_path) == []


def test_prune_refuses_data_of_another_shape_and_missing_data(tmp_path, capsys):
    out = str(tmp_path / "p.keras")
    code, _, err = run(["prune", "--model", "lenet_300_100", "--data", "digits", "--input-shape", "28,28,1",
                        "--criterion", "snip", "--compression", "10", "--out", out], capsys)
    assert_one_line_error(code, err, "x has examples of shape (8, 8, 1), but model 'lenet_300_100' takes inputs of "
                                     "shape (28, 28, 1)")
    code, _, err = run(["prune", "--model", "lenet_300_100", "--criterion", "snip", "--compression", "10",
                        "--out", out], capsys)
    assert_one_line_error(code, err, "criterion 'snip' scores with data: pass --data NAME")
    code, _, err = run(["prune", *MLP, "--criterion", "snip", "--compression", "10", "--out", str(tmp_path / "p.h5")],
                       capsys)
    assert_one_line_error(code, err, "--out must end in .keras")
    assert only_files(tmp_path) == []


def test_prune_failure_keeps_an_existing_output(tmp_path, capsys):
    out = tmp_path / "p.keras"
    out.write_bytes(b"old")
    code, _, _ = run(["prune", *MLP, "--criterion", "snip", "--compression", "0.1", "--out", str(out)], capsys)
    assert code == 1 and out.read_bytes() == b"old"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="unknown criterion"):
        cli.main(["--debug", "prune", *MLP, "--criterion", "nope", "--compression", "10",
                  "--out", str(tmp_path / "p.keras")])


# --- sweep ------------------------------------------------------------------------------------

SWEEP = ["sweep", *MLP, "--criteria", "random,snip", "--compressions", "10,100", "--epochs", "1", "--seeds", "2",
         "--batch-size", "64", "--quiet"]


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_sweep_writes_csv_png_and_table_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    code, stdout, _ = run([*SWEEP, "--out", str(out)], capsys)
    assert code == 0
    assert only_files(out) == ["sweep.csv", "sweep.csv.json", "sweep.md", "sweep.png"]
    columns, rows = read_csv(out / "sweep.csv")
    assert tuple(columns) == sweep.COLUMNS
    cells = sorted((r["method"], float(r["compression"]), int(r["seed"])) for r in rows)
    assert cells == sorted([("dense", 1.0, 0), ("dense", 1.0, 1)]
                           + [(m, c, s) for m in ("random", "snip") for c in (10.0, 100.0) for s in (0, 1)])
    for r in rows:
        density = 1 / float(r["compression"])
        assert int(r["total"]) == KERNELS
        assert int(r["kept"]) == (KERNELS if r["method"] == "dense" else masks.kept_count(density, KERNELS))
        assert float(r["sparsity"]) == pytest.approx(1 - int(r["kept"]) / KERNELS)
        assert 0 <= float(r["test_accuracy"]) <= 1
    dense = [float(r["test_accuracy"]) for r in rows if r["method"] == "dense"]
    assert min(dense) > 0.5  # one epoch of the dense MLP beats chance (0.1) by far
    assert_valid_png(out / "sweep.png")
    table = (out / "sweep.md").read_text()
    assert table.splitlines()[0] == "| method | 10^1.00 | 10^2.00 |" and table.strip() in stdout

    before = (out / "sweep.csv").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished network was trained again")

    monkeypatch.setattr(training, "fit", no_training)
    assert run([*SWEEP, "--out", str(out)], capsys)[0] == 0  # everything is done: nothing runs
    assert (out / "sweep.csv").read_bytes() == before


def test_sweep_resumes_an_interrupted_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    real_fit, calls = training.fit, []

    def fit_then_stop(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(training, "fit", fit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        cli.main([*SWEEP, "--out", str(out)])
    assert len(read_csv(out / "sweep.csv")[1]) == 3  # each finished network was written at once
    monkeypatch.setattr(training, "fit", real_fit)
    code, _, _ = run([*SWEEP[:-1], "--out", str(out)], capsys)  # not quiet: says it resumes
    assert code == 0
    assert len(read_csv(out / "sweep.csv")[1]) == 10


def test_sweep_with_other_settings_refuses_to_mix_results(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert run([*SWEEP[:-1], "--criteria", "random", "--compressions", "10", "--seeds", "1", "--no-dense",
                "--quiet", "--out", str(out)], capsys)[0] == 0
    before = (out / "sweep.csv").read_bytes()
    code, _, err = run([*SWEEP[:-1], "--criteria", "random", "--compressions", "10", "--seeds", "1", "--no-dense",
                        "--lr", "0.01", "--quiet", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "different configuration (recipe differ)")
    assert (out / "sweep.csv").read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--criteria", "random,nope"], "unknown criterion 'nope'"),
        (["--model", "resnet7"], "unknown --model 'resnet7'"),
        (["--train-samples", "0"], "--train-samples must be an int >= 1"),
    ],
)
def test_sweep_bad_input_creates_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "sweep"
    code, _, err = run([*SWEEP, *argv, "--out", str(out)], capsys)
    assert_one_line_error(code, err, message)
    assert not out.exists()


def test_compression_ranges_parse_as_log10_and_bad_ranges_exit_1(capsys):
    assert cli._compressions("1:3:0.5") == pytest.approx([10, 10 ** 1.5, 100, 10 ** 2.5, 1000])
    assert cli._compressions("0.5:3:0.5")[0] == pytest.approx(10 ** 0.5) and len(cli._compressions("0.5:3:0.5")) == 6
    assert cli._compressions("20,50") == [20.0, 50.0]
    assert cli._seeds("3") == [0, 1, 2] and cli._seeds("4,7") == [4, 7]
    for bad in ("3:1:0.5", "1:3:0", "0.5", "a:b:c"):
        code, _, err = run(["sweep", "--model", "conv", "--data", "digits", "--compressions", bad, "--out", "x"],
                           capsys)
        assert_one_line_error(code, err, "tfprune sweep: error: argument --compressions: ")


# --- collapse ---------------------------------------------------------------------------------

def test_collapse_writes_csv_and_png_and_prints_critical_compressions(tmp_path, capsys):
    out = tmp_path / "collapse"
    code, stdout, _ = run(["collapse", "--model", "conv", "--input-shape", "8,8,1", "--criteria", "magnitude,random",
                           "--compressions", "0:2:1", "--seeds", "1", "--quiet", "--out", str(out)], capsys)
    assert code == 0
    assert only_files(out) == ["collapse.csv", "collapse.png"]
    columns, rows = read_csv(out / "collapse.csv")
    names = [t.name for t in tfprune.prunable_weights(tfprune.models.conv((8, 8, 1)))]
    assert columns[-3:] == [f"kept:{n}" for n in names]
    assert [(r["method"], float(r["compression"])) for r in rows] == [
        (m, c) for m in ("magnitude", "random") for c in (1.0, 10.0, 100.0)]
    total = 9 * 32 + 9 * 32 * 32 + 8 * 8 * 32 * 10
    for r in rows:
        kept = sum(float(r[f"kept:{n}"]) * size for n, size in zip(names, (9 * 32, 9 * 32 * 32, 8 * 8 * 32 * 10)))
        assert round(kept) == masks.kept_count(1 / float(r["compression"]), total)
        assert int(r["layers_total"]) == 3
    assert_valid_png(out / "collapse.png")
    assert "N/K = 10^" in stdout and "critical compression of magnitude" in stdout


def test_collapse_bad_input_creates_nothing(tmp_path, capsys):
    out = tmp_path / "collapse"
    code, _, err = run(["collapse", "--model", "conv", "--criteria", "nope", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "unknown criterion 'nope'")
    code, _, err = run(["collapse", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "give a reference network with --model NAME")
    assert not out.exists()


# --- profile ----------------------------------------------------------------------------------

def test_profile_json_counts_every_weight(tmp_path, capsys):
    path = tmp_path / "p.keras"
    assert run(["prune", *MLP, "--criterion", "magnitude", "--compression", "10", "--quiet", "--out", str(path)],
               capsys)[0] == 0
    code, stdout, _ = run(["profile", str(path), "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert set(result) >= {"layers", "total"}
    plain = tfprune.strip(keras.models.load_model(path))
    weights = [w for layer in plain.layers for w in layer.get_weights()]
    kept = masks.kept_count(0.1, KERNELS)
    assert result["total"]["params"] == plain.count_params() == KERNELS + BIASES
    assert result["total"]["nonzero"] == sum(int(np.count_nonzero(w)) for w in weights) == kept  # biases start at 0
    assert result["total"]["macs"] == KERNELS
    assert result["total"]["effective_macs"] == pytest.approx(kept)  # Dense MACs × kernel density
    assert [layer["name"] for layer in result["layers"]] == ["fc1", "fc2", "fc"]


def test_profile_counts_batch_norm_and_prints_a_table(tmp_path, capsys):
    path = tmp_path / "r.keras"
    model = tfprune.models.resnet_cifar(8, (8, 8, 3))
    model.save(path)
    code, stdout, _ = run(["profile", str(path), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["total"]["params"] == model.count_params()
    code, stdout, _ = run(["profile", str(path)], capsys)
    assert code == 0 and "TOTAL" in stdout and f"{model.count_params():,}" in stdout


def test_profile_missing_file_is_one_line(tmp_path, capsys):
    code, _, err = run(["profile", str(tmp_path / "none.keras")], capsys)
    assert_one_line_error(code, err, "no model file")


# --- export -----------------------------------------------------------------------------------

def test_export_writes_a_checked_block_sparse_tflite(tmp_path, capsys):
    pruned = tmp_path / "p.keras"
    assert run(["prune", *MLP, "--criterion", "magnitude", "--compression", "4", "--pattern", "1x4", "--quiet",
                "--out", str(pruned)], capsys)[0] == 0
    out = tmp_path / "p.tflite"
    code, stdout, _ = run(["export", str(pruned), "--tflite", str(out), "--pattern", "1x4", "--data", "digits",
                           "--samples", "32"], capsys)
    assert code == 0 and out.exists()
    ops, sparse = tfprune.export.describe(str(out))
    assert len(sparse) == 3 and all(tuple(t.block) == (1, 4) for t in sparse)
    assert "DENSIFY" not in ops and "on 32 examples" in stdout


def test_export_failure_writes_nothing(tmp_path, capsys):
    pruned = tmp_path / "p.keras"
    assert run(["prune", *MLP, "--criterion", "magnitude", "--compression", "4", "--quiet", "--out", str(pruned)],
               capsys)[0] == 0
    out = tmp_path / "p.tflite"
    code, _, err = run(["export", str(pruned), "--tflite", str(out), "--pattern", "1x4"], capsys)
    assert_one_line_error(code, err, "do not form 1×4 blocks")
    code, _, err = run(["export", str(pruned), "--tflite", str(tmp_path / "p.bin")], capsys)
    assert_one_line_error(code, err, "--tflite must end in .tflite")
    assert only_files(tmp_path) == ["p.keras"]
