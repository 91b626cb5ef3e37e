"""Command-line interface: ``agecurriculum COMMAND ...``."""

from __future__ import annotations

from agecurriculum.errors import describe_error

__all__ = ["CLIError", "describe_error"]


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2, no traceback."""
