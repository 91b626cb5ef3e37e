"""Command-line interface: ``agecurriculum COMMAND ...``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from agecurriculum.config import RunConfig, apply_overrides, load_config
from agecurriculum.errors import describe_error

__all__ = ["CLIError", "describe_error", "run_tabulated"]


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2, no traceback."""


def run_tabulated(args: argparse.Namespace, study: Callable[[RunConfig], Any], tables: Sequence[str]) -> int:
    """Runs a command that trains from ``--config`` and ``--set`` overrides, and prints what it tabulated.

    Args:
        args: the parsed command line, with ``config`` and ``overrides``.
        study: runs the configuration; returns a result with ``to_markdown()`` and ``out_dir``.
        tables: the files ``study`` wrote under ``out_dir``, named in the last line.

    Returns:
        The exit status, 0.
    """
    result = study(apply_overrides(load_config(args.config), args.overrides))
    print()
    print(result.to_markdown())
    print(f"tables: {', '.join(str(result.out_dir / name) for name in tables)}")
    return 0
