"""`tfprune demo` in a fresh process prints its table and nothing else of TensorFlow's.

What is fair: TensorFlow's C++ runtime writes a few lines while it loads (absl's "All log messages
before absl::InitializeLog()" notice, then glog-format lines such as oneDNN's and "could not find
cuda drivers"), before any tfprune code runs and whatever ``TF_CPP_MIN_LOG_LEVEL`` says in
TensorFlow 2.21. Those are allowed before the table's header line. From the header on, every line
must be a row of the table: no Python warning (TensorFlow's "triggered tf.function retracing",
a CollapseWarning — the table has a "collapsed layers" column), no log line.
"""

import os
import re
import subprocess
import sys

from tfprune.sparsity.masks import kept_count

CPP_START_UP = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ [\w/.-]+\.cc:\d+\] .*)$"
)


def test_demo_prints_only_its_table_after_tensorflow_start_up():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)  # set by TF-MOT if another test imported it
    # six networks: the old evaluation (model.predict per model) warned "retracing" from the fifth;
    # magnitude at 0.98 empties a layer
    methods = ["random", "magnitude", "snip", "grasp", "synflow"]
    proc = subprocess.run([sys.executable, "-m", "tfprune.experiments.cli", "demo", "--epochs", "1", "--sparsities", "0.98",
                           "--criteria", ",".join(methods)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout[-3000:]
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["method", "sparsity", "kept"])
    assert [line for line in lines[:header] if not CPP_START_UP.match(line)] == []
    rows = [line.split() for line in lines[header + 1:]]
    assert [row[0] for row in rows] == ["dense"] + methods
    assert all(len(row) == 7 for row in rows), lines[header:]
    total = 64 * 300 + 300 * 100 + 100 * 10  # the demo's MLP on the 8×8 digits
    assert [row[1:3] for row in rows] == [["0.000", f"{total:,}/{total:,}"]] + \
        [["0.980", f"{kept_count(0.02, total):,}/{total:,}"]] * (len(rows) - 1)
    magnitude = next(row for row in rows if row[0] == "magnitude")
    assert int(magnitude[3]) >= 1  # the collapse the table reports (no CollapseWarning printed)
