"""Evaluation: predictions, metrics, the benchmarks' comparison protocols and the report.

- :mod:`~agecurriculum.evaluation.predict`: :func:`predict_dataset` -> :class:`Predictions` (numpy arrays);
  test-time flip averaging (:func:`flip_averaged`).
- :mod:`~agecurriculum.evaluation.metrics`: accuracy, 1-off, MAE from the expected age, confusion matrices,
  error breakdown by gender x age bin x race, children's gender accuracy, flip consistency.
- :mod:`~agecurriculum.evaluation.calibration`: expected calibration error, temperature fitting and scaling.
- :mod:`~agecurriculum.evaluation.gate`: the release gate, a candidate against the shipped model with paired
  bootstrap noise margins (:func:`gate_rows`).
- :mod:`~agecurriculum.evaluation.protocols`: unified bins -> Adience's 8 groups or the 7 UTKFace groups; fold
  summaries (mean ± sample std); :data:`PROTOCOLS`, the ones a dataset can ask its report for.
- :mod:`~agecurriculum.evaluation.report`: :class:`EvaluationReport` (Table III form, JSON, markdown, PNGs).
"""

# Each module's __all__ is its public API; the package re-exports all of them, so a name is listed once.
from agecurriculum.evaluation import calibration, gate, metrics, predict, protocols, report
from agecurriculum.evaluation.calibration import *  # noqa: F403
from agecurriculum.evaluation.gate import *  # noqa: F403
from agecurriculum.evaluation.metrics import *  # noqa: F403
from agecurriculum.evaluation.predict import *  # noqa: F403
from agecurriculum.evaluation.protocols import *  # noqa: F403
from agecurriculum.evaluation.report import *  # noqa: F403

__all__ = [*predict.__all__, *metrics.__all__, *calibration.__all__, *gate.__all__, *protocols.__all__, *report.__all__]
