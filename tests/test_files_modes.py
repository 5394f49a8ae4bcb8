"""Output files: the mode of a plain open() under the umask (or the replaced file's), checked paths,
and the temporary files of killed writers removed by the next write."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from subprocess_util import run_python

from tfprune.base import files


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def write(path, text):
    with files.replacing_text(path) as f:
        f.write(text)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path, umask_027):
    new = tmp_path / "new.txt"
    write(new, "a")
    assert mode(new) == 0o666 & ~0o027 == 0o640
    for kept in (0o600, 0o604, 0o664):
        old = tmp_path / f"old-{kept:o}.txt"
        old.write_text("old")
        os.chmod(old, kept)
        write(old, "new")
        assert old.read_text() == "new" and mode(old) == kept
    with files.replacing(tmp_path / "rewritten.bin") as tmp:  # a writer that deletes and recreates tmp
        os.remove(tmp)
        with open(tmp, "wb") as f:
            f.write(b"x")
        os.chmod(tmp, 0o600)
    assert mode(tmp_path / "rewritten.bin") == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.txt", "old-600.txt", "old-604.txt", "old-664.txt",
                                                          "rewritten.bin"]


def test_every_output_of_the_command_is_0644_under_umask_022(tmp_path):
    out = run_python(f"""
        import os
        os.umask(0o022)
        import tfprune
        from tfprune.experiments import cli
        folder = {str(tmp_path)!r}
        mlp = ["--model", "lenet_300_100", "--input-shape", "8,8,1", "--data", "digits"]
        commands = [
            ["prune", *mlp, "--criterion", "magnitude", "--compression", "4", "--quiet", "--out", folder + "/p.keras"],
            ["prune", *mlp, "--criterion", "magnitude", "--compression", "4", "--strip", "--quiet",
             "--out", folder + "/s.keras"],
            ["export", folder + "/p.keras", "--tflite", folder + "/p.tflite", "--data", "digits", "--samples", "16",
             "--quiet"],
            ["sweep", *mlp, "--criteria", "random", "--compressions", "10", "--seeds", "1", "--no-dense",
             "--epochs", "1", "--train-samples", "128", "--test-samples", "64", "--batch-size", "64", "--quiet",
             "--out", folder + "/sweep"],
            ["collapse", "--model", "conv", "--input-shape", "8,8,1", "--criteria", "magnitude",
             "--compressions", "0:1:1", "--seeds", "1", "--quiet", "--out", folder + "/collapse"],
        ]
        for argv in commands:
            assert cli.main(argv) == 0, argv
        import keras
        plain = tfprune.strip(keras.models.load_model(folder + "/p.keras"))
        tfprune.export.tflite(plain, folder + "/api.tflite")
    """)
    assert "Traceback" not in out
    found = {os.path.relpath(os.path.join(root, name), tmp_path): mode(os.path.join(root, name))
             for root, _, names in os.walk(tmp_path) for name in names}
    assert found == {name: 0o644 for name in (
        "p.keras", "s.keras", "p.tflite", "api.tflite", "sweep/sweep.csv", "sweep/sweep.csv.json", "sweep/sweep.md",
        "sweep/sweep.png", "collapse/collapse.csv", "collapse/collapse.png")}
    assert mode(tmp_path / "sweep") == mode(tmp_path / "collapse") == 0o755


def test_paths_are_checked_before_writing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"the folder of --out '.*missing/x.keras' does not exist"):
        files.check_output_path(tmp_path / "missing" / "x.keras", "--out")
    (tmp_path / "d.keras").mkdir()
    with pytest.raises(IsADirectoryError, match=r"--out '.*d.keras' is a folder: give a file name inside it"):
        files.check_output_path(tmp_path / "d.keras", "--out")
    ran = []
    with pytest.raises(IsADirectoryError, match="is a folder"):
        with files.replacing(tmp_path / "d.keras"):
            ran.append(1)
    assert ran == [] and sorted(p.name for p in tmp_path.iterdir()) == ["d.keras"]


def finished_pid():
    """The id of a process that has exited (and whose id is not in use)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    return proc.pid


def test_stale_temporary_files_are_removed_by_the_next_write(tmp_path):
    dead, alive = finished_pid(), os.getpid()
    old = files._STARTED - 60
    names = {
        f".tfprune-{dead}-0123456789abcdef-m.keras": old,   # a killed writer's: removed
        ".tfprune-k2x9_a1bm.keras": old,                      # an older tfprune's (no pid): removed
        f".tfprune-{alive}-0123456789abcdef-m.keras": old,  # a running writer's: kept
        f".tfprune-{dead}-fedcba9876543210-m.keras": time.time() + 60,  # newer than this process: kept
        ".other-hidden-file": old,                            # not tfprune's: kept
    }
    for name, mtime in names.items():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (mtime, mtime))
    write(tmp_path / "out.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "out.txt", f".tfprune-{alive}-0123456789abcdef-m.keras", f".tfprune-{dead}-fedcba9876543210-m.keras",
        ".other-hidden-file"])


def test_a_writer_killed_mid_save_leaves_a_temporary_file_that_the_next_run_removes(tmp_path, monkeypatch):
    # files.py loaded on its own: the killed process needs no TensorFlow
    code = textwrap.dedent(f"""
        import importlib.util, os, signal
        spec = importlib.util.spec_from_file_location("files_alone", {files.__file__!r})
        files = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(files)
        with files.replacing({str(tmp_path / "model.keras")!r}) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x" * 100_000)
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".tfprune-") and left[0].endswith("-model.keras")
    assert (tmp_path / left[0]).stat().st_size == 100_000
    monkeypatch.setattr(files, "_STARTED", time.time() + 1)  # as in a process started after the kill
    write(tmp_path / "model.keras", "next run")
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
