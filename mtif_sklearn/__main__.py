"""``python -m mtif_sklearn demo``: the README's main job."""

import argparse
import sys


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="mtif-sklearn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="task relatedness and harmful rows on built-in data")
    demo.add_argument("--out", default="mtif_output", help="folder for the plot")
    demo.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(args.out, args.random_state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
