"""The one rule for "is this an integer?", shared by every module that validates counts, ages, bins and sizes.

An integer is a Python or numpy integer, or a finite float with no fractional part (JSON and YAML may write ``3`` as
``3.0``). Booleans are not integers here, though Python counts them as ints: ``True`` as an age or a bin is a bug.
Strings are not integers either: ``"20"`` in a label file means the file is not what it claims to be.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["as_int", "is_int"]


def is_int(value: Any) -> bool:
    """True for Python and numpy integers; False for booleans, floats and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_int(value: Any, what: str) -> int:
    """``value`` as a Python int, by the module's rule.

    Args:
        value: the value to check.
        what: names the value in the error, e.g. ``"max_age"`` or ``"age 3"``.

    Raises:
        ValueError: ``"{what} must be an integer, got {value!r}"``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    try:
        return int(value.__index__())
    except (AttributeError, TypeError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
