"""The ``tfprune`` command: prune, sweep, collapse, profile, export and demo.

Every subcommand checks its arguments before any work, prints one line ``tfprune <command>:
error: ...`` and exits with 1 on failure, usage errors (an unknown option, a missing or malformed
value) included (``--debug`` shows the traceback), and writes its outputs only once they are
complete: a failed run leaves nothing at the output path, and removes an output folder it created.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _floats(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _shape(text):
    values = _ints(text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a shape such as 32,32,3, got {text!r}")
    return tuple(values)


def _compressions(text):
    """``a:b:s`` → 10^a, 10^(a+s), …, 10^b; otherwise comma-separated compressions."""
    if ":" in text:
        try:
            start, stop, step = (float(v) for v in text.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected start:stop:step of log10 compression, got {text!r}") from None
        if step <= 0 or stop < start or start < 0:
            raise argparse.ArgumentTypeError(f"expected 0 <= start <= stop and step > 0, got {text!r}")
        count = int(math.floor((stop - start) / step + 1e-9)) + 1
        return [10 ** round(start + i * step, 10) for i in range(count)]
    values = _floats(text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"compressions must be >= 1, got {text!r}")
    return values


def _seeds(text):
    """``3`` → seeds 0, 1, 2; ``4,7`` → seeds 4 and 7 (checked with the grid, before any work)."""
    values = _ints(text)
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise argparse.ArgumentTypeError(f"expected a number of seeds >= 1, got {text!r}")
        return list(range(values[0]))
    return values


class _UsageError(Exception):
    """A command line argparse cannot parse; the message is the line to print."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors raise :class:`_UsageError` (one line, exit 1) instead
    of printing the usage and exiting with 2."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


class _Deprecated(argparse.Action):
    """An option's old spelling: stores into the new option's destination and says so on stderr."""

    def __init__(self, option_strings, dest, new, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"tfprune: {option_string} is deprecated and will be removed in tfprune 1.1; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_model_arguments(parser, file_too=True):
    if file_too:
        parser.add_argument("model_file", nargs="?", metavar="MODEL.keras", help="a saved Keras 3 model")
    parser.add_argument("--model", dest="model_name", metavar="NAME",
                        help="a reference network instead of a file: lenet_300_100, lenet5_caffe, conv, "
                             "vgg11/13/16/19, resnet20/32/44/56/110, resnet18")
    parser.add_argument("--input-shape", type=_shape, default=None, metavar="H,W,C",
                        help="input shape of --model (default: that of --data, else the network's own)")
    parser.add_argument("--classes", type=int, default=None,
                        help="outputs of --model (default: those of --data, else 10)")


def _add_data_arguments(parser, required=False, samples_help="training examples the scorers see",
                        samples_default="10 per class"):
    parser.add_argument("--data", required=required, metavar="NAME",
                        help="data set: digits (embedded), mnist, fashion_mnist, cifar10")
    parser.add_argument("--data-dir", default=None, help="folder of .npz files (see tfprune.data); "
                        "default $TFPRUNE_DATA_DIR, then tensorflow_datasets")
    parser.add_argument("--samples", type=int, default=None, help=f"{samples_help} (default {samples_default})")


def _add_pruning_arguments(parser, bias=True):
    parser.add_argument("--rounds", type=int, default=None, help="pruning rounds (default: each method's own)")
    parser.add_argument("--scope", choices=("global", "local"), default="global")
    if bias:
        parser.add_argument("--include-bias", action="store_true", help="prune biases too (as the SNIP paper does)")


def _add_grid_arguments(parser, compressions):
    parser.add_argument("--criteria", default="random,magnitude,snip,grasp,synflow", help="comma-separated criteria")
    parser.add_argument("--methods", dest="criteria", action=_Deprecated, new="--criteria")
    parser.add_argument("--compressions", type=_compressions, default=_compressions(compressions),
                        help="start:stop:step of log10 compression (1:3:0.25 is 10^1, 10^1.25, …, 10^3) or "
                             f"comma-separated compressions; default {compressions}")
    parser.add_argument("--seeds", type=_seeds, default=[0], help="a count (3: seeds 0,1,2) or a list (4,7)")


def _add_training_arguments(parser):
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per network (default 10)")
    parser.add_argument("--batch-size", type=int, default=128, help="default 128")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                        help="sgd (Nesterov momentum, default) or adam")
    parser.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="decoupled weight decay (default 5e-4)")
    parser.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                        help="learning-rate schedule (default cosine)")
    parser.add_argument("--schedule", dest="lr_schedule", choices=("cosine", "constant"), action=_Deprecated,
                        new="--lr-schedule")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on the first N training examples only (default all)")
    parser.add_argument("--test-samples", type=int, default=None,
                        help="test on the first N test examples only (default all)")


