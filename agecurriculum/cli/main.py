"""The ``agecurriculum`` command: one argparse sub-command per module in this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agecurriculum import __version__
from agecurriculum.cli import CLIError, ablate, bins, data, ensemble, export, predict, protocol, train


def build_parser() -> argparse.ArgumentParser:
    """Returns the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="agecurriculum",
        description="Age-group and gender estimation with multi-task and curriculum learning.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Each sub-command module exposes register(subparsers), which sets a `func(args) -> int` default.
    for module in (bins, data, train, ablate, protocol, predict, export, ensemble):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError) as err:
        print(f"agecurriculum {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
