"""Command-line interface: ``agecurriculum COMMAND ...``."""


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2, no traceback."""
