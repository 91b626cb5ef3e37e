"""agecurriculum: age-group and gender estimation with multi-task and curriculum learning.

Every building block is importable from here and works on its own in a user's training code:

- :class:`AgeBinOptimizer`: unified age bins that balance several datasets (OR-Tools CP-SAT).
- :class:`MultiDatasetSample`, :class:`TrainingSchedule`: a curriculum validated against the paper's Eq. 7.
- :class:`UncertaintyLoss`: learned task weighting of the age and gender losses (Eq. 5); ablations beside it.
- :class:`GenderConditionedHead`, :class:`DualClassifier`: the age head conditioned on the predicted gender.
- :class:`EnsembleClassifier`: several trained classifiers, their probabilities averaged.
- :class:`CurriculumTrainer`: Algorithm 1 over a schedule.
- :class:`AdaptiveCurriculum`: a curriculum chosen from the losses while training, saved as a schedule.

The names are imported on first use (PEP 562): ``import agecurriculum.bins`` loads the bins alone, not torch or the
training code, and ``from agecurriculum import Predictor`` loads inference without training.
"""

from __future__ import annotations

from agecurriculum._lazy import lazy_exports
from agecurriculum._version import __version__

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("ADIENCE_GROUPS", "PAPER_BINS", "AgeBinOptimizer", "AgeBins", "BinSolution", "histogram_from_ages"),
        "agecurriculum.bins",
    ),
    **dict.fromkeys(
        (
            "AlignConfig",
            "FaceAligner",
            "FaceDataset",
            "FaceRecord",
            "FilteredDataset",
            "TensorFaceDataset",
            "balance_plan",
            "split_records",
        ),
        "agecurriculum.data",
    ),
    **dict.fromkeys(("discover", "load_csv"), "agecurriculum.data.sources"),
    **dict.fromkeys(
        ("FixedWeightLoss", "LossParts", "MultiTaskLoss", "SumLoss", "UncertaintyLoss", "create_loss"),
        "agecurriculum.losses",
    ),
    **dict.fromkeys(
        (
            "DualClassifier",
            "EnsembleClassifier",
            "GenderConditionedHead",
            "HeadOutput",
            "create_backbone",
            "list_backbones",
        ),
        "agecurriculum.model",
    ),
    **dict.fromkeys(
        (
            "DatasetStats",
            "MultiDatasetSample",
            "ScheduleError",
            "ScheduleWarning",
            "TrainingSchedule",
            "preset",
            "score",
        ),
        "agecurriculum.schedule",
    ),
    "TrainerConfig": "agecurriculum.config",
    **dict.fromkeys(("CurriculumTrainer", "EpochRecord", "EvalResult"), "agecurriculum.train"),
    **dict.fromkeys(("AdaptiveCurriculum", "AdaptiveSettings"), "agecurriculum.adaptive"),
    **dict.fromkeys(("Predictor", "export_onnx", "quantize_onnx"), "agecurriculum.inference"),
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
