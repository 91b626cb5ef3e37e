"""The ``agecurriculum`` command: one argparse sub-command per module in this package.

Exit status (also in docs/errors.rst): 0 success, 2 an error (one line on stderr, ``agecurriculum COMMAND: error:
...``; also argparse's usage errors), 130 interrupted (Ctrl-C), 141 the reader of stdout went away (``| head``), as
for a Unix tool killed by SIGPIPE. ``AGECURRICULUM_TRACEBACK=1`` shows the Python traceback of an error instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Collection, Iterator, Sequence

from agecurriculum._version import __version__
from agecurriculum.cli import CLIError, describe_error

# Sub-command -> (the module whose register(subparsers) adds it, its line in `agecurriculum --help`), in the order
# of that list. A command's module is imported only when the command runs (or its help is asked for): most import
# torch, dlib or onnxruntime, and `agecurriculum --help` or `agecurriculum bins` need none of them. The help line is
# the one the module gives add_parser (tests/test_cli_startup.py checks that they agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "bins": ("agecurriculum.cli.bins", "optimise the unified age bins"),
    "data": ("agecurriculum.cli.data", "inspect datasets"),
    "train": (
        "agecurriculum.cli.train",
        "train a model over a curriculum from a config file, then save a release and a test report",
    ),
    "evaluate": ("agecurriculum.cli.train", "re-evaluate a finished run's release on the test splits"),
    "ablate": (
        "agecurriculum.cli.ablate",
        "train the loss, curriculum and conditioning ablations (the paper's Tables VII and VIII, hard vs soft "
        "conditioning) and tabulate them",
    ),
    "protocol": (
        "agecurriculum.cli.protocol",
        "run a benchmark's own evaluation protocol (adience: the 5-fold protocol, mean ± std)",
    ),
    "predict": ("agecurriculum.cli.predict", "estimate the gender and age group of every face in photos"),
    "export": (
        "agecurriculum.cli.export",
        "export a release to ONNX, ONNX Runtime Mobile (.ort) or CoreML (float32, or int8 with --int8)",
    ),
    "ensemble": ("agecurriculum.cli.ensemble", "combine releases into one ensemble release"),
    "interpolate": (
        "agecurriculum.cli.interpolate",
        "weights between a release and one fine-tuned from it, with bin ages and temperatures refitted",
    ),
    "adjust-prior": (
        "agecurriculum.cli.adjust_prior",
        "undo the training sampler's age proportions in a release's age logits, bin ages and temperatures refitted",
    ),
    "serve": ("agecurriculum.cli.serve", "serve the model over HTTP: a JSON API and a web page to drop photos on"),
}

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
TRACEBACK_VARIABLE = "AGECURRICULUM_TRACEBACK"


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """Returns the top-level parser.

    Args:
        commands: the sub-commands to register in full, with their options (their modules are imported); the
            others get a placeholder that gives their help line alone. Default: every sub-command in full.
    """
    parser = argparse.ArgumentParser(
        prog="agecurriculum",
        description="Age-group and gender estimation with multi-task and curriculum learning.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = {COMMANDS[name][0] for name in (COMMANDS if commands is None else commands)}
    registered: set[str] = set()
    for name, (module, help_line) in COMMANDS.items():
        if module not in wanted:
            subparsers.add_parser(name, help=help_line)
        elif module not in registered:
            # Each sub-command module exposes register(subparsers), which sets a `func(args) -> int` default.
            importlib.import_module(module).register(subparsers)
            registered.add(module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    args = build_parser([command] if command in COMMANDS else []).parse_args(argv)
    if not hasattr(args, "func"):  # argparse read another command than _command_of did: parse again with it in full
        args = build_parser([args.command]).parse_args(argv)
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


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named on a command line: its first positional argument (the top-level options take none)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg == "-" or not arg.startswith("-"):
            return arg
    return None


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
