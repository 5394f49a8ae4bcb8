"""Whether ``torch.compile`` would pay for tfprune's scoring steps on PyTorch: one model and method
of ``benchmarks/scoring_benchmark.py``, in fresh processes under ``KERAS_BACKEND=torch``, run as
tfprune runs it (op by op, as Keras's own ``jit_compile="auto"`` does on PyTorch) and with every
scoring step passed through ``torch.compile`` (inductor), in turn; prints each run's JSON line and
the ratio of the totals per pair.

    python benchmarks/torch_compile_steps.py resnet20 synflow --repeats 1
"""

import argparse
import json
import os
import runpy
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def compiled_run(model, method):
    """In this process: scoring_benchmark.py with the PyTorch engine compiling each step."""
    import torch

    from tfprune.autodiff.engines import torch_autograd

    torch_autograd.compile = lambda function, variables: torch.compile(function)
    sys.argv = ["scoring_benchmark.py", model, method]
    sys.path.insert(0, HERE)
    runpy.run_path(os.path.join(HERE, "scoring_benchmark.py"), run_name="__main__")


def run(model, method, compiled):
    command = [sys.executable, os.path.abspath(__file__), model, method]
    if not compiled:
        command = [sys.executable, os.path.join(HERE, "scoring_benchmark.py"), model, method]
    done = subprocess.run(command + (["--in-process"] if compiled else []), capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "torch"}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("method")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        return compiled_run(args.model, args.method)
    for repeat in range(1, args.repeats + 1):
        eager, compiled = run(args.model, args.method, False), run(args.model, args.method, True)
        for name, record in (("op by op", eager), ("torch.compile", compiled)):
            print(json.dumps({"steps": name, "repeat": repeat, **record}))
        print(f"repeat {repeat}: op by op {eager['total']:.2f} s, torch.compile {compiled['total']:.2f} s, "
              f"ratio {compiled['total'] / eager['total']:.1f}")


if __name__ == "__main__":
    main()
