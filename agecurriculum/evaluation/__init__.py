"""Evaluation: predictions, metrics, the benchmarks' comparison protocols and the report.

- :mod:`~agecurriculum.evaluation.predict`: :func:`predict_dataset` -> :class:`Predictions` (numpy arrays);
  test-time flip averaging (:func:`flip_averaged`).
- :mod:`~agecurriculum.evaluation.metrics`: accuracy, 1-off, MAE from the expected age, confusion matrices,
  error breakdown by gender x age bin x race, children's gender accuracy, flip consistency.
- :mod:`~agecurriculum.evaluation.calibration`: expected calibration error, temperature fitting and scaling.
- :mod:`~agecurriculum.evaluation.protocols`: unified bins -> Adience's 8 groups or the 7 UTKFace groups; fold
  summaries (mean ± sample std).
- :mod:`~agecurriculum.evaluation.report`: :class:`EvaluationReport` (Table III form, JSON, markdown, PNGs).
"""

from agecurriculum.evaluation.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    temperature_nll,
)
from agecurriculum.evaluation.metrics import (
    CHILD_MAX_AGE,
    accuracy,
    breakdown,
    breakdown_markdown,
    children_gender_accuracy,
    compute_metrics,
    confusion_matrix,
    expected_ages,
    fit_representative_ages,
    flip_consistency,
    one_off_accuracy,
    plot_confusion,
    representative_ages,
)
from agecurriculum.evaluation.predict import Predictions, flip_averaged, predict_dataset
from agecurriculum.evaluation.protocols import (
    ADIENCE_GROUPS,
    SEVEN_GROUPS,
    adience_protocol,
    convert_probs,
    group_metrics,
    groups_of_ages,
    seven_group_protocol,
    summarize_folds,
    year_to_group,
)
from agecurriculum.evaluation.report import (
    PAPER_RESULTS,
    DatasetResult,
    EvaluationReport,
    build_report,
    write_report,
)

__all__ = [
    "Predictions",
    "predict_dataset",
    "flip_averaged",
    "accuracy",
    "one_off_accuracy",
    "compute_metrics",
    "representative_ages",
    "expected_ages",
    "fit_representative_ages",
    "confusion_matrix",
    "plot_confusion",
    "breakdown",
    "breakdown_markdown",
    "CHILD_MAX_AGE",
    "children_gender_accuracy",
    "flip_consistency",
    "expected_calibration_error",
    "fit_temperature",
    "apply_temperature",
    "temperature_nll",
    "ADIENCE_GROUPS",
    "SEVEN_GROUPS",
    "year_to_group",
    "convert_probs",
    "groups_of_ages",
    "group_metrics",
    "adience_protocol",
    "seven_group_protocol",
    "summarize_folds",
    "PAPER_RESULTS",
    "DatasetResult",
    "EvaluationReport",
    "build_report",
    "write_report",
]