def _parser():
    parser = _Parser(prog="tfprune", description="Pruning for Keras 3 and TensorFlow.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    prune = sub.add_parser("prune", help="prune a model at initialisation and save it",
                           description="Prunes a saved model (or a reference network) at initialisation "
                           "and saves the pruned, wrapped model (or the stripped one with --strip).")
    _add_model_arguments(prune)
    prune.add_argument("--method", dest="criterion", action=_Deprecated, new="--criterion")
    prune.add_argument("--criterion", help="scorer: random, magnitude, snip, grasp, synflow, "
                       "iter_snip, force, or any registered one")
    amount = prune.add_mutually_exclusive_group(required=True)
    amount.add_argument("--compression", type=float, help="kept fraction 1/C (e.g. 100)")
    amount.add_argument("--sparsity", type=float, help="removed fraction (e.g. 0.99)")
    _add_data_arguments(prune)
    _add_pruning_arguments(prune)
    prune.add_argument("--seed", type=int, default=0, help="seed of --model's weights, the sample and random scores")
    prune.add_argument("--pattern", default=None, metavar="PATTERN",
                       help="sparsity pattern: unstructured (default), 1xB blocks along the input axis (e.g. 1x4, "
                            "for TFLite's block-sparse Dense) or N:M (e.g. 2:4: every 4 inputs keep 2)")
    prune.add_argument("--block", dest="pattern", action=_Deprecated, new="--pattern")
    prune.add_argument("--on-collapse", choices=("warn", "raise", "ignore"), default="warn",
                       help="when a tensor is emptied or the output cut off from the input: warn (default), "
                            "raise (exit 1, save nothing) or ignore")
    prune.add_argument("--strip", action="store_true", help="save a plain model with zeros (no masks)")
    prune.add_argument("--out", required=True, metavar="OUT.keras", help="where to save the pruned model")
    prune.add_argument("--quiet", action="store_true", help="print nothing but errors")

    sweep = sub.add_parser("sweep", help="accuracy against compression for several methods (CSV + PNG)",
                           description="Prunes fresh networks at initialisation with each method at each "
                           "compression and seed, trains and tests them. Writes OUT/sweep.csv after each "
                           "network (a rerun with the same settings resumes), OUT/sweep.png and OUT/sweep.md.")
    _add_model_arguments(sweep, file_too=False)
    _add_data_arguments(sweep, required=True)
    _add_grid_arguments(sweep, "0.5:3:0.5")
    _add_pruning_arguments(sweep)
    sweep.add_argument("--no-dense", action="store_true", help="do not train the unpruned network")
    _add_training_arguments(sweep)
    sweep.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    sweep.add_argument("--quiet", action="store_true", help="print only the final table")

    collapse = sub.add_parser("collapse", help="the layer-collapse sweep (CSV + PNG)",
                              description="Prunes fresh networks at each compression with each method and "
                              "records which layers are left empty. Writes OUT/collapse.csv and "
                              "OUT/collapse.png and prints each method's critical compression.")
    _add_model_arguments(collapse, file_too=False)
    _add_data_arguments(collapse, samples_help="examples the data-driven scorers see (random images without --data)")
    _add_grid_arguments(collapse, "0:6:0.5")
    _add_pruning_arguments(collapse, bias=False)
    collapse.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    collapse.add_argument("--quiet", action="store_true", help="print only the critical compressions")

    profile = sub.add_parser("profile", help="parameters, non-zeros and MACs per layer",
                             description="Prints the per-layer parameters, non-zero parameters, MACs and "
                             "effective MACs (MACs × kernel density) of a saved model.")
    profile.add_argument("model_file", metavar="MODEL.keras")
    profile.add_argument("--json", action="store_true",
                         help='print a JSON object {"layers": [...], "total": {...}} instead of the table')
    profile.add_argument("--input-shape", type=_shape, default=None, metavar="H,W,C",
                         help="shape of one example, for models saved without a complete input shape")

    export = sub.add_parser("export", help="export a pruned model to TFLite with sparse weights, checked",
                            description="Strips a pruned model, converts it to TFLite with sparse weights, "
                            "checks the file's outputs against Keras, and only then writes it.")
    export.add_argument("model_file", metavar="MODEL.keras")
    export.add_argument("--tflite", required=True, metavar="OUT.tflite", help="where to write the file")
    export.add_argument("--pattern", default=None, metavar="PATTERN",
                        help="the block pattern the masks were made with, e.g. 1x4 (checked in the file)")
    export.add_argument("--block", dest="pattern", action=_Deprecated, new="--pattern")
    export.add_argument("--quantize", choices=("dynamic",), default=None, help="dynamic-range int8 weights")
    _add_data_arguments(export, samples_help="test examples to check the file on",
                        samples_default="256 with --data, else 8 random inputs")
    export.add_argument("--quiet", action="store_true", help="print nothing but errors")

    demo = sub.add_parser(
        "demo",
        help="prune a small network at initialisation with each method, train it, compare",
        description="Prunes an MLP at initialisation with every registered method at each "
        "sparsity, trains it briefly, and prints test accuracy, kept weights and time.",
    )
    demo.add_argument("--data", default="digits", help="data set name (default: the embedded digits)")
    demo.add_argument("--data-dir", default=None, help="folder of .npz files (see tfprune.data)")
    demo.add_argument("--sparsities", type=_floats, default=[0.9, 0.98], help="comma-separated, default 0.9,0.98")
    demo.add_argument("--criteria", default=None, help="comma-separated criteria (default: all)")
    demo.add_argument("--methods", dest="criteria", action=_Deprecated, new="--criteria")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs per network (default 30)")
    demo.add_argument("--seed", type=int, default=0, help="seed of weights and random scores (default 0)")
    demo.add_argument("--quiet", action="store_true", help="print only the final table")
    return parser


