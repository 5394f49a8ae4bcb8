"""tf.distribute: scores of the global batch on every replica and worker, identical masks."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from subprocess_util import run_python
from test_batch_norm import central_differences

WORKERS = Path(__file__).resolve().parent / "workers"


@pytest.fixture(scope="module")
def mirrored():
    """The JSON line of tests/workers/mirrored_scores.py (two logical CPU replicas), run once."""
    return json.loads(run_python((WORKERS / "mirrored_scores.py").read_text(), timeout=300).strip().splitlines()[-1])


def test_mirrored_scores_equal_single_device_and_custom_loop_keeps_pruned_weights(mirrored):
    """Two logical CPU replicas: SNIP/GraSP/FORCE scores equal one device's for the same global
    batch (float32 summation order aside), masks equal except ties at the threshold (counted:
    none here), mask copies agree, and a strategy.run training loop leaves pruned weights as they were."""
    result = mirrored
    assert result["replicas"] == 2
    # GraSP divides the logits by T = 200: its Hessian term is a difference of nearly equal float32
    # sums, and summation order moves it by ~7e-5 of the largest score (2e-6 at T = 1)
    tolerance = {"snip": 1e-5, "force": 1e-5, "grasp": 2e-4}
    for method, r in result["methods"].items():
        assert r["max_relative_score_difference"] < tolerance[method], method
        assert r["mask_differences_away_from_threshold"] == 0, method
        assert r["mask_differences"] == 0, method  # no ties at the threshold in this case
        assert r["mask_copies_equal"], method
    assert result["custom_loop"] == {"pruned_unchanged": True, "kept_trained": True, "replicas_agree": True}


def test_mirrored_batch_norm_derivatives_are_the_whole_batchs(mirrored):
    """Batch norm on batch statistics with the batch split across two replicas: the statistics are
    the whole batch's (all-reduced in the forward pass and in both derivatives), so the replicas'
    first and second derivatives along a line through (x, γ, β) sum to the float64 central
    differences of the whole batch's objective."""
    result = mirrored["batch_norm"]
    data = {k: np.asarray(v, dtype=np.float32) for k, v in result["data"].items()}
    directions = [data["v_x"], data["v_gamma"], data["v_beta"]]
    first, second = central_differences(data["x"], data["gamma"], data["beta"], data["weights"], directions)
    assert result["first"] == pytest.approx(first, rel=1e-4)
    assert result["second"] == pytest.approx(second, rel=2e-3)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(script, count=2, timeout=240):
    """Starts `count` MultiWorkerMirroredStrategy workers on loopback; returns their last output
    lines. Every process is killed on every exit path."""
    ports = free_ports(count)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    try:
        for index in range(count):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            env.pop("TF_USE_LEGACY_KERAS", None)
            processes.append(subprocess.Popen([sys.executable, str(script)], env=env, text=True,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        deadline = time.monotonic() + timeout
        outputs = []
        for p in processes:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            if p.returncode != 0:
                raise AssertionError(f"worker failed ({p.returncode}):\n{err[-3000:]}")
            outputs.append(out.strip().splitlines()[-1])
        return outputs
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_two_multi_worker_processes_get_bit_identical_masks():
    """Each worker scores SNIP on different data; the all-reduced scores give both the same masks,
    and training keeps the pruned weights at zero with identical weights on both workers."""
    results = [json.loads(line) for line in run_workers(WORKERS / "multi_worker.py")]
    assert [r["worker"] for r in results] == [0, 1]
    assert all(r["replicas"] == 2 and r["pruned_zero"] for r in results)
    assert results[0]["masks"] == results[1]["masks"]
    assert results[0]["weights"] == results[1]["weights"]
    assert results[0]["density"] == pytest.approx(0.1, abs=1e-3)


@pytest.mark.parametrize("mode", ["fixed", "autoprune"])
def test_sigkill_mid_epoch_then_restart_resumes_to_the_same_masks_and_weights(tmp_path, mode):
    """A run killed with SIGKILL in epoch 3 and restarted with BackupAndRestore (saving each epoch)
    ends bit-identical to an uninterrupted run: same masks, same weights (W, m and the optimiser
    state behind them), pruned weights zero — for fixed masks and for AutoPrune's trainable ones."""
    import signal

    script = str(WORKERS / "resumable_training.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFPRUNE_TEST_MODE": mode}
    env.pop("TF_USE_LEGACY_KERAS", None)

    def run(args, timeout=180):
        subprocess.run([sys.executable, script, *args], env=env, check=True, timeout=timeout, capture_output=True)

    run([str(tmp_path / "backup_a"), str(tmp_path / "a.json")])
    marker = tmp_path / "killed_here"
    victim = subprocess.Popen([sys.executable, script, str(tmp_path / "backup_b"), str(tmp_path / "b.json"),
                               "2", "3", str(marker)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert victim.poll() is None and time.monotonic() < deadline, "the run ended before the kill point"
            time.sleep(0.2)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert victim.returncode == -signal.SIGKILL and not (tmp_path / "b.json").exists()
    assert (tmp_path / "backup_b").exists()  # epochs 1-2 were backed up before the kill
    run([str(tmp_path / "backup_b"), str(tmp_path / "b.json")])
    a, b = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert a.pop("epochs_run") == [0, 1, 2, 3] and b.pop("epochs_run") == [2, 3]  # it did resume
    assert a == b and a["pruned_zero"]
    assert 0 < a["density"] < 1  # something was pruned (for AutoPrune: learned)
