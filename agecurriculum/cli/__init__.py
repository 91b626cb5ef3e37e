"""Command-line interface: ``agecurriculum COMMAND ...``.

Each command's module (``agecurriculum.cli.predict``, ...) builds its parser and loads no torch, ONNX Runtime or
dlib, so that ``agecurriculum COMMAND --help`` answers at once; what the command does lives in
``agecurriculum.cli.runners``, imported when the command runs (:class:`Runner`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agecurriculum.config import RunConfig, apply_overrides, load_config
from agecurriculum.errors import describe_error

__all__ = ["CLIError", "Runner", "describe_error", "run_tabulated"]


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2, no traceback."""


@dataclass(frozen=True)
class Runner:
    """A command's ``func(args) -> int``, its module imported only when the command runs, not when it is parsed.

    Attributes:
        module: the module that defines it, e.g. ``"agecurriculum.cli.runners.predict"``.
        name: the function's name in it.
    """

    module: str
    name: str = "run"

    def __call__(self, args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(self.module), self.name)(args)


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