# --- shared steps -----------------------------------------------------------------------------

def _load_data(args, split):
    from tfprune.experiments import data

    return data.load(args.data, split, args.data_dir)


def _subset(arrays, count):
    """The first ``count`` examples of ``(x, y)``; all of them when ``count`` is None."""
    return arrays if count is None else (arrays[0][:count], arrays[1][:count])


# Count options that would otherwise take 0 silently (as "the default" or "nothing").
_COUNTS = ("classes", "samples", "rounds", "train_samples", "test_samples")


def _check_numbers(args):
    """Every count option given is >= 1, and ``--seed`` is a seed NumPy and Keras accept."""
    from tfprune.base import arguments

    for name in _COUNTS:
        if getattr(args, name, None) is not None:
            arguments.count(f"--{name.replace('_', '-')}", getattr(args, name))
    if getattr(args, "seed", None) is not None:
        arguments.seed(args.seed, "--seed", optional=False)


def _criteria(args):
    """The criterion names of ``--criteria``, each known."""
    from tfprune import scores

    criteria = [scores.get(m.strip()).name for m in args.criteria.split(",") if m.strip()]
    if not criteria:
        raise ValueError(f"--criteria {args.criteria!r} names no criterion: give comma-separated criteria such as "
                         "snip,synflow")
    return criteria


@contextlib.contextmanager
def _output_folder(path, names):
    """Yields ``--out`` as a folder (created if missing) in which each of ``names`` can be written;
    if the command fails, the folders it created are removed again while they are empty."""
    from tfprune.base.files import check_output_folder, check_output_path

    path = Path(check_output_folder(path, "--out"))
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    path.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            check_output_path(path / name, "--out file")
        yield path
    except BaseException:
        for folder in created:
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise


def _model_builder(args):
    """A function returning a new model from ``--model`` (shapes from ``--data`` where not given)."""
    from tfprune.experiments import data, models

    if args.model_name is None:
        raise ValueError("give a reference network with --model NAME")
    if args.model_name not in models.available():
        raise ValueError(f"unknown --model {args.model_name!r}; known: {', '.join(models.available())}")
    input_shape, classes = args.input_shape, args.classes
    if args.data is not None:
        input_shape = input_shape or data.input_shape(args.data)
        if classes is None:
            classes = data.num_classes(args.data)
        elif classes < data.num_classes(args.data):
            raise ValueError(f"--classes {classes} is fewer than the {data.num_classes(args.data)} classes of "
                             f"--data {args.data}: leave --classes out to take the data's")
    return lambda: models.build(args.model_name, input_shape, 10 if classes is None else classes)


