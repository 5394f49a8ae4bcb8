"""A pruning run SIGKILLed mid-training and restarted, beside an uninterrupted one (tests/workers/pruning_resumable.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

WORKER = str(Path(__file__).resolve().parent / "workers" / "pruning_resumable.py")


def kill_and_resume(tmp_path, kind, kill_step=15):
    """Runs the worker for ``kind`` (``"gradual"`` or ``"rigl"``) uninterrupted and, beside it, killed at
    ``kill_step`` and restarted with the same command; checks the processes and returns both results.

    Returns:
        ``(uninterrupted, resumed)``: the JSON each run wrote (epochs run, update steps, moved
        counts, digests of masks, weights and optimizer variables, kept counts, final step).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)

    def command(out, *kill):
        return [sys.executable, WORKER, kind, str(tmp_path / f"backup_{out}"), str(tmp_path / f"{out}.json"), *kill]

    def run(args):
        return subprocess.run(args, env=env, timeout=180, capture_output=True, text=True)

    whole = subprocess.Popen(command("a"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        killed_command = command("b", str(kill_step), str(tmp_path / "killed"))
        killed = run(killed_command)
        _, whole_err = whole.communicate(timeout=180)
    finally:
        if whole.poll() is None:
            whole.kill()
            whole.communicate()
    assert whole.returncode == 0, whole_err[-3000:]
    assert killed.returncode == -signal.SIGKILL and (tmp_path / "killed").exists()
    assert not (tmp_path / "b.json").exists() and (tmp_path / "backup_b").exists()
    resumed = run(killed_command)  # the same command again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return tuple(json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
