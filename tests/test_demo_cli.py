"""The demo and the `tfprune` command."""

import shutil
import subprocess

import pytest

from tfprune.experiments import cli, demo
from tfprune.sparsity import masks


def test_demo_rows_count_kept_weights_exactly_and_train():
    rows = demo.run(sparsities=(0.5,), methods=["magnitude", "random"], epochs=8, verbose=0)
    total = 64 * 300 + 300 * 100 + 100 * 10
    assert [(r["method"], r["sparsity"]) for r in rows] == [("dense", 0.0), ("magnitude", 0.5), ("random", 0.5)]
    assert [r["kept"] for r in rows] == [total, masks.kept_count(0.5, total), masks.kept_count(0.5, total)]
    assert all(r["total"] == total and r["collapsed"] == 0 for r in rows)
    assert rows[0]["accuracy"] > 0.9  # the dense MLP learns the digits (chance is 0.1)
    assert all(r["accuracy"] > 0.8 for r in rows[1:])


def test_demo_shows_magnitude_layer_collapse():
    """At 99.5 % sparsity global magnitude empties a layer; random does not (on this MLP)."""
    rows = demo.run(sparsities=(0.995,), methods=["magnitude", "random"], epochs=1, verbose=0)
    assert rows[1]["collapsed"] >= 1 and rows[2]["collapsed"] == 0


def test_cli_demo_prints_the_table(capsys):
    assert cli.main(["demo", "--epochs", "1", "--sparsities", "0.5", "--criteria", "magnitude", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["method", "sparsity", "kept"]
    assert lines[2].split()[:3] == ["magnitude", "0.500", "25,100/50,200"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--criteria", "nope"], "unknown criterion 'nope'"),
        (["demo", "--sparsities", "1.5"], "sparsity must be a number in [0, 1), got 1.5"),
        (["demo", "--data", "imagenet"], "imagenet"),
    ],
)
def test_cli_errors_are_one_line_and_exit_1(capsys, argv, message):
    assert cli.main(argv + ["--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_console_script_is_installed():
    exe = shutil.which("tfprune")
    assert exe is not None, "the tfprune console script is not on PATH"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "0.1.0"
