"""Prediction results as JSON: the one encoding ``predict --json`` prints and ``agecurriculum serve`` returns.

A result is the dict :meth:`~agecurriculum.inference.Predictor.predict` gives for one input
(``{"path", "faces", "error"}``, see :mod:`agecurriculum.inference.predictor`); an input that never reached the
predictor (a pattern matching no file, an upload that could not be decoded) gets one of the same shape from
:func:`failed_result`, so a reader of the output handles one kind of object.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["failed_result", "results_json"]


def failed_result(path: str | None, error: str) -> dict[str, Any]:
    """The result of an input that could not be used: no faces, and why.

    Args:
        path: what the input is called (a file name, a pattern), or None.
        error: why it failed, one line, never empty.

    Raises:
        ValueError: ``error`` is empty (an empty error would read as success).
    """
    if not error:
        raise ValueError("a failed result needs a non-empty error")
    return {"path": path, "faces": [], "error": error}


def results_json(results: dict[str, Any] | list[dict[str, Any]]) -> str:
    """One result (or a list of them) as compact one-line JSON.

    NaN and infinities are refused rather than written as the non-standard ``NaN`` that Python's ``json`` writes by
    default and strict parsers (browsers' ``JSON.parse``, ``jq``) reject; the predictor turns the only value that
    can be NaN, a detection score, into None.

    Raises:
        ValueError: a value is NaN or infinite.
    """
    return json.dumps(results, allow_nan=False)
