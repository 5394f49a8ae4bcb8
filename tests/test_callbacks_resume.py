"""GradualPruning killed with SIGKILL mid-schedule and restarted with BackupAndRestore ends
bit-identical to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tfprune.masks import kept_count

WORKER = str(Path(__file__).resolve().parent / "workers" / "gradual_resumable.py")


def test_sigkill_mid_schedule_then_restart_ends_with_identical_masks_and_weights(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)

    def command(out, *kill):
        return [sys.executable, WORKER, str(tmp_path / f"backup_{out}"), str(tmp_path / f"{out}.json"), *kill]

    def run(args):
        return subprocess.run(args, env=env, timeout=180, capture_output=True, text=True)

    # the uninterrupted run goes on beside the killed one
    whole = subprocess.Popen(command("a"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # step 15 is in epoch 2 (steps 12-17), after the backup of epochs 0-1 and the update at step 12
        killed_command = command("b", "15", str(tmp_path / "killed"))
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
    a, b = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert a["epochs_run"] == [0, 1, 2, 3] and b["epochs_run"] == [2, 3]
    assert a["update_steps"] == [0, 4, 8, 12, 16, 20] and b["update_steps"] == [12, 16, 20]  # the schedule went on
    assert a["step"] == b["step"] == 24
    for key in ("masks", "weights", "optimizer"):
        assert a[key] == b[key], key
    assert a["kept"] == b["kept"] == [kept_count(0.2, 36), kept_count(0.2, 192)] == [7, 38]
