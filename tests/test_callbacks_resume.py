"""GradualPruning killed with SIGKILL mid-schedule and restarted with BackupAndRestore ends
bit-identical to an uninterrupted run."""

from resume_util import kill_and_resume

from tfprune.sparsity.masks import kept_count


def test_sigkill_mid_schedule_then_restart_ends_with_identical_masks_and_weights(tmp_path):
    # step 15 is in epoch 2 (steps 12-17), after the backup of epochs 0-1 and the update at step 12
    a, b = kill_and_resume(tmp_path, "gradual", kill_step=15)
    assert a["epochs_run"] == [0, 1, 2, 3] and b["epochs_run"] == [2, 3]
    assert a["update_steps"] == [0, 4, 8, 12, 16, 20] and b["update_steps"] == [12, 16, 20]  # the schedule went on
    assert a["step"] == b["step"] == 24
    for key in ("masks", "weights", "optimizer"):
        assert a[key] == b[key], key
    assert a["kept"] == b["kept"] == [kept_count(0.2, 36), kept_count(0.2, 192)] == [7, 38]
