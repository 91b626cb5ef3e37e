"""The ``agecurriculum`` command: one argparse sub-command per module in this package.

Exit status (also in docs/errors.rst): 0 success, 2 an error (one line on stderr, ``agecurriculum COMMAND: error:
...``; also argparse's usage errors), 130 interrupted (Ctrl-C), 141 the reader of stdout went away (``| head``), as
for a Unix tool killed by SIGPIPE. ``AGECURRICULUM_TRACEBACK=1`` shows the Python traceback of an error instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from agecurriculum._version import __version__
from agecurriculum.cli import (
    CLIError,
    ablate,
    bins,
    data,
    describe_error,
    ensemble,
    export,
    interpolate,
    predict,
    protocol,
    serve,
    train,
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
TRACEBACK_VARIABLE = "AGECURRICULUM_TRACEBACK"


def build_parser() -> argparse.ArgumentParser:
    """Returns the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="agecurriculum",
        description="Age-group and gender estimation with multi-task and curriculum learning.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Each sub-command module exposes register(subparsers), which sets a `func(args) -> int` default.
    for module in (bins, data, train, ablate, protocol, predict, export, ensemble, interpolate, serve):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _one_line_warnings(args.command):
            status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is met inside the try rather than at interpreter exit
        return status
    except BrokenPipeError:
        # Whoever read stdout has gone (e.g. `| head -1`): stop quietly. Point stdout at /dev/null so that the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"agecurriculum {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CLIError, ValueError, OSError, RuntimeError, MemoryError) as err:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        print(f"agecurriculum {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return EXIT_ERROR


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    # A library warning (e.g. an ONNX cache that had to move) reaches the user as one line, not a source excerpt.
    original = warnings.formatwarning
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"agecurriculum {command}: warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = original


if __name__ == "__main__":
    sys.exit(main())
