"""Evaluation: predictions, metrics, the benchmarks' comparison protocols and the report.

- :mod:`~agecurriculum.evaluation.predict`: :func:`predict_dataset` -> :class:`Predictions` (numpy arrays).
- :mod:`~agecurriculum.evaluation.flip`: test-time flip averaging (:func:`flip_averaged`), for torch and numpy.
- :mod:`~agecurriculum.evaluation.metrics`: accuracy, 1-off, MAE from the expected age, confusion matrices,
  error breakdown by gender x age bin x race, children's gender accuracy, flip consistency.
- :mod:`~agecurriculum.evaluation.calibration`: expected calibration error, temperature fitting and scaling.
- :mod:`~agecurriculum.evaluation.gate`: the release gate, a candidate against the shipped model with paired
  bootstrap noise margins (:func:`gate_rows`).
- :mod:`~agecurriculum.evaluation.protocols`: unified bins -> Adience's 8 groups or the 7 UTKFace groups; fold
  summaries (mean ± sample std); :data:`PROTOCOLS`, the ones a dataset can ask its report for.
- :mod:`~agecurriculum.evaluation.report`: :class:`EvaluationReport` (Table III form, JSON, markdown, PNGs).

The names are imported on first use (PEP 562), as in :mod:`agecurriculum`: ``agecurriculum.evaluation.calibration``
and ``agecurriculum.evaluation.flip``, which inference with ONNX Runtime uses, load no torch.
"""

from __future__ import annotations

from agecurriculum._lazy import lazy_exports

# Public name -> the module that defines it: every module's __all__, listed here so that nothing is imported before
# it is used (tests/test_package.py holds the two equal).
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Predictions", "predict_dataset"), "agecurriculum.evaluation.predict"),
    **dict.fromkeys(("flip_averaged",), "agecurriculum.evaluation.flip"),
    **dict.fromkeys(
        (
            "CHILD_MAX_AGE",
            "GENDER_LABELS",
            "OPEN_BIN_OFFSET",
            "representative_ages",
            "fit_representative_ages",
            "expected_ages",
            "accuracy",
            "one_off_accuracy",
            "compute_metrics",
            "children_gender_accuracy",
            "flip_consistency",
            "confusion_matrix",
            "plot_confusion",
            "breakdown",
            "breakdown_markdown",
            "format_number",
        ),
        "agecurriculum.evaluation.metrics",
    ),
    **dict.fromkeys(
        (
            "MAX_TEMPERATURE",
            "MIN_TEMPERATURE",
            "apply_temperature",
            "expected_calibration_error",
            "fit_temperature",
            "temperature_nll",
        ),
        "agecurriculum.evaluation.calibration",
    ),
    **dict.fromkeys(
        (
            "GATE_ALPHA",
            "GATE_MIN_FACES",
            "GATE_RESAMPLES",
            "GateModel",
            "GateResult",
            "GateRow",
            "aligned",
            "gate_rows",
        ),
        "agecurriculum.evaluation.gate",
    ),
    **dict.fromkeys(
        (
            "ADIENCE_GROUPS",
            "SEVEN_GROUPS",
            "year_to_group",
            "convert_probs",
            "groups_of_ages",
            "group_metrics",
            "adience_protocol",
            "seven_group_protocol",
            "summarize_folds",
            "adience_group_of",
            "DatasetProtocol",
            "PROTOCOLS",
        ),
        "agecurriculum.evaluation.protocols",
    ),
    **dict.fromkeys(
        ("PAPER_RESULTS", "DatasetResult", "EvaluationReport", "build_report", "write_report"),
        "agecurriculum.evaluation.report",
    ),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
