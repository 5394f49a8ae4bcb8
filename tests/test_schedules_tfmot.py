"""tfprune's PolynomialDecay and ConstantSparsity against TF-MOT's, the oracle, at every step 0…3000.

TF-MOT runs in a subprocess: importing it switches ``tf.keras`` to tf_keras for the whole process.
Its schedules are called eagerly with an int64 step (the type of its wrapper's step counter), so
the oracle is TF-MOT's float32 arithmetic op by op; the values must be equal bit for bit. (Inside a
compiled graph, TensorFlow's Grappler may rewrite the ``pow`` and move TF-MOT's own value by a few
float32 ulps; that is TensorFlow's graph optimisation, not the schedule's semantics.)
"""

import importlib.util
import json

import pytest
from subprocess_util import run_python

from tfprune.sparsity import schedules

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow_model_optimization") is None,
                                reason="tensorflow_model_optimization is not installed")

STEPS = 3001
CASES = [
    ("PolynomialDecay", dict(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=1000)),
    ("PolynomialDecay", dict(initial_sparsity=0.5, final_sparsity=0.8, begin_step=200, end_step=2345,
                             power=1, frequency=7)),
    ("PolynomialDecay", dict(initial_sparsity=0.1, final_sparsity=0.83, begin_step=17, end_step=1234,
                             power=3, frequency=1)),
    ("PolynomialDecay", dict(initial_sparsity=0.2, final_sparsity=0.95, begin_step=1, end_step=3000,
                             power=0.5, frequency=13)),
    ("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0)),
    ("ConstantSparsity", dict(target_sparsity=0.8, begin_step=250, end_step=-1, frequency=7)),
    ("ConstantSparsity", dict(target_sparsity=0.6, begin_step=100, end_step=2050, frequency=1)),
    ("ConstantSparsity", dict(target_sparsity=0.3, begin_step=0, end_step=1999, frequency=100)),
]

ORACLE = """
import json
import tensorflow as tf
import tensorflow_model_optimization as tfmot

out = []
for name, kwargs in json.loads({cases!r}):
    schedule = getattr(tfmot.sparsity.keras, name)(**kwargs)
    if name == "ConstantSparsity":  # integer ops and a constant: one call on all steps is exact
        should_prune, sparsity = schedule(tf.range({steps}, dtype=tf.int64))
        out.append([[bool(p), float(sparsity)] for p in should_prune.numpy()])
        continue
    values = []
    for step in range({steps}):  # one call per step: a vectorised pow rounds differently
        should_prune, sparsity = schedule(tf.constant(step, tf.int64))
        values.append([bool(should_prune), float(sparsity)])
    out.append(values)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tfmot_values():
    stdout = run_python(ORACLE.format(cases=json.dumps(CASES), steps=STEPS), timeout=300)
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_every_step_equals_tfmot(tfmot_values, case):
    name, kwargs = CASES[case]
    schedule = getattr(schedules, name)(**kwargs)
    expected = [tuple(v) for v in tfmot_values[case]]
    got = [schedule(step) for step in range(STEPS)]
    assert all(type(due) is bool and type(sparsity) is float for due, sparsity in got)
    mismatches = [(step, g, e) for step, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not mismatches, f"{len(mismatches)} steps differ, first: {mismatches[:3]}"
    assert sum(due for due, _ in expected) > 0  # the case prunes at all