def _load_model(path):
    """The ``keras.Model`` saved at ``path``; a clear error for a missing, unreadable or non-model file."""
    import keras  # tfprune's own layers are registered for loading when the package is imported

    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not a model file: give a .keras file (Keras 3 does not load "
                                "SavedModel folders)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file {path!r}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(f"{path} is not a readable Keras 3 model: {_unreadable_because(path, error)}") from error
    if not isinstance(model, keras.Model):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a keras.Model: save the whole model "
                        "(keras.Model, Sequential or functional), not one of its layers")
    return model


def _unreadable_because(path, error):
    """Why Keras could not load ``path``, in words that fit the file (Keras says "File not found")."""
    import zipfile

    if path.endswith(".h5"):
        return str(error)
    if not zipfile.is_zipfile(path):
        return "it is not a zip archive, as a .keras file is (truncated, or another format)"
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            return ("the archive has no config.json (a .keras file holds config.json, metadata.json and "
                    "model.weights.h5)")
    return " ".join(str(error).split()) or type(error).__name__


def _check_data_fits(model, arrays, args, split, class_ids=True):
    """``(x, y)`` of ``--data`` fit the model: shapes, lengths, labels, finite values (:mod:`tfprune.datachecks`)."""
    from tfprune.analysis import datachecks

    datachecks.check_data(model, arrays, class_ids=class_ids, name=f"--data {args.data} ({split})")


def _save_model(model, path):
    from tfprune.base.files import replacing

    with replacing(path) as tmp:
        model.save(tmp)


def _log10_text(value):
    return "collapsed at the smallest" if value is None else f"10^{math.log10(value):.2f}"


# --- subcommands ------------------------------------------------------------------------------

def _prune(args):
    import keras

    import tfprune
    from tfprune.base.files import check_output_path

    if not args.out.endswith(".keras"):
        raise ValueError(f"--out must end in .keras, got {args.out!r}")
    check_output_path(args.out, "--out")
    if (args.model_file is None) == (args.model_name is None):
        raise ValueError("give either MODEL.keras or --model NAME (exactly one)")
    if args.criterion is None:
        raise ValueError("tfprune prune needs --criterion NAME")
    scorer = tfprune.scores.get(args.criterion)
    density = tfprune.masks.resolve_density(sparsity=args.sparsity, compression=args.compression)
    pattern = tfprune.patterns.get(args.pattern)
    pattern.check_sparsity(1.0 - density)
    if scorer.needs_data and args.data is None:
        raise ValueError(f"criterion {scorer.name!r} scores with data: pass --data NAME")
    keras.utils.set_random_seed(args.seed)
    model = _load_model(args.model_file) if args.model_file else _model_builder(args)()
    data = None
    if args.data is not None:
        data = _subset(_load_data(args, "train"), args.samples)
        _check_data_fits(model, data, args, "train")
    pruned = tfprune.prune_at_init(model, scorer.name, sparsity=args.sparsity, compression=args.compression,
                                   data=data, rounds=args.rounds, scope=args.scope, seed=args.seed,
                                   pattern=pattern, include_bias=args.include_bias, on_collapse=args.on_collapse,
                                   verbose=0 if args.quiet else 1)
    result = tfprune.strip(pruned) if args.strip else pruned
    _save_model(result, args.out)
    if not args.quiet:
        print(tfprune.report(pruned, verbose=0))
        print(f"saved {'stripped' if args.strip else 'wrapped'} model to {args.out}")


def _sweep(args):
    from tfprune.experiments import sweep
    from tfprune import training
    from tfprune._optional import require
    from tfprune.base.files import replacing_text
    from tfprune.experiments.grid import check_grid

    require("matplotlib", "tfprune sweep (for sweep.png)")

    methods, _, _ = check_grid(_criteria(args), args.compressions, args.seeds)
    recipe = training.Recipe(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                             learning_rate=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                             lr_schedule=args.lr_schedule)
    model_fn = _model_builder(args)
    with _output_folder(args.out, ("sweep.csv", "sweep.csv.json", "sweep.md", "sweep.png")) as out:
        train = _subset(_load_data(args, "train"), args.train_samples)
        test = _subset(_load_data(args, "test"), args.test_samples)
        model = model_fn()
        _check_data_fits(model, train, args, "train")
        _check_data_fits(model, test, args, "test")
        result = sweep.accuracy_sweep(
            model_fn, train, test, methods, args.compressions, recipe=recipe, seeds=args.seeds,
            samples=args.samples, rounds=args.rounds, scope=args.scope, include_dense=not args.no_dense,
            csv_path=str(out / "sweep.csv"), include_bias=args.include_bias,
            describe=dict(model=args.model_name, data=args.data, input_shape=args.input_shape, classes=args.classes),
            verbose=0 if args.quiet else 1)
        with replacing_text(out / "sweep.md") as f:
            f.write(result.table() + "\n")
        title = f"{args.model_name} on {args.data}, {recipe.epochs} epochs, {len(args.seeds)} seed(s)"
        _write(out / "sweep.png", lambda path: result.plot(path, title))
    print(result.table())


