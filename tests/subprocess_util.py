"""Running a Python snippet in a fresh interpreter, with a timeout, always cleaned up."""

import os
import subprocess
import sys
import textwrap


def run_python(code, timeout=240, env=None):
    """Runs ``code`` in a new Python process; returns its stdout. Fails with its output on error."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    full_env.pop("TF_USE_LEGACY_KERAS", None)  # set by TF-MOT if another test imported it
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{out}\n{err[-4000:]}")
    return out
