"""The ``tfprune`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _floats(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _parser():
    parser = argparse.ArgumentParser(prog="tfprune", description="Pruning for Keras 3 and TensorFlow.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo",
        help="prune a small network at initialisation with each method, train it, compare",
        description="Prunes an MLP at initialisation with every registered method at each "
        "sparsity, trains it briefly, and prints test accuracy, kept weights and time.",
    )
    demo.add_argument("--data", default="digits", help="data set name (default: the embedded digits)")
    demo.add_argument("--data-dir", default=None, help="folder of .npz files (see tfprune.data)")
    demo.add_argument("--sparsities", type=_floats, default=[0.9, 0.98], help="comma-separated, default 0.9,0.98")
    demo.add_argument("--methods", default=None, help="comma-separated scorer names (default: all)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs per network (default 30)")
    demo.add_argument("--seed", type=int, default=0, help="seed of weights and random scores (default 0)")
    demo.add_argument("--quiet", action="store_true", help="print only the final table")
    return parser


def _demo(args):
    from tfprune import demo

    methods = args.methods.split(",") if args.methods else None
    rows = demo.run(args.data, args.sparsities, methods, epochs=args.epochs, seed=args.seed,
                    data_dir=args.data_dir, verbose=0 if args.quiet else 1)
    if args.quiet:
        print(demo.format_table(rows))


def main(argv=None):
    """Entry point of the ``tfprune`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.version:
        from tfprune import __version__

        print(__version__)
        return 0
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        _demo(args)
    except Exception as error:
        if args.debug:
            raise
        print(f"tfprune {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