def _write(path, write):
    """Calls ``write(tmp)`` for a temporary path that replaces ``path`` once ``write`` returns."""
    from tfprune.base.files import replacing

    with replacing(str(path)) as tmp:
        write(tmp)


def _collapse(args):
    import numpy as np

    import tfprune
    from tfprune._optional import require
    from tfprune.experiments.grid import check_grid

    require("matplotlib", "tfprune collapse (for collapse.png)")

    methods, _, _ = check_grid(_criteria(args), args.compressions, args.seeds)
    model_fn = _model_builder(args)
    with _output_folder(args.out, ("collapse.csv", "collapse.png")) as out:
        model = model_fn()
        count = 10 * int(model.output_shape[-1]) if args.samples is None else args.samples
        if args.data is not None:
            data = _subset(_load_data(args, "train"), count)
            _check_data_fits(model, data, args, "train")
        else:
            rng = np.random.default_rng(0)
            data = (rng.random((count, *model.input_shape[1:]), dtype=np.float32),
                    rng.integers(0, int(model.output_shape[-1]), count))
        result = tfprune.collapse_sweep(model_fn, methods, args.compressions, data=data, rounds=args.rounds,
                                        seeds=args.seeds, scope=args.scope, verbose=0 if args.quiet else 1)
        result.to_csv(out / "collapse.csv")
        _write(out / "collapse.png", lambda path: result.plot(path, compression=min(max(args.compressions), 10 ** 3)))
    print(f"N/K = 10^{math.log10(result.max_compression):.2f}")
    for method, critical in result.critical.items():
        print(f"critical compression of {method}: {_log10_text(critical)}")


def _profile(args):
    import tfprune

    model = _load_model(args.model_file)
    result = tfprune.profile(model, input_shape=args.input_shape, verbose=0)
    if args.json:
        print(json.dumps(dict(model=model.name, **result.to_dict()), indent=1))
    else:
        print(result)


def _export(args):
    import tfprune
    from tfprune.base.files import check_output_path

    if not args.tflite.endswith(".tflite"):
        raise ValueError(f"--tflite must end in .tflite, got {args.tflite!r}")
    check_output_path(args.tflite, "--tflite")
    model = _load_model(args.model_file)
    check_data = None
    if args.data is not None:
        test = _subset(_load_data(args, "test"), 256 if args.samples is None else args.samples)
        _check_data_fits(model, test, args, "test", class_ids=False)  # only the inputs are used
        check_data = test[0]
    if tfprune.is_wrapped(model):
        model = tfprune.strip(model)
    report = tfprune.export.tflite(model, args.tflite, pattern=args.pattern, quantize=args.quantize,
                                   check_data=check_data)
    if not args.quiet:
        print(report)


def _demo(args):
    from tfprune.experiments import demo

    criteria = args.criteria.split(",") if args.criteria else None
    rows = demo.run(args.data, args.sparsities, criteria, epochs=args.epochs, seed=args.seed,
                    data_dir=args.data_dir, verbose=0 if args.quiet else 1)
    if args.quiet:
        print(demo.format_table(rows))


_COMMANDS = {"prune": _prune, "sweep": _sweep, "collapse": _collapse, "profile": _profile, "export": _export,
             "demo": _demo}


def main(argv=None):
    """Entry point of the ``tfprune`` command; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except _UsageError as error:
        print(error, file=sys.stderr)
        return 1
    if args.version:
        from tfprune import __version__

        print(__version__)
        return 0
    if args.command is None:
        print(f"tfprune: error: give a command: {', '.join(_COMMANDS)} (see tfprune --help)", file=sys.stderr)
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        _check_numbers(args)
        _COMMANDS[args.command](args)
    except Exception as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"tfprune {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
